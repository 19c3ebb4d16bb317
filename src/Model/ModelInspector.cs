using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;
using TorchSharp;

namespace Qwen3Tts.Model;

/// <summary>What `qwen3tts inspect` reports: the expected layout from config.json (built on the meta
/// device, so even 1.7B costs no memory) and, when weights are present, how the files compare.</summary>
public sealed record InspectReport(
    string Directory,
    Qwen3TtsConfig Config,
    IReadOnlyList<(string Name, long[] Shape)> Layout,
    bool LayoutOnly,
    IReadOnlyList<string> Missing,
    IReadOnlyList<string> Unexpected,
    IReadOnlyList<string> Mismatched,
    IReadOnlyDictionary<string, int> StoredDtypes)
{
    public long Total => Layout.Sum(e => Count(e.Shape));

    public bool IsValid => Missing.Count == 0 && Unexpected.Count == 0 && Mismatched.Count == 0;

    public static long Count(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>talker.model.layers.3.mlp.up_proj.weight → talker.model.layers; speaker_encoder.* → speaker_encoder.</summary>
    public static string Component(string name)
    {
        var parts = name.Split('.');
        int depth = parts[0] == "talker" ? (parts.Length > 2 && parts[1] == "model" ? 3 : 2) : 1;
        return string.Join('.', parts.Take(Math.Min(depth, parts.Length - 1)));
    }

    public IEnumerable<(string Component, int Tensors, long Parameters)> ByComponent() =>
        Layout.GroupBy(e => Component(e.Name)).Select(g => (g.Key, g.Count(), g.Sum(e => Count(e.Shape))));
}

public static class ModelInspector
{
    public static InspectReport Inspect(string dir)
    {
        var config = Qwen3TtsConfig.Load(Path.Combine(dir, ModelDirectory.ConfigFile));
        using var model = new Qwen3TtsModel(config, new torch.Device("meta"));
        var layout = model.Layout();
        if (!ModelDirectory.HasWeights(dir))
            return new InspectReport(dir, config, layout, LayoutOnly: true, [], [], [], new Dictionary<string, int>());

        using var files = CheckpointFiles.Open(dir);
        var expected = layout.ToDictionary(e => e.Name, e => e.Shape);
        var stored = files.Entries.ToDictionary(e => e.Name);
        var missing = layout.Where(e => !stored.ContainsKey(e.Name)).Select(e => e.Name).ToList();
        var unexpected = files.Entries.Where(e => !expected.ContainsKey(e.Name)).Select(e => e.Name).Order(StringComparer.Ordinal).ToList();
        var mismatched = layout.Where(e => stored.TryGetValue(e.Name, out var s) && !s.Shape.SequenceEqual(e.Shape))
            .Select(e => $"{e.Name}: expected {Safetensors.ShapeText(e.Shape)}, found {stored[e.Name].ShapeText}").ToList();
        var dtypes = files.Entries.GroupBy(e => e.Dtype).ToDictionary(g => g.Key, g => g.Count());
        return new InspectReport(dir, config, layout, LayoutOnly: false, missing, unexpected, mismatched, dtypes);
    }
}
