using Qwen3Tts.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Checkpoint;

/// <summary>Files built byte by byte in the test read back to the values chosen by hand.</summary>
public class SafetensorsReadTests
{
    [Fact]
    public void Float32_file_reads_the_hand_written_values()
    {
        using var dir = new TempDir();
        string path = dir.File("f32.safetensors");
        HandWritten.File(path, """{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}""",
            HandWritten.Floats(1.5f, -2.25f, 0f, 3e-3f));

        using var file = SafetensorsFile.Open(path);
        var entry = Assert.Single(file.Entries);
        Assert.Equal(("w", "F32", 0L, 16L), (entry.Name, entry.Dtype, entry.Begin, entry.End));
        Assert.Equal([2L, 2L], entry.Shape);
        Assert.Equal("pt", file.Metadata["format"]);
        using var w = file.Read("w");
        Assert.Equal(ScalarType.Float32, w.dtype);
        Assert.Equal(new long[] { 2, 2 }, w.shape);
        Assert.Equal(new[] { 1.5f, -2.25f, 0f, 3e-3f }, w.data<float>().ToArray());
    }

    [Fact]
    public void Bfloat16_file_reads_as_bfloat16_and_widens_exactly_to_float32()
    {
        using var dir = new TempDir();
        string path = dir.File("bf16.safetensors");
        // 1.0, -3.0, 3.140625, the smallest subnormal, +inf
        var bits = new ushort[] { 0x3F80, 0xC040, 0x4049, 0x0001, 0x7F80 };
        HandWritten.File(path, """{"b":{"dtype":"BF16","shape":[5],"data_offsets":[0,10]}}""", HandWritten.UShorts(bits));

        using var file = SafetensorsFile.Open(path);
        using var raw = file.Read("b");
        Assert.Equal(ScalarType.BFloat16, raw.dtype);
        Assert.Equal(HandWritten.UShorts(bits), Raw.Of(raw));

        using var f = file.Read("b", ScalarType.Float32);
        Assert.Equal(ScalarType.Float32, f.dtype);
        var values = f.data<float>().ToArray();
        Assert.Equal(1f, values[0]);
        Assert.Equal(-3f, values[1]);
        Assert.Equal(3.140625f, values[2]);
        Assert.Equal(bits.Select(b => (uint)b << 16).ToArray(), values.Select(BitConverter.SingleToUInt32Bits).ToArray());
    }

    [Fact]
    public void Float16_file_reads_as_half_and_widens_exactly_to_float32()
    {
        using var dir = new TempDir();
        string path = dir.File("f16.safetensors");
        // 1.0, -2.0, 65504 (largest half), 2^-24 (smallest subnormal half)
        HandWritten.File(path, """{"h":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}}""", HandWritten.UShorts(0x3C00, 0xC000, 0x7BFF, 0x0001));

        using var file = SafetensorsFile.Open(path);
        using var raw = file.Read("h");
        Assert.Equal(ScalarType.Float16, raw.dtype);
        using var f = file.Read("h", ScalarType.Float32);
        Assert.Equal(new[] { 1f, -2f, 65504f, MathF.Pow(2, -24) }, f.data<float>().ToArray());
    }

    [Fact]
    public void Float32_file_read_as_bfloat16_rounds_to_nearest_even()
    {
        using var dir = new TempDir();
        string path = dir.File("round.safetensors");
        var bits = new uint[] { 0x3F808000, 0x3F818000, 0x3F808001, 0xC0400000 };
        HandWritten.File(path, """{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""",
            HandWritten.Floats(bits.Select(BitConverter.UInt32BitsToSingle).ToArray()));

        using var file = SafetensorsFile.Open(path);
        using var b = file.Read("x", ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, b.dtype);
        Assert.Equal(HandWritten.UShorts(0x3F80, 0x3F82, 0x3F81, 0xC040), Raw.Of(b));
    }

    [Fact]
    public void Several_tensors_are_found_by_offset_whatever_the_header_order()
    {
        using var dir = new TempDir();
        string path = dir.File("multi.safetensors");
        // Header lists "b" first although its data comes second; trailing spaces pad the header as writers do.
        string header = """{"b":{"dtype":"I64","shape":[2],"data_offsets":[8,24]},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"z":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]},"p":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}   """;
        HandWritten.File(path, header, [.. HandWritten.Floats(7f, -1f), .. HandWritten.Longs(long.MinValue, 42)]);

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(new[] { "a", "z", "p", "b" }, file.Entries.Select(e => e.Name));
        Assert.Empty(file.Metadata);
        using var a = file.Read("a");
        Assert.Empty(a.shape);
        Assert.Equal(7f, a.item<float>());
        using var z = file.Read("z");
        Assert.Equal(new long[] { 0, 3 }, z.shape);
        using var p = file.Read("p");
        Assert.Equal(-1f, p.item<float>());
        using var b = file.Read("b");
        Assert.Equal(ScalarType.Int64, b.dtype);
        Assert.Equal(new[] { long.MinValue, 42L }, b.data<long>().ToArray());
    }

    [Fact]
    public void Reading_an_absent_tensor_names_it_and_the_file()
    {
        using var dir = new TempDir();
        string path = dir.File("one.safetensors");
        HandWritten.File(path, """{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", HandWritten.Floats(1f));
        using var file = SafetensorsFile.Open(path);
        var e = Assert.Throws<CheckpointException>(() => file.Read("v"));
        Assert.Contains(path, e.Message);
        Assert.Contains("'v'", e.Message);
    }

    [Fact]
    public void A_dtype_torchsharp_lacks_is_listed_but_refused_on_read()
    {
        using var dir = new TempDir();
        string path = dir.File("u16.safetensors");
        HandWritten.File(path, """{"u":{"dtype":"U16","shape":[2],"data_offsets":[0,4]}}""", HandWritten.UShorts(1, 2));
        using var file = SafetensorsFile.Open(path);
        Assert.Null(file.Entry("u").ScalarType);
        var e = Assert.Throws<CheckpointException>(() => file.Read("u"));
        Assert.Contains("'u'", e.Message);
        Assert.Contains("U16", e.Message);
    }
}
