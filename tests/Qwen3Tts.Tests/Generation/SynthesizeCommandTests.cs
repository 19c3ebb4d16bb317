using System.Text.Json.Nodes;
using Qwen3Tts.Cli.Commands;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Generation;
using Qwen3Tts.Model.Text;
using Qwen3Tts.Rank.Training;
using Qwen3Tts.Tests.Training;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Generation;

/// <summary>`qwen3tts synthesize` end to end: a voice fine-tuned by this project's trainer and exported as a
/// custom_voice model speaks with its --speaker name; the batch form; the missing decoder; bad requests.</summary>
public class SynthesizeCommandTests : CleansTempDirs
{
    static readonly SynthesizeCommand.SamplingOverrides Short = new(MaxNewTokens: 8);

    static List<JsonObject> ReadLines(string path) => File.ReadLines(path).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();

    static long[,] CodesOf(JsonObject line)
    {
        var frames = line["audio_codes"]!.AsArray();
        var codes = new long[frames.Count, 16];
        for (int f = 0; f < frames.Count; f++)
        {
            Assert.Equal(16, frames[f]!.AsArray().Count);
            for (int g = 0; g < 16; g++) codes[f, g] = (long)frames[f]![g]!;
        }
        return codes;
    }

    [Fact]
    public void A_fine_tuned_custom_voice_speaks_with_its_speaker_name()
    {
        string model = TrainingFixture.TinyModel(21), output = TestPaths.NewTempDir("voice");
        var options = new TrainingOptions
        {
            TrainData = TrainingFixture.DemoData(4), InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32",
            LoggingSteps = 1000, NumEpochs = 1, WarmupSteps = 0, LrScheduler = "constant", BatchSize = 2, GradientAccumulationSteps = 1,
            SpeakerName = "amina",
        };
        new Trainer(options, TextWriter.Null).Run();
        string voice = Path.Combine(output, "custom_voice");

        string codesPath = Path.Combine(TestPaths.NewTempDir("codes"), "amina.jsonl");
        var stdout = new StringWriter();
        var input = new SynthesisInput { Id = "0000", Text = "Sannu da zuwa.", Language = "english", Speaker = "amina" };
        int rc = SynthesizeCommand.Run(new SynthesizeCommand.Settings(voice, [input], Out: null, OutDir: null, CodesOut: codesPath, CodesOnly: false, Short, Seed: 3),
            stdout, TextWriter.Null);
        Assert.Equal(0, rc);
        var line = Assert.Single(ReadLines(codesPath));
        Assert.Equal("Sannu da zuwa.", (string?)line["text"]);
        var codes = CodesOf(line);
        Assert.InRange(codes.GetLength(0), 1, 7); // at most max_new_tokens - 1 frames
        foreach (long c in codes) Assert.InRange(c, 0, 2047);
        Assert.Contains($"{codes.GetLength(0)} frames", stdout.ToString());

        // The same request in-process on a separately loaded model gives the same codes (same seed), and its prompt's
        // speaker slot is the exported voice: codec row 3000, the mean speaker embedding the export wrote.
        using var loaded = ModelDirectory.Load(voice);
        var synth = new Synthesizer(loaded, Qwen3TextTokenizer.FromModelDirectory(voice));
        var request = new SynthesisRequest { Text = "Sannu da zuwa.", Language = "english", Speaker = "amina" };
        var again = synth.Synthesize(request, Short.Apply(GenerationConfig.FromModelDirectory(voice)), seed: 3);
        Assert.Equal(codes, again.Codes);
        var (positions, _) = synth.Prompts.Describe(request);
        Assert.Equal(new PromptPosition("tts_pad", "speaker:3000"), positions[7]);
        using var files = CheckpointFiles.Open(voice);
        using var row = files.Read("talker.model.codec_embedding.weight")[3000];
        using (var prompt = synth.Prompts.Build(request))
        using (no_grad())
        {
            var expected = loaded.Talker.EmbedText(tensor(new long[] { loaded.Config.TtsPadTokenId }).unsqueeze(0))[0, 0] + row;
            Assert.True(prompt.InputsEmbeds[0, 7].allclose(expected, rtol: 1e-5, atol: 1e-6));
        }

        // An unknown speaker is refused with the model's speakers listed.
        var error = Assert.Throws<ArgumentException>(() => SynthesizeCommand.Run(
            new SynthesizeCommand.Settings(voice, [input with { Speaker = "zainab" }], null, null, codesPath, false, Short, 0), TextWriter.Null, TextWriter.Null));
        Assert.Contains("zainab", error.Message);
        Assert.Contains("amina", error.Message);
    }

