using Qwen3Tts.Model;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Training;

/// <summary>The fixtures training tests share: a tiny random model directory and a subset of the bundled demo data.</summary>
static class TrainingFixture
{
    public static string DemoDir { get; } = Path.Combine(TestPaths.RepoRoot, "assets", "demo");

    public static string TinyModel(ulong seed, string tag = "model")
    {
        string dir = TestPaths.NewTempDir(tag);
        ModelDirectory.CreateRandom(dir, "tiny", seed, ScalarType.Float32);
        return dir;
    }

    /// <summary>train.jsonl of the first <paramref name="records"/> demo records, repeated <paramref name="copies"/> times,
    /// beside a copy of the reference clip.</summary>
    public static string DemoData(int records, int copies = 1, string tag = "data")
    {
        string dir = TestPaths.NewTempDir(tag);
        File.Copy(Path.Combine(DemoDir, "ref_voice.wav"), Path.Combine(dir, "ref_voice.wav"));
        var lines = File.ReadLines(Path.Combine(DemoDir, "train.jsonl")).Take(records).ToList();
        string path = Path.Combine(dir, "train.jsonl");
        File.WriteAllLines(path, Enumerable.Repeat(lines, copies).SelectMany(l => l));
        return path;
    }
}
