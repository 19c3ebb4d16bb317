using System.Text;
using System.Text.Json.Nodes;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Text;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Data;

/// <summary>The training JSONL: every field read, paths resolved, each malformed kind named file:line:field,
/// lenient reads skipping and reporting, and records turned into SftSamples.</summary>
public class JsonlTrainingDataTests
{
    readonly string dir = TestPaths.NewTempDir("jsonl");

    /// <summary>codes[f][g] = (7 f + g) mod 2048, as JSON.</summary>
    static JsonArray CodesJson(int frames, int width = 16)
    {
        var rows = new JsonArray();
        for (int f = 0; f < frames; f++)
        {
            var row = new JsonArray();
            for (int g = 0; g < width; g++) row.Add((7 * f + g) % 2048);
            rows.Add(row);
        }
        return rows;
    }

    JsonObject ValidLine(string refAudio = "ref.wav") => new()
    {
        ["audio"] = "wavs/utt1.wav",
        ["text"] = "Hello there.",
        ["audio_codes"] = CodesJson(3),
        ["ref_audio"] = refAudio,
    };

    string Write(string name, params string[] lines)
    {
        string path = Path.Combine(dir, name);
        File.WriteAllLines(path, lines);
        return path;
    }

    string Touch(string relative)
    {
        string path = Path.Combine(dir, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, new byte[] { 0 });
        return path;
    }

    [Fact]
    public void A_valid_file_round_trips_every_field()
    {
        string refPath = Touch("refs/speaker.wav");
        var full = ValidLine("refs/speaker.wav");
        full["ref_text"] = "Reference words.";
        full["language"] = "English";
        full["speaker_id"] = "spk7";
        full["gender"] = "female";
        full["age_range"] = "30-40";
        full["text_ids"] = new JsonArray(151644, 77091, 198, 9707, 13, 151645, 198, 151644, 77091, 198);
        full["something_else"] = 3; // unknown keys are ignored
        var minimal = ValidLine("refs/speaker.wav");
        minimal["audio_codes"] = CodesJson(1);
        string path = Write("train.jsonl", full.ToJsonString(), "", "   ", minimal.ToJsonString());

        var records = JsonlTrainingData.Read(path);

        Assert.Equal(2, records.Count);
        var r = records[0];
        Assert.Equal(path, r.Source);
        Assert.Equal(1, r.Line);
        Assert.Equal("wavs/utt1.wav", r.Audio);
        Assert.Equal("Hello there.", r.Text);
        Assert.Equal(Path.GetFullPath(refPath), r.RefAudio);
        Assert.Equal("Reference words.", r.RefText);
        Assert.Equal("English", r.Language);
        Assert.Equal("spk7", r.SpeakerId);
        Assert.Equal("female", r.Gender);
        Assert.Equal("30-40", r.AgeRange);
        Assert.Equal(new[] { 151644, 77091, 198, 9707, 13, 151645, 198, 151644, 77091, 198 }, r.TextIds);
        Assert.Equal(3, r.AudioCodes.Frames);
        Assert.Equal(16, r.AudioCodes.Codebooks);
        var codes = r.AudioCodes.ToArray();
        for (int f = 0; f < 3; f++)
            for (int g = 0; g < 16; g++)
                Assert.Equal(7 * f + g, codes[f, g]);

        var m = records[1];
        Assert.Equal(4, m.Line); // blank lines count toward line numbers but yield no record
        Assert.Equal(1, m.AudioCodes.Frames);
        Assert.Null(m.RefText);
        Assert.Null(m.Language);
        Assert.Null(m.SpeakerId);
        Assert.Null(m.Gender);
        Assert.Null(m.AgeRange);
        Assert.Null(m.TextIds);
    }

    [Fact]
    public void Relative_ref_audio_resolves_against_the_files_folder_not_the_working_directory()
    {
        string sub = Path.Combine(dir, "data");
        Directory.CreateDirectory(sub);
        string refPath = Touch("data/clips/a.wav");
        string absolute = Touch("elsewhere/b.wav");
        string path = Path.Combine(sub, "train.jsonl");
        File.WriteAllLines(path, new[] { ValidLine("clips/a.wav").ToJsonString(), ValidLine(absolute).ToJsonString() });

        var records = JsonlTrainingData.Read(path);

        Assert.Equal(Path.GetFullPath(refPath), records[0].RefAudio);
        Assert.Equal(absolute, records[1].RefAudio);
        Assert.NotEqual(sub, Directory.GetCurrentDirectory());
    }