    [Fact]
    public void The_batch_form_writes_one_codes_line_per_request_with_its_id_and_seed()
    {
        string model = TrainingFixture.TinyModel(22);
        string dir = TestPaths.NewTempDir("batch");
        string wav = Path.Combine(dir, "voice.wav");
        File.Copy(Path.Combine(TrainingFixture.DemoDir, "ref_voice.wav"), wav);
        string requests = Path.Combine(dir, "req.jsonl");
        File.WriteAllLines(requests,
        [
            """{"id": "plain", "text": "Sannu.", "language": "english", "seed": 4}""",
            """{"id": "clone", "text": "Ina kwana?", "ref_audio": "voice.wav", "xvector_only": true}""",
        ]);
        string outDir = Path.Combine(dir, "out");
        var settings = new SynthesizeCommand.Settings(model, SynthesisInputs.ReadRequests(requests), null, outDir, null, CodesOnly: true, Short, Seed: 10);
        Assert.Equal(0, SynthesizeCommand.Run(settings, TextWriter.Null, TextWriter.Null));
        var lines = ReadLines(Path.Combine(outDir, "codes.jsonl"));
        Assert.Equal(["plain", "clone"], lines.Select(l => (string?)l["id"]));

        // Each line is what the request gives on its own: request 0 with its own seed 4, request 1 with --seed + 1.
        using var loaded = ModelDirectory.Load(model);
        var synth = new Synthesizer(loaded, Qwen3TextTokenizer.FromModelDirectory(model));
        var config = Short.Apply(GenerationConfig.FromModelDirectory(model));
        Assert.Equal(synth.Synthesize(new SynthesisRequest { Text = "Sannu.", Language = "english" }, config, 4).Codes, CodesOf(lines[0]));
        var xvector = SpeakerEmbeddings.FromWav(loaded, wav);
        Assert.Equal(synth.Synthesize(new SynthesisRequest { Text = "Ina kwana?", SpeakerEmbedding = xvector }, config, 11).Codes, CodesOf(lines[1]));

        // A saved speaker embedding round-trips exactly and stands in for the clip.
        string embedding = Path.Combine(dir, "voice.safetensors");
        SpeakerEmbeddings.Save(embedding, xvector);
        Assert.Equal(xvector, SpeakerEmbeddings.Load(embedding));
    }

    [Fact]
    public void Wav_output_fails_clearly_while_the_decoder_is_missing()
    {
        Assert.False(Waveform.DecoderAvailable);
        var error = new StringWriter();
        var input = new SynthesisInput { Id = "0000", Text = "Sannu." };
        int rc = SynthesizeCommand.Run(new SynthesizeCommand.Settings("/nonexistent-model", [input], Out: "x.wav", null, null, false, Short, 0), TextWriter.Null, error);
        Assert.Equal(2, rc);
        Assert.Contains("the 12 Hz decoder is not available", error.ToString());
        Assert.Throws<NotSupportedException>(() => Waveform.WriteWaveform(new long[1, 16], "speech_tokenizer", "x.wav"));
    }

    [Fact]
    public void Bad_request_lines_name_the_file_line_and_field()
    {
        string dir = TestPaths.NewTempDir("badreq");
        string path = Path.Combine(dir, "req.jsonl");
        void Expect(string content, string message)
        {
            File.WriteAllText(path, content);
            var e = Assert.Throws<InvalidDataException>(() => SynthesisInputs.ReadRequests(path));
            Assert.Contains(message, e.Message);
        }
        Expect("{\"text\": \"a\"}\n{\"txt\": \"b\"}\n", $"{path}:2: txt: unknown field");
        Expect("{\"text\": \"a\"}\n{\"language\": \"english\"}\n", $"{path}:2: text: missing");
        Expect("{\"text\": \"a\", \"ref_codes\": [[1, 2], [3]]}\n", $"{path}:1: ref_codes[1]: has 1 codes");
        Expect("{\"text\": \"a\", \"seed\": -1}\n", $"{path}:1: seed:");
        Expect("{\"id\": \"x\", \"text\": \"a\"}\n{\"id\": \"x\", \"text\": \"b\"}\n", $"{path}:2: id: 'x' is used");
        Expect("{\"text\": \"a\", \"xvector_only\": \"yes\"}\n", $"{path}:1: xvector_only: must be true or false");
        File.WriteAllText(path, "{\"audio_codes\": [[1, 2]]}\n{\"audio_codes\": [[3, 4]]}\n");
        Assert.Contains("has 2", Assert.Throws<InvalidDataException>(() => SynthesisInputs.ReadCodesFile(path)).Message);
    }
}
