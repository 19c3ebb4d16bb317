using System.CommandLine;
using System.Text.Json.Nodes;
using Qwen3Tts.Cli.Commands;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Tests.Audio;
using Xunit.Abstractions;

namespace Qwen3Tts.Tests.Data;

/// <summary><c>qwen3tts preflight</c>: planted problems are each found on exactly their record, a clean set is GO, the
/// verdict follows the documented error share, limits come from the model's context, codes are range-checked, and
/// the level measurements match values derived by hand.</summary>
public class PreflightTests(ITestOutputHelper output) : CleansTempDirs
{
    readonly string dir = TestPaths.NewTempDir("preflight");

    /// <summary>A tone burst with 0.2 s of silence either side (like a trimmed utterance with its pauses).</summary>
    static float[] Utterance(double hz, int rate, double seconds = 1.5, double amplitude = 0.3)
    {
        int pad = (int)(0.2 * rate), n = (int)(seconds * rate);
        var x = new float[pad + n + pad];
        for (int i = 0; i < n; i++) x[pad + i] = (float)(amplitude * Math.Sin(2 * Math.PI * hz * i / rate));
        return x;
    }

    string Wav(string name, float[] samples, int rate = 24000)
    {
        string path = Path.Combine(dir, name);
        WavWriter.Write(path, samples, rate);
        return path;
    }

    string Jsonl(string name, params JsonObject[] lines)
    {
        string path = Path.Combine(dir, name);
        File.WriteAllLines(path, lines.Select(l => l.ToJsonString()));
        return path;
    }

    static JsonObject Line(string audio, string text, string? refAudio = "ref.wav", string? speaker = "spk1") => new()
    {
        ["audio"] = audio, ["text"] = text, ["ref_audio"] = refAudio, ["speaker_id"] = speaker, ["language"] = "hausa",
    };

    JsonObject[] CleanLines(int count)
    {
        Wav("ref.wav", Utterance(220, 24000, 3.0));
        return Enumerable.Range(0, count).Select(i =>
        {
            Wav($"clean{i}.wav", Utterance(300 + 20 * i, i % 2 == 0 ? 24000 : 44100), i % 2 == 0 ? 24000 : 44100);
            return Line($"clean{i}.wav", $"Clean sentence number {i}.");
        }).ToArray();
    }

    static (int Exit, string Out) Invoke(params string[] args)
    {
        var root = new RootCommand("test") { PreflightCommand.Create() };
        var output = new StringWriter();
        int exit = root.Parse(["preflight", .. args]).Invoke(new InvocationConfiguration { Output = output, Error = output });
        return (exit, output.ToString());
    }

    [Fact]
    public void A_clean_set_is_go_and_exits_zero()
    {
        string data = Jsonl("clean.jsonl", CleanLines(6));
        var report = Preflight.Run(data);

        Assert.Equal(PreflightVerdict.Go, report.Verdict);
        Assert.All(report.Records, r => Assert.Empty(r.Issues));
        Assert.Equal(6 * 1.9 / 60, report.UsableMinutes, 6);
        Assert.Equal([24000, 44100, 24000, 44100, 24000, 44100], report.Records.Select(r => r.SampleRate));
        Assert.Single(report.References);
        Assert.Equal(6, report.References[0].Records);

        var (exit, text) = Invoke(data);
        Assert.Equal(0, exit);
        Assert.Contains("verdict      GO", text);
        Assert.Contains("24000 Hz: 3, 44100 Hz: 3", text);
    }

