using System.Text.Json.Nodes;
using Parquet.Serialization;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Audio;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Prepare;

/// <summary>A small raw speech dataset written three ways from the same clips: the reference's raw JSONL (audio paths,
/// no ref_audio), a Hugging Face dataset folder (data/train-0000N-of-00002.parquet with the audio struct holding the WAV
/// bytes, plus a validation shard), and the tiny model whose speech_tokenizer/ encodes them.</summary>
sealed class PrepareFixture
{
    public sealed record Utterance(string Id, string Text, string Speaker, int Rate, int Samples, double Hz);

    /// <summary>Two speakers, interleaved; several sample rates (resampled to 24 kHz) and lengths (4 to 9 frames).</summary>
    public static readonly Utterance[] Utterances =
    [
        new("spk1/utt0", "Sannu da zuwa.", "spk1", 24000, 9000, 220),
        new("spk2/utt1", "Ina kwana?", "spk2", 16000, 7000, 330),
        new("spk1/utt2", "Lafiya lau.", "spk1", 24000, 16000, 180),
        new("spk2/utt3", "Mun gode.", "spk2", 22050, 8000, 260),
        new("spk1/utt4", "Yaya aiki?", "spk1", 24000, 7000, 400),
    ];

    public PrepareFixture(string tag, ulong modelSeed = 7)
    {
        Dir = TestPaths.NewTempDir(tag);
        Model = Path.Combine(Dir, "model");
        ModelDirectory.CreateRandom(Model, "tiny", modelSeed, ScalarType.Float32);
        foreach (var u in Utterances)
        {
            string wav = Clip(u.Id);
            Directory.CreateDirectory(Path.GetDirectoryName(wav)!);
            WavWriter.Write(wav, Tone(u), u.Rate);
        }
        Jsonl = Path.Combine(Dir, "raw.jsonl");
        File.WriteAllLines(Jsonl, Utterances.Select(u => new JsonObject
        {
            ["id"] = u.Id, ["audio"] = $"clips/{u.Id}.wav", ["text"] = u.Text, ["speaker_id"] = u.Speaker, ["language"] = "hausa",
            ["gender"] = u.Speaker == "spk1" ? "female" : "male", ["duration"] = Math.Round(u.Samples / (double)u.Rate, 4), ["score"] = 3,
        }.ToJsonString()));
        HfFolder = Path.Combine(Dir, "hf");
        Directory.CreateDirectory(Path.Combine(HfFolder, "data"));
        WriteShard(Path.Combine(HfFolder, "data", "train-00000-of-00002.parquet"), Utterances[..3]);
        WriteShard(Path.Combine(HfFolder, "data", "train-00001-of-00002.parquet"), Utterances[3..]);
        WriteShard(Path.Combine(HfFolder, "data", "validation-00000-of-00001.parquet"), Utterances[1..2]);
    }

    public string Dir { get; }
    public string Model { get; }
    public string Jsonl { get; }
    public string HfFolder { get; }

    public string Clip(string id) => Path.Combine(Dir, "clips", id + ".wav");

    public string Out(string name) => Path.Combine(Dir, "out", name);

    static float[] Tone(Utterance u)
    {
        var rng = new Random(u.Samples);
        return Enumerable.Range(0, u.Samples)
            .Select(i => (float)(0.4 * Math.Sin(2 * Math.PI * u.Hz * i / u.Rate) * (0.6 + 0.4 * Math.Sin(i * 0.0011)) + 0.02 * (rng.NextDouble() - 0.5)))
            .ToArray();
    }

    public sealed class HfAudio
    {
        public byte[]? bytes { get; set; }
        public string? path { get; set; }
    }

    public sealed class HfRow
    {
        public string? id { get; set; }
        public HfAudio? audio { get; set; }
        public string? text { get; set; }
        public string? speaker_id { get; set; }
        public string? language { get; set; }
        public string? gender { get; set; }
        public double? duration { get; set; }
        public long? score { get; set; }
    }

    public HfRow Row(Utterance u) => new()
    {
        id = u.Id, audio = new HfAudio { bytes = File.ReadAllBytes(Clip(u.Id)), path = Path.GetFileName(u.Id) + ".wav" }, text = u.Text,
        speaker_id = u.Speaker, language = "hausa", gender = u.Speaker == "spk1" ? "female" : "male",
        duration = Math.Round(u.Samples / (double)u.Rate, 4), score = 3,
    };

    void WriteShard(string path, IEnumerable<Utterance> utterances) =>
        ParquetSerializer.SerializeAsync(utterances.Select(Row), path, new Parquet.ParquetOptions { RowGroupSize = 2 }).GetAwaiter().GetResult();
}
