using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Checkpoint;

/// <summary>One tensor of a safetensors file: its dtype as the file spells it ("BF16"), its shape, the
/// file it lives in and its byte range relative to the start of that file's data buffer.</summary>
public sealed record TensorEntry(string Name, string Dtype, IReadOnlyList<long> Shape, string File, long Begin, long End)
{
    public long ByteSize => End - Begin;

    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>The TorchSharp type it reads as; null for dtypes TorchSharp has no type for (U16, U32, U64, FP8, ...).</summary>
    public ScalarType? ScalarType => SafetensorsDtype.ToTorch(Dtype);

    public string ShapeText => Safetensors.ShapeText(Shape);
}

/// <summary>An open safetensors file: the parsed and validated header, and reads of single tensors
/// straight from disk into TorchSharp tensors (no whole-file buffer, no 2 GB array limit).
/// Format: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data buffer.</summary>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>The reference implementation refuses headers above 100 MB; a real one is a few hundred KB.</summary>
    const long MaxHeaderBytes = 100_000_000;

    readonly SafeFileHandle handle;
    readonly Dictionary<string, TensorEntry> byName;

    public string Path { get; }

    /// <summary>Tensors in the order of their data in the file.</summary>
    public IReadOnlyList<TensorEntry> Entries { get; }

    /// <summary>The header's "__metadata__" map; empty when the file has none.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>File offset of the data buffer: 8 + header length.</summary>
    public long DataStart { get; }

    SafetensorsFile(string path, SafeFileHandle handle, long dataStart, List<TensorEntry> entries, Dictionary<string, string> metadata)
    {
        Path = path;
        this.handle = handle;
        DataStart = dataStart;
        Entries = entries;
        Metadata = metadata;
        byName = entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
    }

    /// <summary>Opens and validates a file: known dtypes, sizes matching shapes, offsets in range,
    /// contiguous and non-overlapping, and covering the data buffer exactly.</summary>
    public static SafetensorsFile Open(string path)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors data is little-endian; this reader copies bytes as they are");
        path = System.IO.Path.GetFullPath(path);
        if (!File.Exists(path)) throw new CheckpointException($"{path}: no such safetensors file");
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            long length = RandomAccess.GetLength(handle);
            if (length < 8) throw Error(path, $"is {length} bytes, too short for the 8-byte header length");
            Span<byte> prefix = stackalloc byte[8];
            ReadExactly(handle, prefix, 0, path, "the header length");
            ulong n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (n > MaxHeaderBytes) throw Error(path, $"declares a {n}-byte header, above the {MaxHeaderBytes}-byte limit; not a safetensors file?");
            if ((long)n > length - 8)
                throw Error(path, $"declares a {n}-byte header but only {length - 8} bytes follow the header length; the file is truncated or not safetensors");
            var header = new byte[n];
            ReadExactly(handle, header, 8, path, "the header");
            long dataStart = 8 + (long)n;
            var (entries, metadata) = ParseHeader(header, path, length - dataStart);
            return new SafetensorsFile(path, handle, dataStart, entries, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => byName.ContainsKey(name);

    public bool TryGetEntry(string name, out TensorEntry entry) => byName.TryGetValue(name, out entry!);

    public TensorEntry Entry(string name) =>
        byName.TryGetValue(name, out var e) ? e : throw new CheckpointException($"{Path}: no tensor '{name}'");

    /// <summary>A new CPU tensor with the tensor's values, in the file's dtype or converted to
    /// <paramref name="asType"/> by torch (BF16/F16 → F32 is exact; F32 → BF16 rounds to nearest even).</summary>
    public Tensor Read(string name, ScalarType? asType = null)
    {
        var entry = Entry(name);
        var type = entry.ScalarType
            ?? throw new CheckpointException($"{Path}: tensor '{name}' has dtype {entry.Dtype}, which TorchSharp has no type for");
        var tensor = empty(entry.Shape.ToArray(), dtype: type, device: CPU);
        try
        {
            TensorBytes.Read(tensor, entry.ByteSize, (span, offset) =>
                ReadExactly(handle, span, DataStart + entry.Begin + offset, Path, $"tensor '{name}'"));
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
        if (asType is null || asType == type) return tensor;
        using (tensor) return tensor.to_type(asType.Value);
    }

    public void Dispose() => handle.Dispose();

    static void ReadExactly(SafeFileHandle handle, Span<byte> into, long offset, string path, string what)
    {
        while (into.Length > 0)
        {
            int read = RandomAccess.Read(handle, into, offset);
            if (read == 0) throw Error(path, $"ends before the end of {what} at byte {offset}; the file was truncated or changed after opening");
            into = into[read..];
            offset += read;
        }
    }

    static CheckpointException Error(string path, string what) => new($"{path}: {what}");

    static CheckpointException TensorError(string path, string name, string what) => new($"{path}: tensor '{name}' {what}");

    static (List<TensorEntry>, Dictionary<string, string>) ParseHeader(byte[] header, string path, long bufferLength)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{path}: the header is not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw Error(path, $"the header must be a JSON object, found {doc.RootElement.ValueKind}");
            var entries = new List<TensorEntry>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                if (!seen.Add(property.Name)) throw TensorError(path, property.Name, "appears twice in the header");
                if (property.Name == "__metadata__") ParseMetadata(property.Value, path, metadata);
                else entries.Add(ParseEntry(property.Name, property.Value, path));
            }
            Validate(entries, path, bufferLength);
            return (entries, metadata);
        }
    }

    static void ParseMetadata(JsonElement value, string path, Dictionary<string, string> into)
    {
        if (value.ValueKind != JsonValueKind.Object) throw Error(path, "'__metadata__' must be an object of strings");
        foreach (var p in value.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String)
                throw Error(path, $"'__metadata__.{p.Name}' must be a string, found {p.Value.GetRawText()}");
            if (!into.TryAdd(p.Name, p.Value.GetString()!)) throw Error(path, $"'__metadata__.{p.Name}' appears twice");
        }
    }

    static TensorEntry ParseEntry(string name, JsonElement value, string path)
    {
        if (value.ValueKind != JsonValueKind.Object) throw TensorError(path, name, $"must be an object with dtype, shape and data_offsets, found {value.GetRawText()}");
        if (!value.TryGetProperty("dtype", out var dtypeNode) || dtypeNode.ValueKind != JsonValueKind.String)
            throw TensorError(path, name, "has no string 'dtype'");
        string dtype = dtypeNode.GetString()!;
        if (!SafetensorsDtype.IsKnown(dtype))
            throw TensorError(path, name, $"has unknown dtype '{dtype}'; known: {SafetensorsDtype.KnownNames}");
        var shape = Integers(value, "shape", name, path);
        var offsets = Integers(value, "data_offsets", name, path);
        if (offsets.Length != 2) throw TensorError(path, name, $"must have two data_offsets [begin, end], found {offsets.Length}");
        return new TensorEntry(name, dtype, shape, path, offsets[0], offsets[1]);
    }

    static long[] Integers(JsonElement value, string field, string name, string path)
    {
        if (!value.TryGetProperty(field, out var node) || node.ValueKind != JsonValueKind.Array)
            throw TensorError(path, name, $"has no '{field}' list");
        var result = new long[node.GetArrayLength()];
        int i = 0;
        foreach (var item in node.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long v) || v < 0)
                throw TensorError(path, name, $"'{field}' must hold non-negative integers, found {node.GetRawText()}");
            result[i++] = v;
        }
        return result;
    }

    /// <summary>As the reference reader: in offset order every tensor starts where the previous ended, spans
    /// exactly numel * dtype size bytes, and the last ends at the end of the file.</summary>
    static void Validate(List<TensorEntry> entries, string path, long bufferLength)
    {
        entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        TensorEntry? previous = null;
        foreach (var e in entries)
        {
            string range = $"data_offsets [{e.Begin}, {e.End}]";
            if (e.End < e.Begin) throw TensorError(path, e.Name, $"has {range} ending before they begin");
            long bytes = ExpectedBytes(e, path);
            if (e.End - e.Begin != bytes)
                throw TensorError(path, e.Name, $"has shape {e.ShapeText} of {e.Dtype} = {bytes} bytes, but {range} span {e.End - e.Begin} bytes");
            if (e.End > bufferLength)
                throw TensorError(path, e.Name, $"has {range} beyond the {bufferLength}-byte data buffer; the file is truncated");
            long expectedBegin = previous?.End ?? 0;
            if (e.Begin < expectedBegin)
                throw TensorError(path, e.Name, $"has {range} overlapping tensor '{previous!.Name}' [{previous.Begin}, {previous.End}]");
            if (e.Begin > expectedBegin)
                throw TensorError(path, e.Name, previous is null
                    ? $"has {range}: the data buffer must start with a tensor at offset 0"
                    : $"has {range}, leaving a gap after tensor '{previous.Name}' [{previous.Begin}, {previous.End}]");
            previous = e;
        }
        long end = previous?.End ?? 0;
        if (end != bufferLength)
            throw Error(path, $"has {bufferLength - end} bytes after the last tensor's data (buffer is {bufferLength} bytes, tensors cover {end})");
    }

    static long ExpectedBytes(TensorEntry e, string path)
    {
        try
        {
            long bits = checked(e.Shape.Aggregate(1L, (a, b) => checked(a * b)) * SafetensorsDtype.Bits(e.Dtype));
            if (bits % 8 != 0) throw TensorError(path, e.Name, $"of {e.Dtype} with shape {e.ShapeText} does not fill whole bytes");
            return bits / 8;
        }
        catch (OverflowException)
        {
            throw TensorError(path, e.Name, $"has shape {e.ShapeText} whose size overflows");
        }
    }
}

