using System.CommandLine;
using System.Text.Json.Nodes;
using Qwen3Tts.Cli.Commands;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Codec;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Codec;

/// <summary><c>qwen3tts codec encode</c>, parsed and invoked as the CLI does, on an init-model tiny model.</summary>
public sealed class CodecCommandTests : CleansTempDirs
{
    static (int Exit, string Out, string Err) Invoke(params string[] args)
    {
        var root = new RootCommand("test") { CodecCommand.Create() };
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = root.Parse(["codec", "encode", .. args]).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (exit, output.ToString(), error.ToString());
    }

    static float[] Tone(int samples, double step)
    {
        var x = new float[samples];
        for (int i = 0; i < samples; i++) x[i] = (float)(0.4 * Math.Sin(i * step) * Math.Sin(i * 0.0007));
        return x;
    }

    [Fact]
    public void Encodes_each_wav_to_one_json_line_and_resamples_other_rates()
    {
        string model = TestPaths.NewTempDir("codec-cli-model");
        ModelDirectory.CreateRandom(model, "tiny", 2, ScalarType.Float32);
        string work = TestPaths.NewTempDir("codec-cli");
        string a = Path.Combine(work, "a.wav"), b = Path.Combine(work, "b.wav");
        WavWriter.Write(a, Tone(30000, 0.05), 24000);      // 16-bit PCM at 24 kHz: 30000 samples → 16 frames
        WavWriter.WriteFloat32(b, Tone(16000, 0.03), 16000); // 1 s at 16 kHz → 24000 samples at 24 kHz → 13 frames

        var (exit, output, error) = Invoke("--model", model, a, b);
        Assert.Equal("", error);
        Assert.Equal(0, exit);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);

        using var tokenizer = SpeechTokenizer.Load(model);
        foreach (var (line, wav, frames) in new[] { (lines[0], a, 16), (lines[1], b, 13) })
        {
            var json = JsonNode.Parse(line)!.AsObject();
            Assert.Equal(new[] { "audio", "audio_codes" }, json.Select(kv => kv.Key));
            Assert.Equal(wav, json["audio"]!.GetValue<string>());
            var rows = json["audio_codes"]!.AsArray();
            Assert.Equal(frames, rows.Count);
            var expected = tokenizer.EncodeFile(wav);
            for (int t = 0; t < frames; t++)
            {
                var row = rows[t]!.AsArray().Select(v => v!.GetValue<long>()).ToArray();
                Assert.Equal(16, row.Length);
                Assert.Equal(Enumerable.Range(0, 16).Select(q => expected[t, q]), row);
            }
        }

        // --out writes the same lines to a file; a speech tokenizer folder works as --model too.
        string outFile = Path.Combine(work, "sub", "codes.jsonl");
        (exit, output, _) = Invoke("--model", Path.Combine(model, "speech_tokenizer"), "--out", outFile, a, b);
        Assert.Equal(0, exit);
        Assert.Contains("wrote 2 line(s)", output);
        Assert.Equal(string.Join("", lines.Select(l => l + "\n")), File.ReadAllText(outFile));
    }

    [Fact]
    public void Missing_files_and_folders_are_one_line_errors()
    {
        string work = TestPaths.NewTempDir("codec-cli-bad");
        string wav = Path.Combine(work, "a.wav");
        WavWriter.Write(wav, Tone(100, 0.1), 24000);

        var (exit, output, error) = Invoke("--model", Path.Combine(work, "no-model"), wav);
        Assert.Equal(CodecCommand.ExitBadInput, exit);
        Assert.Equal("", output);
        Assert.Contains("no-model: no such folder", error);

        (exit, _, error) = Invoke("--model", work, wav, Path.Combine(work, "missing.wav"));
        Assert.Equal(2, exit);
        Assert.Contains("WAV file '" + Path.Combine(work, "missing.wav") + "' does not exist", error);

        string notWav = Path.Combine(work, "x.wav");
        File.WriteAllText(notWav, "not a wav");
        string model = TestPaths.NewTempDir("codec-cli-model2");
        SpeechTokenizerLayout.WriteRandom(model, SpeechTokenizerConfig.ConfigJson("tiny"), "tiny", 0, "Qwen3-TTS-12Hz-1.7B-Base");
        (exit, _, error) = Invoke("--model", model, notWav);
        Assert.Equal(2, exit);
        Assert.Contains(notWav, error);
    }
}