    [Fact]
    public void Planted_problems_are_each_flagged_on_their_record_and_make_it_no_go()
    {
        var lines = CleanLines(6).ToList();
        var clipped = Utterance(150, 24000, amplitude: 2.0).Select(v => Math.Clamp(v, -1f, 1f)).ToArray(); // flat tops
        Wav("clipped.wav", clipped);
        Wav("silent.wav", new float[24000 * 2]);
        Wav("narrow.wav", Utterance(440, 8000), 8000);
        lines.Add(Line("clipped.wav", "A clipped recording."));
        lines.Add(Line("silent.wav", "A silent recording."));
        lines.Add(Line("narrow.wav", "An eight kilohertz recording."));
        lines.Add(Line("clean1.wav", "  clean SENTENCE number   0. "));   // repeats line 1's text
        lines.Add(Line("clean2.wav", ""));
        lines.Add(Line("absent.wav", "A clip that is not there."));
        string data = Jsonl("planted.jsonl", [.. lines]);

        var report = Preflight.Run(data);
        var codes = report.Records.Select(r => string.Join(",", r.Issues.Select(i => i.Code))).ToList();
        Assert.Equal(["", "", "", "", "", "", "clipping", "silent", "low_sample_rate", "duplicate_text", "empty_text", "missing_audio"], codes);
        Assert.Equal(Severity.Error, report.Records[7].Issues[0].Severity);
        Assert.Equal(Severity.Warning, report.Records[8].Issues[0].Severity);
        Assert.Contains("planted.jsonl:1", report.Records[9].Issues[0].Message); // names the earlier record
        Assert.Contains(Path.Combine(dir, "absent.wav"), report.Records[11].Issues[0].Message);
        Assert.Equal(8000, report.Records[8].SampleRate);
        Assert.Equal(0, report.Records[11].SampleRate);
        Assert.True(report.Records[6].Levels!.ClippedShare > 0.5, $"clipped share {report.Records[6].Levels!.ClippedShare}");

        // 3 errors (silent, empty text, missing file) of 12 records is 25%, above the 5% limit.
        Assert.Equal(PreflightVerdict.NoGo, report.Verdict);
        Assert.Equal(3, report.WithErrors);
        Assert.Equal(3, report.WithWarnings);
        Assert.Equal(9 * 1.9 / 60, report.UsableMinutes, 6);

        var (exit, json) = Invoke(data, "--json");
        Assert.Equal(2, exit);
        var root = JsonNode.Parse(json)!;
        Assert.Equal("NO-GO", (string?)root["verdict"]);
        Assert.Equal("silent", (string?)root["records"]![7]!["issues"]![0]!["code"]);
        Assert.Equal("error", (string?)root["records"]![7]!["issues"]![0]!["severity"]);
        Assert.Equal(1, (int)root["totals"]!["findings"]!["duplicate_text"]!);
        Assert.Equal(8000, (int)root["records"]![8]!["sample_rate"]!);
    }

    [Theory]
    [InlineData(0, 0, PreflightVerdict.Go)]
    [InlineData(0, 1, PreflightVerdict.GoWithCaution)] // one warning
    [InlineData(1, 0, PreflightVerdict.GoWithCaution)] // 1 of 21 records with an error: 4.8% <= 5%
    [InlineData(2, 0, PreflightVerdict.NoGo)]          // 2 of 22: 9.1% > 5%
    public void The_verdict_follows_the_error_share(int errors, int warnings, PreflightVerdict expected)
    {
        var lines = CleanLines(20).ToList();
        for (int i = 0; i < errors; i++) lines.Add(Line($"missing{i}.wav", "Missing."));
        for (int i = 0; i < warnings; i++)
        {
            Wav($"short{i}.wav", new float[2400].Select((_, k) => (float)(0.3 * Math.Sin(k * 0.1))).ToArray()); // 0.1 s
            lines.Add(Line($"short{i}.wav", $"Short {i}."));
        }
        var report = Preflight.Run(Jsonl("verdict.jsonl", [.. lines]));
        Assert.Equal(expected, report.Verdict);
        Assert.Equal(expected == PreflightVerdict.NoGo ? 2 : 0, report.ExitCode);
    }

    [Fact]
    public void Records_without_a_reference_need_ref_audio_and_a_folder_is_go_with_it()
    {
        string corpus = Path.Combine(dir, "corpus");
        Directory.CreateDirectory(corpus);
        for (int i = 0; i < 3; i++)
        {
            WavWriter.Write(Path.Combine(corpus, $"u{i}.wav"), Utterance(300 + 50 * i, 22050), 22050);
            File.WriteAllText(Path.Combine(corpus, $"u{i}.txt"), $"Sentence {i}.");
        }
        var without = Preflight.Run(corpus);
        Assert.Equal(PreflightVerdict.NoGo, without.Verdict);
        Assert.All(without.Records, r => Assert.Equal("no_ref_audio", Assert.Single(r.Issues).Code));

        string reference = Wav("voice.wav", Utterance(200, 24000, 4.0));
        var with = Preflight.Run(corpus, refAudio: reference);
        Assert.Equal(PreflightVerdict.Go, with.Verdict);
        Assert.Equal(reference, Assert.Single(with.References).Clip);

        // A silent reference clip is an error on every record that uses it.
        string silent = Wav("quiet.wav", new float[48000]);
        var bad = Preflight.Run(corpus, refAudio: silent);
        Assert.All(bad.Records, r => Assert.Equal("ref_silent", Assert.Single(r.Issues).Code));
        Assert.Equal(PreflightVerdict.NoGo, bad.Verdict);
    }

