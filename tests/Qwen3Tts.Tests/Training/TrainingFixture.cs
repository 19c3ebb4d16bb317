using System.Text.Json.Nodes;
using Qwen3Tts.Model.Audio;
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

    /// <summary>The demo records with ref_text (the demo clip's transcript) on every record but <paramref name="withoutRefText"/>,
    /// and ref_codes on the first <paramref name="withRefCodes"/>.</summary>
    public static string IclData(int records, int copies = 1, int withoutRefText = -1, int withRefCodes = 0, string tag = "icl-data")
    {
        string data = TrainingFixture.DemoData(records, copies, tag);
        var lines = File.ReadAllLines(data).Select((l, i) =>
        {
            var o = JsonNode.Parse(l)!.AsObject();
            if (i != withoutRefText) o["ref_text"] = "Sannu da zuwa.";
            if (i < withRefCodes) o["ref_codes"] = o["audio_codes"]!.DeepClone(); // any valid grid: the codes it names are used as they are
            return o.ToJsonString();
        });
        File.WriteAllLines(data, lines);
        return data;
    }

    /// <summary>Demo data with two speakers: amina (the first half of the records, the demo clip) and musa (the second half, another clip:
    /// the demo clip reversed and a fifth slower, so the speaker encoder hears someone else).</summary>
    public static string TwoSpeakerData(int records, int copies = 1, string tag = "multi-data")
    {
        string data = DemoData(records, copies, tag);
        string dir = Path.GetDirectoryName(data)!;
        var clip = AudioFile.LoadMono24k(Path.Combine(dir, "ref_voice.wav")).Samples;
        var other = Enumerable.Range(0, clip.Length * 6 / 5).Select(i => clip[clip.Length - 1 - i * 5 / 6]).ToArray();
        WavWriter.Write(Path.Combine(dir, "musa.wav"), other, 24000);
        var lines = File.ReadAllLines(data).Select((l, i) =>
        {
            var o = JsonNode.Parse(l)!.AsObject();
            bool musa = i % records >= records / 2;
            o["speaker_id"] = musa ? "musa" : "amina";
            if (musa) o["ref_audio"] = "musa.wav";
            return o.ToJsonString();
        });
        File.WriteAllLines(data, lines);
        return data;
    }
}
