using System.Text.Json.Nodes;
using Qwen3Tts.Coordinator.Observability;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Codec;
using Qwen3Tts.Model.Generation;
using Qwen3Tts.Model.Text;
using Qwen3Tts.Rank.Training;

namespace Qwen3Tts.Tests.Training;

/// <summary>--eval_sentences: at each evaluation rank 0 speaks fixed sentences with the current weights in the training
/// voice, writes the WAVs and logs them to WandB as audio.</summary>
public class EvalSamplesTests : CleansTempDirs
{
    [Fact]
    public void Each_evaluation_speaks_the_sentences_with_the_weights_of_that_moment()
    {
        string model = TrainingFixture.TinyModel(51, "samples-model"), data = TrainingFixture.DemoData(4, tag: "samples-data");
        string output = TestPaths.NewTempDir("samples"), sentencesFile = Path.Combine(output, "..", Path.GetFileName(output) + "-sentences.txt");
        File.WriteAllLines(sentencesFile, ["Sannu da zuwa.", "", """{"text": "Ina kwana?", "language": "english"}"""]);
        var o = new TrainingOptions
        {
            TrainData = data, ValidationData = data, InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 1,
            BatchSize = 2, GradientAccumulationSteps = 1, Lr = 1e-3, LrScheduler = "constant", LoggingSteps = 1000,
            EvalSentences = sentencesFile, EvalSampleMaxSeconds = 0.5, Seed = 7,
        };
        var log = new StringWriter();
        new Trainer(o, log) { Wandb = new WandbSettings { Mode = WandbMode.Offline, Project = "samples" } }.Run();

        // 4 samples / batch 2 = 2 steps; the end-of-epoch evaluation is at step 2 and epoch-1/ holds its weights.
        string dir = Path.Combine(output, "samples", "step-2");
        Assert.Contains($"eval samples: 2 clips", log.ToString());
        var lines = File.ReadAllLines(Path.Combine(dir, "codes.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(["Sannu da zuwa.", "Ina kwana?"], lines.Select(l => l["text"]!.GetValue<string>()));

        using var trained = ModelDirectory.Load(Path.Combine(output, "epoch-1"));
        var synth = new Synthesizer(trained, Qwen3TextTokenizer.FromModelDirectory(model));
        var voice = SpeakerEmbeddings.Load(Path.Combine(output, "samples", "voice.safetensors"));
        // max_new_tokens = ceil(0.5 s × 12.5) + 1 = 8, seed 7 + sentence index.
        var generation = GenerationConfig.FromModelDirectory(model) with { MaxNewTokens = 8 };
        var decoder = SpeechTokenizerDecoderFiles.Load(model).Decoder;
        var sentences = EvalSamples.ReadSentences(sentencesFile);
        Assert.Equal(new EvalSentence("Ina kwana?", "english"), sentences[1]);
        for (int i = 0; i < 2; i++)
        {
            var expected = synth.Synthesize(EvalSamples.Request(sentences[i], voice), generation, 7 + (ulong)i).Codes;
            var frames = lines[i]["audio_codes"]!.AsArray();
            Assert.Equal(expected.GetLength(0), frames.Count);
            for (int f = 0; f < frames.Count; f++)
                for (int g = 0; g < 16; g++) Assert.Equal(expected[f, g], frames[f]![g]!.GetValue<long>());
            var samples = decoder.Decode(expected);
            var wav = WavReader.Read(Path.Combine(dir, $"{i:00}.wav"));
            Assert.Equal(samples.Length, wav.Samples.Length);
            for (int k = 0; k < samples.Length; k++) Assert.True(Math.Abs(samples[k] - wav.Samples[k]) <= 1.0 / 32768 + 1e-7);
        }

        // The evaluation's WandB row carries the loss and both clips; the clips sit in the run folder for upload.
        var row = File.ReadAllLines(Path.Combine(output, "wandb", "history.jsonl")).Select(l => JsonNode.Parse(l)!)
            .Single(r => r["eval/sample_0"] is not null);
        Assert.Equal(2, row["_step"]!.GetValue<long>());
        Assert.NotNull(row["eval/loss"]);
        foreach (var key in new[] { "eval/sample_0", "eval/sample_1" })
        {
            Assert.Equal("audio-file", row[key]!["_type"]!.GetValue<string>());
            string path = row[key]!["path"]!.GetValue<string>();
            Assert.True(File.Exists(Path.Combine(output, "wandb", "files", path)), path);
        }
        Assert.Equal("Ina kwana?", row["eval/sample_1"]!["caption"]!.GetValue<string>());
    }

    [Fact]
    public void Without_validation_data_the_samples_come_at_each_epochs_end()
    {
        string model = TrainingFixture.TinyModel(52, "samples-model"), data = TrainingFixture.DemoData(4, tag: "samples-data");
        string output = TestPaths.NewTempDir("samples-noval"), sentencesFile = Path.Combine(output, "..", Path.GetFileName(output) + "-sentences.txt");
        File.WriteAllLines(sentencesFile, ["Sannu da zuwa."]);
        var o = new TrainingOptions
        {
            TrainData = data, InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 2,
            BatchSize = 2, GradientAccumulationSteps = 1, Lr = 1e-3, LrScheduler = "constant", LoggingSteps = 1000,
            EvalSentences = sentencesFile, EvalSampleMaxSeconds = 0.3,
        };
        new Trainer(o, TextWriter.Null).Run();
        // 2 steps per epoch: samples after steps 2 and 4.
        foreach (var step in new[] { 2, 4 })
            Assert.True(File.Exists(Path.Combine(output, "samples", $"step-{step}", "00.wav")), $"step {step}");
        Assert.Equal(2, Directory.GetDirectories(Path.Combine(output, "samples")).Length);
    }

    [Fact]
    public void With_several_speakers_each_speaks_every_sentence()
    {
        string model = TrainingFixture.TinyModel(52, "samples-model"), data = TrainingFixture.TwoSpeakerData(4, tag: "samples-multi");
        string output = TestPaths.NewTempDir("samples-multi-out"), sentencesFile = Path.Combine(output, "..", Path.GetFileName(output) + "-sentences.txt");
        File.WriteAllLines(sentencesFile, ["Sannu da zuwa.", "Ina kwana?"]);
        new Trainer(new TrainingOptions
        {
            TrainData = data, InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 1,
            BatchSize = 2, GradientAccumulationSteps = 1, LoggingSteps = 1000, MultiSpeaker = true,
            EvalSentences = sentencesFile, EvalSampleMaxSeconds = 0.3,
        }, TextWriter.Null).Run();
        string dir = Path.Combine(output, "samples", "step-2");
        Assert.Equal(["00-amina.wav", "00-musa.wav", "01-amina.wav", "01-musa.wav"],
            Directory.GetFiles(dir, "*.wav").Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(4, File.ReadAllLines(Path.Combine(dir, "codes.jsonl")).Length);
    }

    [Fact]
    public void A_bad_sentences_file_names_the_line()
    {
        string dir = TestPaths.NewTempDir("sentences");
        string path = Path.Combine(dir, "s.jsonl");
        File.WriteAllLines(path, ["Sannu.", """{"language": "english"}"""]);
        var e = Assert.Throws<ArgumentException>(() => EvalSamples.ReadSentences(path));
        Assert.Contains($"{path}:2: text: missing or empty", e.Message);
        File.WriteAllText(path, "\n\n");
        Assert.Contains("no sentences", Assert.Throws<ArgumentException>(() => EvalSamples.ReadSentences(path)).Message);
    }
}
