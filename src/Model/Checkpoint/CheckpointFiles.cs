using System.Text.Json;
using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Checkpoint;

/// <summary>A checkpoint folder as transformers writes it: one <c>model.safetensors</c>, or shards
/// <c>model-0000k-of-0000n.safetensors</c> listed by <c>model.safetensors.index.json</c>
/// ({"metadata": {"total_size": N}, "weight_map": {"tensor": "shard file"}}). One view over all tensors,
/// each entry naming the file it lives in.</summary>
public sealed partial class CheckpointFiles : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>transformers' default max_shard_size, "5GB" (decimal).</summary>
    public const long DefaultMaxShardBytes = 5_000_000_000;

    readonly List<SafetensorsFile> files;
    readonly Dictionary<string, (TensorEntry Entry, SafetensorsFile File)> byName;

    /// <summary>The index file, or null for a single-file checkpoint.</summary>
    public string? IndexPath { get; }

    /// <summary>The safetensors files, in shard order.</summary>
    public IReadOnlyList<string> Files => files.Select(f => f.Path).ToList();

    /// <summary>All tensors, file by file in data order.</summary>
    public IReadOnlyList<TensorEntry> Entries { get; }

    CheckpointFiles(string? indexPath, List<SafetensorsFile> files)
    {
        IndexPath = indexPath;
        this.files = files;
        byName = new(StringComparer.Ordinal);
        var entries = new List<TensorEntry>();
        foreach (var file in files)
        {
            foreach (var e in file.Entries)
            {
                if (byName.TryGetValue(e.Name, out var other))
                    throw new CheckpointException($"tensor '{e.Name}' is in both {other.File.Path} and {file.Path}");
                byName[e.Name] = (e, file);
                entries.Add(e);
            }
        }
        Entries = entries;
    }

    /// <summary>Opens a checkpoint folder (model.safetensors if present, else the index and its shards), or a
    /// .safetensors file, or an index file, given by path.</summary>
    public static CheckpointFiles Open(string path)
    {
        path = Path.GetFullPath(path);
        if (File.Exists(path))
            return path.EndsWith(".json", StringComparison.Ordinal) ? OpenIndex(path) : new CheckpointFiles(null, [SafetensorsFile.Open(path)]);
        if (!Directory.Exists(path)) throw new CheckpointException($"{path}: no such checkpoint folder or file");
        string single = Path.Combine(path, SingleFileName), index = Path.Combine(path, IndexFileName);
        if (File.Exists(single)) return new CheckpointFiles(null, [SafetensorsFile.Open(single)]);
        if (File.Exists(index)) return OpenIndex(index);
        throw new CheckpointException($"{path}: holds neither {SingleFileName} nor {IndexFileName}");
    }

    public bool Contains(string name) => byName.ContainsKey(name);

    public bool TryGetEntry(string name, out TensorEntry entry)
    {
        bool found = byName.TryGetValue(name, out var hit);
        entry = hit.Entry;
        return found;
    }

    public TensorEntry Entry(string name) => byName.TryGetValue(name, out var hit)
        ? hit.Entry
        : throw new CheckpointException($"{IndexPath ?? files[0].Path}: no tensor '{name}'");

    /// <summary>Reads one tensor from the file it lives in; see <see cref="SafetensorsFile.Read"/>.</summary>
    public Tensor Read(string name, ScalarType? asType = null)
    {
        if (!byName.TryGetValue(name, out var hit)) throw new CheckpointException($"{IndexPath ?? files[0].Path}: no tensor '{name}'");
        return hit.File.Read(name, asType);
    }

    public void Dispose()
    {
        foreach (var f in files) f.Dispose();
    }

    static CheckpointFiles OpenIndex(string indexPath)
    {
        string dir = Path.GetDirectoryName(indexPath)!;
        var weightMap = ReadWeightMap(indexPath);
        var shards = weightMap.Values.Distinct().Order(StringComparer.Ordinal).ToList();
        var missing = shards.Where(s => !File.Exists(Path.Combine(dir, s))).ToList();
        if (missing.Count > 0)
            throw new CheckpointException($"{indexPath}: shard{(missing.Count > 1 ? "s" : "")} missing from {dir}: "
                + string.Join(", ", missing.Select(s => $"{s} (holds '{weightMap.First(kv => kv.Value == s).Key}' and {weightMap.Count(kv => kv.Value == s) - 1} more)")));

        var opened = new List<SafetensorsFile>();
        try
        {
            foreach (var shard in shards) opened.Add(SafetensorsFile.Open(Path.Combine(dir, shard)));
            foreach (var (name, shard) in weightMap)
            {
                if (!opened.First(f => Path.GetFileName(f.Path) == shard).Contains(name))
                    throw new CheckpointException($"{indexPath}: tensor '{name}' is mapped to {shard}, which does not hold it");
            }
            foreach (var f in opened)
            {
                var stray = f.Entries.FirstOrDefault(e => !weightMap.TryGetValue(e.Name, out var s) || s != Path.GetFileName(f.Path));
                if (stray is not null)
                    throw new CheckpointException($"{indexPath}: tensor '{stray.Name}' in {f.Path} is not mapped to that file by the index's weight_map");
            }
            return new CheckpointFiles(indexPath, opened);
        }
        catch
        {
            foreach (var f in opened) f.Dispose();
            throw;
        }
    }

    static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{indexPath}: not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new CheckpointException($"{indexPath}: has no 'weight_map' object");
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new CheckpointException($"{indexPath}: weight_map['{p.Name}'] must be a file name, found {p.Value.GetRawText()}");
                string file = p.Value.GetString()!;
                if (file.Length == 0 || file != Path.GetFileName(file) || file is "." or "..")
                    throw new CheckpointException($"{indexPath}: weight_map['{p.Name}'] = '{file}' must be a file name in the index's folder");
                if (!result.TryAdd(p.Name, file)) throw new CheckpointException($"{indexPath}: weight_map lists '{p.Name}' twice");
            }
            return result;
        }
    }

    /// <summary>Writes a checkpoint folder as transformers does: tensors packed in the given order into shards
    /// of at most <paramref name="maxShardBytes"/> of tensor data (a larger tensor gets a shard of its own);
    /// one <c>model.safetensors</c> when everything fits, else <c>model-0000k-of-0000n.safetensors</c> and the
    /// index. Each file is written atomically; files of an earlier checkpoint in the folder that the new one
    /// does not use are deleted (a stale model.safetensors would shadow the index). Returns the files written.</summary>
    public static IReadOnlyList<string> Save(string dir, IEnumerable<(string name, Tensor t)> tensors,
        long maxShardBytes = DefaultMaxShardBytes, IDictionary<string, string>? metadata = null, Func<string, Tensor>? fill = null)
    {
        if (maxShardBytes <= 0) throw new ArgumentOutOfRangeException(nameof(maxShardBytes), maxShardBytes, "must be positive");
        dir = Path.GetFullPath(dir);
        Directory.CreateDirectory(dir);
        var list = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, _) in list)
            if (!names.Add(name)) throw new CheckpointException($"{dir}: tensor '{name}' is given twice");

        var shards = Split(list, maxShardBytes);
        if (shards.Count <= 1)
        {
            string single = Path.Combine(dir, SingleFileName);
            Safetensors.Save(single, list, metadata, fill);
            DeleteStale(dir, keep: []);
            TryDelete(Path.Combine(dir, IndexFileName));
            return [single];
        }

        var written = new List<string>();
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int k = 0; k < shards.Count; k++)
        {
            string file = $"model-{k + 1:D5}-of-{shards.Count:D5}.safetensors";
            Safetensors.Save(Path.Combine(dir, file), shards[k], metadata, fill);
            foreach (var (name, _) in shards[k]) weightMap[name] = file;
            written.Add(Path.Combine(dir, file));
        }
        TryDelete(Path.Combine(dir, SingleFileName));
        string index = Path.Combine(dir, IndexFileName);
        WriteIndex(index, list.Sum(p => Safetensors.ByteSize(p.t)), weightMap);
        DeleteStale(dir, keep: written.Select(Path.GetFileName).ToHashSet()!);
        written.Add(index);
        return written;
    }

    /// <summary>Greedy packing in order, as huggingface_hub's split_torch_state_dict_into_shards.</summary>
    internal static List<List<(string name, Tensor t)>> Split(List<(string name, Tensor t)> tensors, long maxShardBytes)
    {
        var shards = new List<List<(string, Tensor)>>();
        var current = new List<(string, Tensor)>();
        long currentBytes = 0;
        foreach (var item in tensors)
        {
            long bytes = Safetensors.ByteSize(item.t);
            if (current.Count > 0 && currentBytes + bytes > maxShardBytes)
            {
                shards.Add(current);
                current = [];
                currentBytes = 0;
            }
            current.Add(item);
            currentBytes += bytes;
        }
        if (current.Count > 0 || shards.Count == 0) shards.Add(current);
        return shards;
    }

    /// <summary>As transformers: json.dumps(index, indent=2, sort_keys=True) + "\n".</summary>
    static void WriteIndex(string path, long totalSize, SortedDictionary<string, string> weightMap)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteStartObject("metadata");
            json.WriteNumber("total_size", totalSize);
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (var (name, file) in weightMap) json.WriteString(name, file);
            json.WriteEndObject();
            json.WriteEndObject();
        }
        buffer.WriteByte((byte)'\n');
        var bytes = buffer.ToArray();
        AtomicFile.Write(path, bytes.Length, stream => stream.Write(bytes));
    }

    [GeneratedRegex(@"^model-\d{5}-of-\d{5}\.safetensors$")]
    private static partial Regex ShardName();

    static void DeleteStale(string dir, HashSet<string> keep)
    {
        foreach (var file in Directory.EnumerateFiles(dir, "model-*-of-*.safetensors"))
        {
            string name = Path.GetFileName(file);
            if (ShardName().IsMatch(name) && !keep.Contains(name)) TryDelete(file);
        }
    }

    static void TryDelete(string path)
    {
        if (File.Exists(path)) File.Delete(path);
    }
}