    public static TheoryData<string, string, string> Malformed()
    {
        JsonObject With(Action<JsonObject> edit)
        {
            var o = new JsonObject
            {
                ["audio"] = "a.wav",
                ["text"] = "Hi.",
                ["audio_codes"] = CodesJson(5),
                ["ref_audio"] = "ref.wav",
            };
            edit(o);
            return o;
        }
        string Edit(Action<JsonObject> edit) => With(edit).ToJsonString();
        return new TheoryData<string, string, string>
        {
            // line text, expected field, expected words in the reason
            { "{\"audio\": \"a.wav\", ", "json", "not valid JSON" },
            { "[1, 2]", "json", "expected a JSON object" },
            { Edit(o => o.Remove("audio")), "audio", "missing required field" },
            { Edit(o => o["text"] = 5), "text", "expected a string, found a number" },
            { Edit(o => o["text"] = ""), "text", "is empty" },
            { Edit(o => o.Remove("audio_codes")), "audio_codes", "missing required field" },
            { Edit(o => o["audio_codes"] = new JsonArray()), "audio_codes", "is empty" },
            { Edit(o => o["audio_codes"] = "1 2 3"), "audio_codes", "expected an array of frames" },
            { Edit(o => o["audio_codes"]![3]!.AsArray().Add(1)), "audio_codes[3][16]", "expected 16 codebooks, found 17" },
            { Edit(o => o["audio_codes"]![2]!.AsArray().RemoveAt(0)), "audio_codes[2]", "expected 16 codebooks, found 15" },
            { Edit(o => o["audio_codes"]![1] = 4), "audio_codes[1]", "expected an array of 16 codes" },
            { Edit(o => o["audio_codes"]![4]![9] = 2048), "audio_codes[4][9]", "is 2048, outside codebook 9's range [0, 2048)" },
            { Edit(o => o["audio_codes"]![0]![0] = -1), "audio_codes[0][0]", "is -1" },
            { Edit(o => o["audio_codes"]![0]![2] = 1.5), "audio_codes[0][2]", "expected an integer code, found 1.5" },
            { Edit(o => o["audio_codes"]![0]![2] = "7"), "audio_codes[0][2]", "found a string" },
            { Edit(o => o.Remove("ref_audio")), "ref_audio", "missing required field" },
            { Edit(o => o["ref_audio"] = "missing.wav"), "ref_audio", "does not exist" },
            { Edit(o => o["language"] = true), "language", "expected a string, found a boolean" },
            { Edit(o => o["speaker_id"] = 12), "speaker_id", "expected a string" },
            { Edit(o => o["text_ids"] = "1 2"), "text_ids", "expected an array of token ids" },
            { Edit(o => o["text_ids"] = new JsonArray(1, 2, -3, 4, 5, 6, 7, 8, 9)), "text_ids[2]", "non-negative integer" },
            { Edit(o => o["text_ids"] = new JsonArray(1, 2, 3, 4, 5, 6, 7, 8)), "text_ids", "has 8 ids" },
        };
    }

    [Theory]
    [MemberData(nameof(Malformed))]
    public void Each_malformed_line_names_file_line_and_field(string bad, string field, string reason)
    {
        Touch("ref.wav");
        string path = Write("train.jsonl", ValidLine().ToJsonString(), "", bad, ValidLine().ToJsonString());

        var e = Assert.Throws<DataException>(() => JsonlTrainingData.Read(path));

        Assert.StartsWith($"{path}:3: {field}: ", e.Message);
        Assert.Contains(reason, e.Message);
        Assert.Equal(new BadRecord(path, 3, field, e.Bad.Reason), e.Bad);
    }

    [Fact]
    public void SkipBad_skips_the_bad_lines_lists_them_and_writes_a_report()
    {
        Touch("ref.wav");
        var tooWide = ValidLine();
        tooWide["audio_codes"]![0]!.AsArray().Add(5);
        string path = Write("train.jsonl",
            ValidLine().ToJsonString(),
            "not json",
            tooWide.ToJsonString(),
            ValidLine().ToJsonString(),
            ValidLine("gone.wav").ToJsonString());

        var records = JsonlTrainingData.Read(path, skipBad: true, out var skipped);

        Assert.Equal(new[] { 1, 4 }, records.Select(r => r.Line));
        Assert.Equal(new[] { (2, "json"), (3, "audio_codes[0][16]"), (5, "ref_audio") }, skipped.Select(s => (s.Line, s.Field)));
        Assert.All(skipped, s => Assert.Equal(path, s.Source));

        string report = Path.Combine(dir, "skipped.jsonl");
        JsonlTrainingData.WriteSkipReport(report, skipped);
        var lines = File.ReadAllLines(report).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal(3, lines.Count);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(path, (string)lines[i]["source"]!);
            Assert.Equal(skipped[i].Line, (int)lines[i]["line"]!);
            Assert.Equal(skipped[i].Field, (string)lines[i]["field"]!);
            Assert.Equal(skipped[i].Reason, (string)lines[i]["reason"]!);
        }
        Assert.Contains("expected 16 codebooks, found 17", (string)lines[1]["reason"]!);