    [Fact]
    public void The_duration_limit_comes_from_the_talker_context_when_a_model_is_given()
    {
        // A config whose talker holds 50 positions; its folder has no tokenizer files, so the released tokenizer counts the text.
        var json = Presets.ConfigJson("tiny");
        json["talker_config"]!["max_position_embeddings"] = 50;
        string model = Path.Combine(dir, "model");
        Directory.CreateDirectory(model);
        File.WriteAllText(Path.Combine(model, "config.json"), json.ToJsonString());

        Wav("ref.wav", Utterance(220, 24000, 3.0));
        Wav("fits.wav", Utterance(300, 24000, 2.4));   // 2.8 s
        Wav("long.wav", Utterance(300, 24000, 2.9));   // 3.3 s
        string[] texts = ["abc", "xyz", "a much longer text than the others, said slowly"];
        string data = Jsonl("limits.jsonl", Line("fits.wav", texts[0]), Line("long.wav", texts[1]), Line("fits.wav", texts[2]));

        var t = Preflight.ForModel(new PreflightThresholds(), model);
        Assert.Equal(50, t.MaxPositions);
        var report = Preflight.Run(data, t);
        // The trainer's rule, computed independently: chat ids - 5 + frames + 8 rows must fit 50 positions.
        var tokenizer = Qwen3Tts.Model.Text.Qwen3TextTokenizer.FromEmbeddedReference();
        var expected = report.Records.Select((r, i) =>
            Qwen3Tts.Model.Sft.SftCollate.SequenceLength(tokenizer.EncodeChat(texts[i]).Count, (int)Math.Ceiling(r.Seconds * 12.5)) > 50).ToArray();
        Assert.Equal([false, true, true], expected); // the short clip with short text fits; the long clip, and the short clip with long text, do not
        for (int i = 0; i < 3; i++)
            Assert.Equal(expected[i], report.Records[i].Issues.Any(x => x.Code == "too_long"));
        Assert.Contains("above the talker's max_position_embeddings 50", Assert.Single(report.Records[1].Issues).Message);

        // Without a model the default is 60 s; --max_seconds replaces it.
        Assert.Empty(Preflight.Run(data).Records[1].Issues);
        var (exit, text) = Invoke(data, "--max_seconds", "3.1");
        Assert.Equal(2, exit); // the 3.3 s clip is 1 error of 3
        Assert.Contains("3.1 s (--max_seconds)", text);
    }

    [Fact]
    public void Audio_codes_are_checked_for_range_width_and_length()
    {
        Wav("ref.wav", Utterance(220, 24000, 3.0));
        Wav("a.wav", Utterance(300, 24000)); // 1.9 s: about 24 frames
        JsonObject WithCodes(string text, JsonArray codes) { var l = Line("a.wav", text); l["audio_codes"] = codes; return l; }
        JsonArray Frames(int n, Func<int, int, int> code, int width = 16) =>
            new(Enumerable.Range(0, n).Select(f => (JsonNode)new JsonArray(Enumerable.Range(0, width).Select(k => (JsonNode)code(f, k)).ToArray())).ToArray());
        string data = Jsonl("codes.jsonl",
            WithCodes("good", Frames(24, (f, k) => (f * 16 + k) % 2048)),
            WithCodes("out of range", Frames(24, (f, k) => f == 3 && k == 5 ? 2048 : k == 0 && f == 7 ? -1 : 0)),
            WithCodes("narrow", Frames(24, (f, k) => 0, width: 15)),
            WithCodes("short", Frames(5, (f, k) => 0)));
        var r = Preflight.Run(data).Records;

        Assert.Empty(r[0].Issues);
        var range = Assert.Single(r[1].Issues);
        Assert.Equal("codes_out_of_range", range.Code);
        Assert.Contains("2 codes lie outside their codebook's range", range.Message);
        Assert.Contains("audio_codes[3][5] is 2048, outside codebook 5's range [0, 2048)", range.Message);
        Assert.Equal("codes_malformed", Assert.Single(r[2].Issues).Code);
        Assert.Equal("codes_length_mismatch", Assert.Single(r[3].Issues).Code);
    }

