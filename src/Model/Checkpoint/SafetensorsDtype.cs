using static TorchSharp.torch;

namespace Qwen3Tts.Model.Checkpoint;

/// <summary>The safetensors dtype names, their sizes and their TorchSharp equivalents.
/// <see cref="Rank"/> is the position in the reference Rust crate's <c>Dtype</c> enum, which is ordered
/// by alignment: the writer sorts by descending rank so every tensor starts at a multiple of its element
/// size (the header is padded to 8 bytes).</summary>
internal static class SafetensorsDtype
{
    sealed record Info(int Rank, int Bits, ScalarType? Torch);

    static readonly Dictionary<string, Info> ByName = new(StringComparer.Ordinal)
    {
        ["BOOL"] = new(0, 8, ScalarType.Bool),
        ["F4"] = new(1, 4, null),
        ["F6_E2M3"] = new(2, 6, null),
        ["F6_E3M2"] = new(3, 6, null),
        ["U8"] = new(4, 8, ScalarType.Byte),
        ["I8"] = new(5, 8, ScalarType.Int8),
        ["F8_E5M2"] = new(6, 8, null),
        ["F8_E4M3"] = new(7, 8, null),
        ["F8_E8M0"] = new(8, 8, null),
        ["F8_E4M3FNUZ"] = new(9, 8, null),
        ["F8_E5M2FNUZ"] = new(10, 8, null),
        ["I16"] = new(11, 16, ScalarType.Int16),
        ["U16"] = new(12, 16, null),
        ["F16"] = new(13, 16, ScalarType.Float16),
        ["BF16"] = new(14, 16, ScalarType.BFloat16),
        ["I32"] = new(15, 32, ScalarType.Int32),
        ["U32"] = new(16, 32, null),
        ["F32"] = new(17, 32, ScalarType.Float32),
        ["C64"] = new(18, 64, ScalarType.ComplexFloat32),
        ["F64"] = new(19, 64, ScalarType.Float64),
        ["I64"] = new(20, 64, ScalarType.Int64),
        ["U64"] = new(21, 64, null),
    };

    public static string KnownNames => string.Join(", ", ByName.Keys);

    public static bool IsKnown(string name) => ByName.ContainsKey(name);

    public static int Bits(string name) => ByName[name].Bits;

    public static int Rank(string name) => ByName[name].Rank;

    /// <summary>The TorchSharp type a file dtype reads as; null for dtypes TorchSharp 0.107 lacks (U16, U32, U64, FP8, FP4, FP6).</summary>
    public static ScalarType? ToTorch(string name) => ByName[name].Torch;

    public static string? FromTorch(ScalarType type) => type switch
    {
        ScalarType.Bool => "BOOL",
        ScalarType.Byte => "U8",
        ScalarType.Int8 => "I8",
        ScalarType.Int16 => "I16",
        ScalarType.Float16 => "F16",
        ScalarType.BFloat16 => "BF16",
        ScalarType.Int32 => "I32",
        ScalarType.Float32 => "F32",
        ScalarType.ComplexFloat32 => "C64",
        ScalarType.Float64 => "F64",
        ScalarType.Int64 => "I64",
        _ => null,
    };
}
