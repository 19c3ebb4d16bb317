using System.CommandLine;
using Qwen3Tts.Cli.Commands;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Audio;
using static Qwen3Tts.Tests.Codec.DecoderTestModels;

namespace Qwen3Tts.Tests.Codec;

/// <summary><c>qwen3tts codec decode</c> end to end on a tiny random speech tokenizer folder, parsed and invoked as
/// the CLI does; the WAVs are read back and compared with the decoder's own output.</summary>
public class DecoderCliTests : CleansTempDirs
{
    readonly string work;

    // In the constructor body, not a field initializer: those run before the base class notes which folders exist.
    public DecoderCliTests() => work = TestPaths.NewTempDir("codec-decode");

    static (int Exit, string Out, string Err) Invoke(params string[] args)
    {
        var root = new RootCommand("test") { CodecCommand.Create() };
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = root.Parse(["codec", "decode", .. args]).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (exit, output.ToString(), error.ToString());
    }

    static string Frames(long[,] codes) =>
        "[" + string.Join(",", Enumerable.Range(0, codes.GetLength(0)).Select(f =>
            "[" + string.Join(",", Enumerable.Range(0, codes.GetLength(1)).Select(k => codes[f, k])) + "]")) + "]";

    string Write(string name, params string[] lines)
    {
        string path = Path.Combine(work, name);
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        return path;
    }

    [Fact]
    public void Writes_one_wav_per_line_with_the_decoders_samples()
    {
        string model = Path.Combine(work, "model");
        SpeechTokenizerDecoderTests.WriteTinyFolder(Path.Combine(model, "speech_tokenizer"), seed: 21);
        var first = RandomCodes(3, 16, 64, seed: 22);
        var second = RandomCodes(5, 16, 64, seed: 23);
        string codes = Write("codes.jsonl",
            $$"""{"audio": "a.wav", "audio_codes": {{Frames(first)}}}""",
            "",
            Frames(second));
        string outDir = Path.Combine(work, "wavs");

        var (exit, stdout, stderr) = Invoke("--model", model, "--codes", codes, "--out-dir", outDir, "--float32");
        Assert.Equal("", stderr);
        Assert.Equal(0, exit);
        Assert.Equal(new[] { "00001.wav", "00003.wav" }, Directory.GetFiles(outDir).Select(f => Path.GetFileName(f)).Order().ToArray());
        Assert.Contains("3 frames, 5760 samples (0.24 s)", stdout);

        using var decoder = Build(Tiny(), seed: 21);
        foreach (var (file, clip) in new[] { ("00001.wav", first), ("00003.wav", second) })
        {
            var wav = WavReader.Read(Path.Combine(outDir, file));
            Assert.Equal(24000, wav.SampleRate);
            Assert.Equal(clip.GetLength(0) * 1920, wav.Samples.Length);
            Assert.Equal(decoder.Decode(clip), wav.Samples);
        }

        // 16-bit PCM by default: the same samples to within half a step.
        string pcmDir = Path.Combine(work, "pcm");
        Assert.Equal(0, Invoke("--model", Path.Combine(model, "speech_tokenizer"), "--codes", codes, "--out-dir", pcmDir).Exit);
        var pcm = WavReader.Read(Path.Combine(pcmDir, "00003.wav")).Samples;
        var exact = decoder.Decode(second);
        Assert.Equal(exact.Length, pcm.Length);
        Assert.All(exact.Zip(pcm), p => Assert.True(Math.Abs(p.First - p.Second) <= 0.5 / 32768 + 1e-7));
    }

    [Theory]
    [InlineData("[[1,2]]", "codes.jsonl:2: codes[0]: expected 16 codes, found 2 codes")]
    [InlineData("{\"audio_codes\": [[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],[0,0,0,64,0,0,0,0,0,0,0,0,0,0,0,0]]}", "codes.jsonl:2: audio_codes[1][3]: code 64 is outside [0, 64)")]
    [InlineData("{\"audio_codes\": [[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,-1]]}", "codes.jsonl:2: audio_codes[0][15]: code -1 is outside [0, 64)")]
    [InlineData("{\"audio_codes\": [[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,\"7\"]]}", "codes.jsonl:2: audio_codes[0][15]: expected an integer code, found \"7\"")]
    [InlineData("{\"text\": \"hi\"}", "codes.jsonl:2: has no \"audio_codes\" field")]
    [InlineData("{\"audio_codes\": []}", "codes.jsonl:2: audio_codes: has no frames")]
    [InlineData("[[0,0", "codes.jsonl:2: not valid JSON")]
    public void Bad_codes_name_the_line_and_position(string badLine, string expected)
    {
        string model = SpeechTokenizerDecoderTests.WriteTinyFolder(Path.Combine(work, "st"), seed: 24);
        string codes = Write("codes.jsonl", Frames(RandomCodes(2, 16, 64, seed: 25)), badLine);
        string outDir = Path.Combine(work, "out");
        var (exit, _, stderr) = Invoke("--model", model, "--codes", codes, "--out-dir", outDir);
        Assert.Equal(2, exit);
        Assert.StartsWith("error: " + Path.Combine(work, expected), stderr);
        Assert.False(Directory.Exists(outDir)); // checked before anything is decoded
    }

    [Fact]
    public void Decodes_with_the_speech_tokenizer_init_model_writes()
    {
        // init-model's tiny preset: the real codebook count and size (16 × 2048), random weights in the released layout.
        string model = Path.Combine(work, "tiny");
        ModelDirectory.CreateRandom(model, "tiny", seed: 28, TorchSharp.torch.ScalarType.Float32);
        string codes = Write("codes.jsonl", Frames(RandomCodes(4, 16, 2048, seed: 29)));
        var (exit, stdout, stderr) = Invoke("--model", model, "--codes", codes, "--out-dir", Path.Combine(work, "w"));
        Assert.Equal("", stderr);
        Assert.Equal(0, exit);
        var wav = WavReader.Read(Path.Combine(work, "w", "00001.wav"));
        Assert.Equal(4 * 1920, wav.Samples.Length);
        Assert.Contains("4 frames, 7680 samples (0.32 s)", stdout);
    }

    [Fact]
    public void A_folder_without_a_speech_tokenizer_is_refused()
    {
        string codes = Write("codes.jsonl", Frames(RandomCodes(1, 16, 64, seed: 26)));
        var (exit, _, stderr) = Invoke("--model", work, "--codes", codes, "--out-dir", Path.Combine(work, "o"));
        Assert.Equal(2, exit);
        Assert.Contains("neither a speech tokenizer folder", stderr);
    }

    [Fact]
    public void Chunk_options_are_checked()
    {
        string codes = Write("codes.jsonl", Frames(RandomCodes(1, 16, 64, seed: 27)));
        var (exit, _, stderr) = Invoke("--model", work, "--codes", codes, "--out-dir", work, "--chunk-size", "0");
        Assert.Equal(2, exit);
        Assert.Contains("--chunk-size must be positive", stderr);
    }
}