        // Without skipBad the first bad line stops the read.
        var e = Assert.Throws<DataException>(() => JsonlTrainingData.Read(path, skipBad: false, out _));
        Assert.Equal(2, e.Bad.Line);
    }

    // --- SftSampleBuilder -------------------------------------------------------------------------------------

    /// <summary>A mono 16-bit PCM WAV, written by hand.</summary>
    static void WritePcm16(string path, float[] samples, int sampleRate)
    {
        using var w = new BinaryWriter(File.Create(path));
        int data = samples.Length * 2;
        w.Write(Encoding.ASCII.GetBytes("RIFF")); w.Write(36 + data); w.Write(Encoding.ASCII.GetBytes("WAVE"));
        w.Write(Encoding.ASCII.GetBytes("fmt ")); w.Write(16); w.Write((short)1); w.Write((short)1);
        w.Write(sampleRate); w.Write(sampleRate * 2); w.Write((short)2); w.Write((short)16);
        w.Write(Encoding.ASCII.GetBytes("data")); w.Write(data);
        foreach (float s in samples) w.Write((short)Math.Round(Math.Clamp(s, -1f, 1f) * 32767));
    }

    /// <summary>Reads back what <see cref="WritePcm16"/> wrote; only 24 kHz mono PCM16 with a 44-byte header.</summary>
    static float[] ReadPcm16Mono24k(string path)
    {
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 44 || Encoding.ASCII.GetString(bytes, 0, 4) != "RIFF") throw new InvalidDataException($"{path}: not a RIFF file");
        if (BitConverter.ToInt32(bytes, 24) != 24000) throw new InvalidDataException($"{path}: not 24 kHz");
        int count = BitConverter.ToInt32(bytes, 40) / 2;
        var samples = new float[count];
        for (int i = 0; i < count; i++) samples[i] = BitConverter.ToInt16(bytes, 44 + 2 * i) / 32767f;
        return samples;
    }

    static float[] Sine(int n, double hz) => Enumerable.Range(0, n).Select(i => (float)(0.5 * Math.Sin(2 * Math.PI * hz * i / 24000))).ToArray();

    [Fact]
    public void Builder_tokenizes_the_chat_text_and_computes_the_ref_mel()
    {
        var wav = Sine(12000, 220);
        WritePcm16(Path.Combine(dir, "ref.wav"), wav, 24000);
        string path = Write("train.jsonl", ValidLine().ToJsonString());
        var record = JsonlTrainingData.Read(path).Single();
        var tokenizer = Qwen3TextTokenizer.FromEmbeddedReference();

        var sample = new SftSampleBuilder(tokenizer, ReadPcm16Mono24k).Build(record);
        using var mel = sample.RefMel;

        Assert.Equal(tokenizer.EncodeChat("Hello there."), sample.TextIds);
        Assert.Equal(record.AudioCodes.ToArray(), sample.AudioCodes);
        long frames = MelSettings.Default.FrameCount(12000);
        Assert.Equal(new long[] { frames, 128 }, mel.shape);
        using var expected = new MelSpectrogram().Compute(tensor(ReadPcm16Mono24k(Path.Combine(dir, "ref.wav"))).unsqueeze(0))[0].T;
        Assert.True(mel.allclose(expected));
        // The tone is at 220 Hz: the loudest band of a middle frame sits low, well under 1 kHz (band ~15).
        long loudest = mel[frames / 2].argmax().item<long>();
        Assert.InRange(loudest, 1, 14);
    }

    [Fact]
    public void Builder_uses_text_ids_instead_of_tokenizing()
    {
        Touch("ref.wav");
        var line = ValidLine();
        int[] ids = { 151644, 77091, 198, 42, 43, 44, 151645, 198, 151644, 77091, 198 };
        line["text_ids"] = new JsonArray(ids.Select(i => (JsonNode)i).ToArray());
        var record = JsonlTrainingData.Read(Write("train.jsonl", line.ToJsonString())).Single();
        var tokenizer = Qwen3TextTokenizer.FromEmbeddedReference();
        Assert.NotEqual(ids, tokenizer.EncodeChat(record.Text)); // so the check below can tell the two apart

        var sample = new SftSampleBuilder(tokenizer, _ => Sine(4800, 440)).Build(record);
        using var mel = sample.RefMel;

        Assert.Equal(ids, sample.TextIds);
    }

    [Fact]
    public void Builder_names_the_record_when_the_ref_clip_is_unreadable_or_too_short()
    {
        Touch("ref.wav");
        string path = Write("train.jsonl", ValidLine().ToJsonString());
        var record = JsonlTrainingData.Read(path).Single();
        var tokenizer = Qwen3TextTokenizer.FromEmbeddedReference();

        var e = Assert.Throws<DataException>(() => new SftSampleBuilder(tokenizer, ReadPcm16Mono24k).Build(record));
        Assert.StartsWith($"{path}:1: ref_audio: cannot read", e.Message);

        e = Assert.Throws<DataException>(() => new SftSampleBuilder(tokenizer, _ => new float[100]).Build(record));
        Assert.StartsWith($"{path}:1: ref_audio: ", e.Message);
        Assert.Contains("100 samples", e.Message);
    }
}