/// <summary>Writes safetensors files the way the reference writer and transformers do.</summary>
public static class Safetensors
{
    /// <summary>Writes <paramref name="tensors"/> to <paramref name="path"/>, each in its own dtype (any layout
    /// or device; non-contiguous tensors are written in logical order). Deterministic: tensors ordered by
    /// descending dtype alignment, then name, as the reference Rust writer does, so each tensor's data is
    /// aligned to its element size; header keys in data order after "__metadata__", padded with spaces to a
    /// multiple of 8. Atomic: written to a temporary file in the same folder, then renamed over the target.
    /// <paramref name="metadata"/> goes to "__metadata__"; "format": "pt" is added unless given, as
    /// transformers refuses files with another or no format in their metadata.</summary>
    /// <param name="fill">for tensors given as meta-device placeholders (shape and dtype only): makes each one's data when
    /// its turn to be written comes, so a caller can stream tensors it never holds all at once (ZeRO's gathered state).</param>
    public static void Save(string path, IEnumerable<(string name, Tensor t)> tensors, IDictionary<string, string>? metadata = null,
        Func<string, Tensor>? fill = null)
    {
        path = Path.GetFullPath(path);
        var plan = Plan(path, tensors);
        var header = Header(plan, metadata);
        AtomicFile.Write(path, 8 + header.Length + plan.Sum(p => p.Entry.ByteSize), stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
            stream.Write(length);
            stream.Write(header);
            foreach (var (entry, tensor) in plan)
            {
                if (tensor.device_type != DeviceType.META) WriteData(stream, tensor, entry);
                else
                {
                    using var made = (fill ?? throw new CheckpointException($"{path}: tensor '{entry.Name}' is a placeholder and nothing fills it"))(entry.Name);
                    if (!made.shape.SequenceEqual(tensor.shape) || made.dtype != tensor.dtype)
                        throw new CheckpointException($"{path}: tensor '{entry.Name}' was filled as {made.dtype} {ShapeText(made.shape)}, planned {tensor.dtype} {ShapeText(tensor.shape)}");
                    WriteData(stream, made, entry);
                }
            }
        });
    }

    /// <summary>Bytes a tensor takes in a safetensors file.</summary>
    public static long ByteSize(Tensor t) => t.numel() * t.ElementSize;

    internal static string ShapeText(IEnumerable<long> shape) => $"[{string.Join(", ", shape)}]";

    static List<(TensorEntry Entry, Tensor Tensor)> Plan(string path, IEnumerable<(string name, Tensor t)> tensors)
    {
        var list = new List<(TensorEntry, Tensor)>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, t) in tensors)
        {
            if (string.IsNullOrEmpty(name)) throw new CheckpointException($"{path}: a tensor has an empty name");
            if (name == "__metadata__") throw new CheckpointException($"{path}: '__metadata__' is reserved and cannot name a tensor");
            if (!names.Add(name)) throw new CheckpointException($"{path}: tensor '{name}' is given twice");
            string dtype = SafetensorsDtype.FromTorch(t.dtype)
                ?? throw new CheckpointException($"{path}: tensor '{name}' has dtype {t.dtype}, which safetensors cannot store");
            list.Add((new TensorEntry(name, dtype, t.shape, path, 0, ByteSize(t)), t));
        }
        list.Sort((a, b) =>
        {
            int byRank = SafetensorsDtype.Rank(b.Item1.Dtype).CompareTo(SafetensorsDtype.Rank(a.Item1.Dtype));
            return byRank != 0 ? byRank : string.CompareOrdinal(a.Item1.Name, b.Item1.Name);
        });
        long offset = 0;
        for (int i = 0; i < list.Count; i++)
        {
            var (entry, t) = list[i];
            list[i] = (entry with { Begin = offset, End = offset + entry.ByteSize }, t);
            offset += entry.ByteSize;
        }
        return list;
    }

    /// <summary>Compact JSON as serde_json writes it: {"__metadata__":{...},"name":{"dtype":..,"shape":[..],"data_offsets":[b,e]},...}.</summary>
    static byte[] Header(List<(TensorEntry Entry, Tensor Tensor)> plan, IDictionary<string, string>? metadata)
    {
        var meta = new SortedDictionary<string, string>(StringComparer.Ordinal);
        if (metadata is not null) foreach (var (k, v) in metadata) meta[k] = v;
        meta.TryAdd("format", "pt");

        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteStartObject("__metadata__");
            foreach (var (k, v) in meta) json.WriteString(k, v);
            json.WriteEndObject();
            foreach (var (e, _) in plan)
            {
                json.WriteStartObject(e.Name);
                json.WriteString("dtype", e.Dtype);
                json.WriteStartArray("shape");
                foreach (long d in e.Shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(e.Begin);
                json.WriteNumberValue(e.End);
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        while (buffer.Length % 8 != 0) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }

    static void WriteData(Stream stream, Tensor tensor, TensorEntry entry)
    {
        using var scope = NewDisposeScope();
        var t = tensor.detach();
        if (t.device_type != DeviceType.CPU) t = t.cpu();
        t = t.contiguous();
        long written = 0;
        TensorBytes.Write(t, span =>
        {
            stream.Write(span);
            written += span.Length;
        });
        if (written != entry.ByteSize)
            throw new CheckpointException($"{entry.File}: tensor '{entry.Name}' produced {written} bytes, expected {entry.ByteSize}");
    }
}

/// <summary>Raw byte access to a CPU tensor's memory through TorchSharp's <c>Tensor.bytes</c> span, chunked
/// over a flat view because a span is limited to 2 GB.</summary>
internal static class TensorBytes
{
    const long ChunkBytes = 256L << 20;

    public delegate void ChunkReader(Span<byte> into, long offset);

    public delegate void ChunkWriter(ReadOnlySpan<byte> from);

    /// <summary>Fills a contiguous CPU tensor chunk by chunk; <paramref name="read"/> gets the span and its byte offset.</summary>
    public static void Read(Tensor t, long byteSize, ChunkReader read)
    {
        if (byteSize == 0) return;
        using var flat = t.view(-1);
        ForEachChunk(flat, (span, offset) => read(span, offset));
    }

    public static void Write(Tensor t, ChunkWriter write)
    {
        if (t.numel() == 0) return;
        using var flat = t.view(-1);
        ForEachChunk(flat, (span, _) => write(span));
    }

    static void ForEachChunk(Tensor flat, ChunkReader action)
    {
        long elementSize = flat.ElementSize;
        long count = flat.numel();
        long perChunk = Math.Max(1, ChunkBytes / elementSize);
        for (long start = 0; start < count; start += perChunk)
        {
            using var part = flat.narrow(0, start, Math.Min(perChunk, count - start));
            action(part.bytes, start * elementSize);
        }
    }
}

/// <summary>Writes a file under a temporary name in the same folder and renames it over the target, so a
/// reader sees the old file or the complete new one, never a partial one.</summary>
internal static class AtomicFile
{
    public static void Write(string path, long expectedLength, Action<FileStream> write)
    {
        string dir = Path.GetDirectoryName(path)!;
        Directory.CreateDirectory(dir);
        string temp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                Share = FileShare.None,
                BufferSize = 1 << 20,
                PreallocationSize = Math.Max(0, expectedLength),
            }))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
                if (expectedLength >= 0 && stream.Length != expectedLength)
                    throw new CheckpointException($"{path}: wrote {stream.Length} bytes, expected {expectedLength}");
            }
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }
}
