using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Checkpoint;

/// <summary>A fresh folder under the system temp folder, deleted with everything in it on dispose.</summary>
sealed class TempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "qwen3tts-ckpt-" + Guid.NewGuid().ToString("N"));

    public TempDir() => Directory.CreateDirectory(Path);

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        if (Directory.Exists(Path)) Directory.Delete(Path, recursive: true);
    }
}

/// <summary>Safetensors bytes made by hand, independent of the code under test: a header string exactly as
/// given, its length as a little-endian u64 written by BinaryWriter, then the data bytes.</summary>
static class HandWritten
{
    public static void File(string path, string headerJson, byte[] data, long? declaredHeaderLength = null)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        using var writer = new BinaryWriter(System.IO.File.Create(path));
        writer.Write((ulong)(declaredHeaderLength ?? header.Length));
        writer.Write(header);
        writer.Write(data);
    }

    public static byte[] Floats(params float[] values) => Bytes(w => { foreach (var v in values) w.Write(v); });

    public static byte[] UShorts(params ushort[] values) => Bytes(w => { foreach (var v in values) w.Write(v); });

    public static byte[] Longs(params long[] values) => Bytes(w => { foreach (var v in values) w.Write(v); });

    static byte[] Bytes(Action<BinaryWriter> write)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream)) write(writer);
        return stream.ToArray();
    }
}

/// <summary>A minimal safetensors parser written for the tests, apart from SafetensorsFile: header length,
/// header text, the JSON entries and each entry's bytes sliced from the buffer.</summary>
sealed class MinimalParse
{
    public required ulong HeaderLength { get; init; }
    public required string HeaderText { get; init; }
    public required Dictionary<string, string> Metadata { get; init; }
    public required List<(string Name, string Dtype, long[] Shape, long Begin, long End)> Entries { get; init; }
    public required byte[] Buffer { get; init; }

    public byte[] Data(string name)
    {
        var e = Entries.Single(x => x.Name == name);
        return Buffer[(int)e.Begin..(int)e.End];
    }

    public static MinimalParse Of(byte[] file)
    {
        ulong n = BitConverter.ToUInt64(file, 0);
        string text = Encoding.UTF8.GetString(file, 8, (int)n);
        using var doc = JsonDocument.Parse(text);
        var metadata = new Dictionary<string, string>();
        var entries = new List<(string, string, long[], long, long)>();
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__")
            {
                foreach (var m in p.Value.EnumerateObject()) metadata[m.Name] = m.Value.GetString()!;
                continue;
            }
            var offsets = p.Value.GetProperty("data_offsets").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            entries.Add((p.Name, p.Value.GetProperty("dtype").GetString()!,
                p.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray(), offsets[0], offsets[1]));
        }
        return new MinimalParse
        {
            HeaderLength = n, HeaderText = text, Metadata = metadata, Entries = entries,
            Buffer = file[(8 + (int)n)..],
        };
    }
}

static class Raw
{
    /// <summary>The bytes of a tensor's values in logical (row-major) order.</summary>
    public static byte[] Of(Tensor t)
    {
        using var c = t.contiguous();
        return c.bytes.ToArray();
    }

    /// <summary>A tensor whose memory is exactly <paramref name="bytes"/> (no value conversion).</summary>
    public static Tensor Tensor(byte[] bytes, ScalarType dtype, params long[] shape)
    {
        var t = empty(shape, dtype: dtype);
        t.bytes = bytes;
        return t;
    }

    public static byte[] RandomBytes(int count, int seed)
    {
        var bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}