/// <summary>The JSONL reader decodes strictly: bytes that are not UTF-8 are refused naming line and byte offset (they
/// used to be decoded to U+FFFD and trained on), and a line past the size bound is refused without being held whole.</summary>
public class JsonlStrictLinesTests : CleansTempDirs
{
    [Fact]
    public void Invalid_utf8_names_the_line_and_the_byte_and_is_skippable()
    {
        string dir = TestPaths.NewTempDir("jsonl-utf8");
        string good = Training.TrainingFixture.DemoData(3, tag: "jsonl-utf8-data");
        var lines = File.ReadAllLines(good);
        string path = Path.Combine(Path.GetDirectoryName(good)!, "mixed.jsonl");
        // Line 2: "Sannu" with a Latin-1 é (0xE9), not UTF-8; BOM and CRLF elsewhere are fine.
        byte[] broken = Encoding.UTF8.GetBytes(lines[1].Replace("\"text\": \"", "\"text\": \"caf"));
        int at = Array.IndexOf(broken, (byte)'f', Array.IndexOf(broken, (byte)'c')) + 1;
        broken = [.. broken[..at], 0xE9, .. broken[at..]];
        using (var f = File.Create(path))
        {
            f.Write([0xEF, 0xBB, 0xBF]);
            f.Write(Encoding.UTF8.GetBytes(lines[0] + "\r\n"));
            f.Write(broken);
            f.Write(Encoding.UTF8.GetBytes("\n" + lines[2] + "\n"));
        }
        var e = Assert.Throws<DataException>(() => JsonlTrainingData.Read(path));
        Assert.Equal($"{path}:2: line: byte {at} of the line is not valid UTF-8 (0xE9); save the file as UTF-8", e.Message);
        var records = JsonlTrainingData.Read(path, skipBad: true, out var skipped);
        Assert.Equal(2, records.Count);
        Assert.Equal([1, 3], records.Select(r => r.Line));
        Assert.Equal(2, Assert.Single(skipped).Line);
        Assert.DoesNotContain(records, r => r.Text.Contains('\uFFFD'));
    }

    [Fact]
    public void A_line_past_the_bound_is_refused_by_number()
    {
        string path = Path.Combine(TestPaths.NewTempDir("jsonl-long"), "long.jsonl");
        using (var f = File.Create(path))
        {
            f.Write(Encoding.UTF8.GetBytes("{\"text\": \""));
            var chunk = Encoding.ASCII.GetBytes(new string('a', 1 << 20));
            for (int i = 0; i <= JsonlTrainingData.MaxLineBytes >> 20; i++) f.Write(chunk);
            f.Write(Encoding.UTF8.GetBytes("\"}\n"));
        }
        var e = Assert.Throws<DataException>(() => JsonlTrainingData.Read(path));
        Assert.Equal($"{path}:1: line: longer than 64 MB (--max_line_mb); not read", e.Message);

        // --max_line_mb lowers (or raises) the bound; the line after a refused one is read on.
        File.AppendAllText(path, "{}\n");
        var refusals = new Refusals(skip: true);
        Assert.Empty(JsonlTrainingData.Read(path, refusals, maxLineBytes: JsonlTrainingData.LineLimit(1)));
        Assert.Equal([(1, "line"), (2, "audio")], refusals.Kept.Select(b => (b.Line, b.Field)));
        Assert.Equal("longer than 1 MB (--max_line_mb); not read", refusals.Kept[0].Reason);
        Assert.Throws<ArgumentException>(() => JsonlTrainingData.LineLimit(0));
    }
}
