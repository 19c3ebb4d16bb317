using System.Text.Json.Nodes;
using Qwen3Tts.Cli.Commands;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Codec;
using Qwen3Tts.Model.Generation;
using Qwen3Tts.Model.Text;
using Qwen3Tts.Rank.Training;
using Qwen3Tts.Tests.Training;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Generation;

/// <summary>`qwen3tts synthesize` end to end: a voice fine-tuned by this project's trainer and exported as a
/// custom_voice model speaks with its --speaker name; WAV output through the codec; ICL from a clip; the batch form; bad requests.</summary>
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

        // A training checkpoint has no codec of its own: synthesis finds the base model's through its trainer state.
        string last = Path.Combine(output, "last");
        Assert.False(Directory.Exists(Path.Combine(last, "speech_tokenizer")));
        Assert.Equal(Path.Combine(Path.GetFullPath(model), "speech_tokenizer"), SynthesizeCommand.CodecFolder(last));
        string lastWav = Path.Combine(TestPaths.NewTempDir("last-wav"), "last.wav");
        var clone = new SynthesisInput { Id = "0000", Text = "Sannu.", RefAudio = Path.Combine(TrainingFixture.DemoDir, "ref_voice.wav"), XVectorOnly = true };
        Assert.Equal(0, SynthesizeCommand.Run(new SynthesizeCommand.Settings(last, [clone], Out: lastWav, null, null, false, Short, 1), TextWriter.Null, TextWriter.Null));
        Assert.True(new FileInfo(lastWav).Length > 44);

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
    public void Wav_output_is_the_decoded_codes_and_a_missing_codec_fails_before_generating()
    {
        string model = TrainingFixture.TinyModel(22), dir = TestPaths.NewTempDir("wav");
        string wav = Path.Combine(dir, "out.wav"), codesPath = Path.Combine(dir, "codes.jsonl");
        var input = new SynthesisInput { Id = "0000", Text = "Sannu.", Language = "english" };
        int rc = SynthesizeCommand.Run(new SynthesizeCommand.Settings(model, [input], Out: wav, null, CodesOut: codesPath, false, Short, 5), TextWriter.Null, TextWriter.Null);
        Assert.Equal(0, rc);
        var codes = CodesOf(Assert.Single(ReadLines(codesPath)));

        // Independently: the model's codec decoder on those codes, written as 16-bit PCM.
        var decoder = SpeechTokenizerDecoderFiles.Load(model).Decoder;
        float[] expected = decoder.Decode(codes);
        var written = WavReader.Read(wav);
        Assert.Equal(24000, written.SampleRate);
        Assert.Equal(codes.GetLength(0) * 1920, written.Samples.Length);
        for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - written.Samples[i]) <= 1.0 / 32768 + 1e-7, $"sample {i}");

        // Without speech_tokenizer/ (a training checkpoint) asking for audio stops before any generation, naming the fix.
        string bare = TestPaths.NewTempDir("bare");
        foreach (var f in Directory.GetFiles(model)) File.Copy(f, Path.Combine(bare, Path.GetFileName(f)));
        var e = Assert.Throws<ArgumentException>(() => SynthesizeCommand.Run(
            new SynthesizeCommand.Settings(bare, [input], Out: Path.Combine(dir, "x.wav"), null, null, false, Short, 0), TextWriter.Null, TextWriter.Null));
        Assert.Contains("--speech_tokenizer", e.Message);
        Assert.False(File.Exists(Path.Combine(dir, "x.wav")));
        // ... and --speech_tokenizer points it at the base model's codec.
        rc = SynthesizeCommand.Run(new SynthesizeCommand.Settings(bare, [input], Out: Path.Combine(dir, "y.wav"), null, null, false, Short, 5)
            { SpeechTokenizerDir = Path.Combine(model, "speech_tokenizer") }, TextWriter.Null, TextWriter.Null);
        Assert.Equal(0, rc);
        Assert.Equal(File.ReadAllBytes(wav), File.ReadAllBytes(Path.Combine(dir, "y.wav")));
    }

    [Fact]
    public void Icl_cloning_encodes_the_reference_clip_with_the_models_codec_and_cuts_it_from_the_audio()
    {
        string model = TrainingFixture.TinyModel(23), dir = TestPaths.NewTempDir("icl");
        string clip = Path.Combine(TrainingFixture.DemoDir, "ref_voice.wav");
        string codesPath = Path.Combine(dir, "codes.jsonl"), wav = Path.Combine(dir, "icl.wav");
        var input = new SynthesisInput { Id = "0000", Text = "Ina kwana?", RefAudio = clip, RefText = "Sannu da zuwa." };
        Assert.Equal(0, SynthesizeCommand.Run(new SynthesizeCommand.Settings(model, [input], Out: wav, null, CodesOut: codesPath, false, Short, 9), TextWriter.Null, TextWriter.Null));
        var codes = CodesOf(Assert.Single(ReadLines(codesPath)));

        // The same request in-process with the clip's codes from the encoder gives the same codes.
        using var loaded = ModelDirectory.Load(model);
        var refCodes = SpeechTokenizer.Load(model).EncodeFile(clip);
        var request = new SynthesisRequest { Text = "Ina kwana?", SpeakerEmbedding = SpeakerEmbeddings.FromWav(loaded, clip), RefText = "Sannu da zuwa.", RefCodes = refCodes };
        var synth = new Synthesizer(loaded, Qwen3TextTokenizer.FromModelDirectory(model));
        Assert.Equal(synth.Synthesize(request, Short.Apply(GenerationConfig.FromModelDirectory(model)), 9).Codes, codes);

        // The audio is reference ++ generated decoded together, with the reference's share cut: exactly the generated frames' samples.
        var decoder = SpeechTokenizerDecoderFiles.Load(model).Decoder;
        int refFrames = refCodes.GetLength(0), frames = codes.GetLength(0);
        var joined = new long[refFrames + frames, 16];
        for (int f = 0; f < refFrames + frames; f++)
            for (int g = 0; g < 16; g++) joined[f, g] = f < refFrames ? refCodes[f, g] : codes[f - refFrames, g];
        var full = decoder.Decode(joined);
        var cut = Waveform.Decode(decoder, codes, refCodes);
        Assert.Equal(frames * 1920, cut.Length);
        Assert.Equal(full[(refFrames * 1920)..], cut);
        Assert.Equal(frames * 1920, WavReader.Read(wav).Samples.Length);
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