    [Fact]
    public void Hf_parquet_with_flac_and_mp3_bytes_is_checked_like_files()
    {
        if (!AudioTools.Have(output, "sox", "flac", "lame")) return;
        Wav("ref.wav", Utterance(220, 24000, 3.0));
        string wav = Path.Combine(dir, "src.wav"), flac = Path.Combine(dir, "u.flac"), mp3 = Path.Combine(dir, "u.mp3");
        AudioTools.Run("sox", ["-n", "-r", "44100", "-c", "2", "-b", "16", wav, "synth", "1.5", "sine", "300", "vol", "0.3", "pad", "0.2", "0.2"]);
        AudioTools.Run("flac", ["-s", "-f", wav, "-o", flac]);
        AudioTools.Run("lame", ["--quiet", "-b", "128", wav, mp3]);
        string parquet = Path.Combine(dir, "train.parquet");
        ArrowParquet.WriteRaw(parquet,
        [
            (new AudioValue(File.ReadAllBytes(flac), "u.flac", true), "A FLAC row.", "spk1", "hausa", null, null),
            (new AudioValue(File.ReadAllBytes(mp3), "u.mp3", true), "An MP3 row.", "spk2", "hausa", null, null),
            (new AudioValue("OggS...."u8.ToArray(), "u.ogg", true), "An Ogg row.", "spk2", "hausa", null, null),
        ]);

        var report = Preflight.Run(parquet, refAudio: Path.Combine(dir, "ref.wav"));
        Assert.Equal(["flac", "mp3", null], report.Records.Select(r => r.Format));
        Assert.All(report.Records.Take(2), r => { Assert.Equal(44100, r.SampleRate); Assert.Equal(2, r.Channels); Assert.Empty(r.Issues); });
        var ogg = Assert.Single(report.Records[2].Issues);
        Assert.Equal("unreadable_audio", ogg.Code);
        Assert.Contains("train.parquet: row 2: u.ogg: not a WAV, FLAC or MP3 file: an Ogg file", ogg.Message);
        Assert.Equal(2, report.Records.Select(r => r.SpeakerId).Distinct().Count());
    }

    [Fact]
    public void Levels_match_values_derived_by_hand()
    {
        // 1 s at 24 kHz: the first half a 0.5-amplitude 600 Hz sine (frame RMS 0.5 / sqrt 2 = -9.03 dBFS, whole periods
        // per 20 ms frame), the second half digital silence.
        var x = new float[24000];
        for (int i = 0; i < 12000; i++) x[i] = (float)(0.5 * Math.Sin(2 * Math.PI * 600 * i / 24000));
        var levels = AudioLevels.Measure(new AudioChannels([x], 24000, AudioFormat.Wav, 16, "x"));
        Assert.Equal(0.5, levels.SilenceShare, 6);                        // 25 of 50 frames
        Assert.Equal(AudioLevels.FloorDb, levels.NoiseFloorDb);           // the 10th percentile is a silent frame
        Assert.Equal(20 * Math.Log10(0.5 / Math.Sqrt(2)), levels.SpeechDb, 3);
        Assert.Equal(20 * Math.Log10(0.5), levels.PeakDb, 3);
        Assert.Equal(0, levels.ClippedShare);

        // Stereo: the left channel has 2 runs of 4 samples at full scale, one run of 2 (too short to count) and a lone
        // peak; the right is quiet. 8 of 2 x 1000 samples lie in counted runs.
        var left = new float[1000];
        var right = new float[1000];
        foreach (int start in new[] { 100, 500 }) for (int i = 0; i < 4; i++) left[start + i] = i % 2 == 0 ? 1f : -1f;
        left[800] = left[801] = 1f;
        left[900] = -1f;
        var clipped = AudioLevels.Measure(new AudioChannels([left, right], 1000, AudioFormat.Wav, 16, "c"));
        Assert.Equal(2, clipped.ClippedRuns);
        Assert.Equal(8 / 2000.0, clipped.ClippedShare, 12);
    }
}
