using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Checkpoint;

/// <summary>A key both sides have whose tensor cannot be copied: a different shape, or a floating-point
/// value for an integer or boolean slot (or the reverse).</summary>
public sealed record KeyMismatch(string Name, IReadOnlyList<long> ExpectedShape, IReadOnlyList<long> FoundShape, ScalarType ExpectedDtype, string FoundDtype)
{
    public override string ToString() =>
        $"{Name}: module has {Safetensors.ShapeText(ExpectedShape)} {ExpectedDtype}, checkpoint has {Safetensors.ShapeText(FoundShape)} {FoundDtype}";
}

/// <summary>What a load found: keys copied, keys the module has and the checkpoint lacks (missing), keys the
/// checkpoint has and the module lacks (unexpected), and keys whose tensors do not fit (mismatched).</summary>
public sealed record LoadReport(
    IReadOnlyList<string> Loaded,
    IReadOnlyList<string> Missing,
    IReadOnlyList<string> Unexpected,
    IReadOnlyList<KeyMismatch> Mismatched)
{
    public bool IsExact => Missing.Count == 0 && Unexpected.Count == 0 && Mismatched.Count == 0;

    /// <summary>The counts and the first <paramref name="limit"/> keys of each kind.</summary>
    public string Describe(int limit = 20)
    {
        var text = new StringBuilder();
        void Section<T>(string what, IReadOnlyList<T> items)
        {
            if (items.Count == 0) return;
            text.Append($"\n  {items.Count} {what}:");
            foreach (var item in items.Take(limit)) text.Append($"\n    {item}");
            if (items.Count > limit) text.Append($"\n    ... and {items.Count - limit} more");
        }
        text.Append($"{Loaded.Count} keys loaded");
        Section("missing from the checkpoint", Missing);
        Section("unexpected (in the checkpoint, not in the module)", Unexpected);
        Section("with a mismatched shape or dtype", Mismatched);
        return text.ToString();
    }
}

/// <summary>Loads safetensors checkpoints into TorchSharp modules by state-dict name, and saves them.</summary>
public static class CheckpointLoader
{
    /// <summary>Copies the checkpoint at <paramref name="path"/> (a folder, a .safetensors file or an index) into
    /// <paramref name="module"/>'s parameters and persistent buffers in place, one tensor at a time, converting
    /// each to the destination's dtype and device (bf16/f16 → f32 exactly, f32 → bf16 rounding to nearest even).
    /// <paramref name="dtype"/>, when given, first casts the module's floating-point parameters and buffers to it
    /// (<c>Module.to(dtype)</c>, which replaces those tensors: take references to parameters after loading).
    /// Strict (the default) throws one <see cref="CheckpointException"/> listing every missing, unexpected and
    /// mismatched key before anything is copied; non-strict copies the keys that fit and reports the rest.</summary>
    public static LoadReport Load(nn.Module module, string path, bool strict = true, ScalarType? dtype = null)
    {
        if (dtype is { } target) module.to(target);
        var destination = module.state_dict();
        using var checkpoint = CheckpointFiles.Open(path);

        var missing = destination.Keys.Where(k => !checkpoint.Contains(k)).Order(StringComparer.Ordinal).ToList();
        var unexpected = checkpoint.Entries.Select(e => e.Name).Where(k => !destination.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        var mismatched = new List<KeyMismatch>();
        var toLoad = new List<TensorEntry>();
        foreach (var entry in checkpoint.Entries)
        {
            if (!destination.TryGetValue(entry.Name, out var slot)) continue;
            if (!slot.shape.SequenceEqual(entry.Shape) || !Compatible(slot.dtype, entry))
                mismatched.Add(new KeyMismatch(entry.Name, slot.shape, entry.Shape, slot.dtype, entry.Dtype));
            else
                toLoad.Add(entry);
        }
        mismatched.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));

        var report = new LoadReport(toLoad.Select(e => e.Name).ToList(), missing, unexpected, mismatched);
        if (strict && !report.IsExact)
            throw new CheckpointException($"{checkpoint.IndexPath ?? checkpoint.Files[0]}: does not match the module's state dict; nothing was loaded. "
                + report.Describe() + "\n  Load with strict: false to copy the keys that fit.");

        // Entries are in file and data order, so the files are read front to back.
        using var noGrad = no_grad();
        foreach (var entry in toLoad)
        {
            using var scope = NewDisposeScope();
            var value = checkpoint.Read(entry.Name);
            destination[entry.Name].copy_(value);
        }
        return report;
    }

    /// <summary>Writes <paramref name="module"/>'s state dict (parameters and persistent buffers), each tensor in
    /// its own dtype, as a checkpoint folder; see <see cref="CheckpointFiles.Save"/>.</summary>
    public static IReadOnlyList<string> Save(nn.Module module, string dir,
        long maxShardBytes = CheckpointFiles.DefaultMaxShardBytes, IDictionary<string, string>? metadata = null) =>
        CheckpointFiles.Save(dir, module.state_dict().Select(kv => (kv.Key, kv.Value)), maxShardBytes, metadata);

    /// <summary>copy_ converts between any dtypes; only a change of kind (float ↔ integer ↔ bool) is a mistake.</summary>
    static bool Compatible(ScalarType slot, TensorEntry entry) =>
        entry.ScalarType is { } found && Kind(slot) == Kind(found);

    static int Kind(ScalarType t) =>
        t == ScalarType.Bool ? 0 : is_floating_point(t) ? 1 : is_complex(t) ? 2 : 3;
}
