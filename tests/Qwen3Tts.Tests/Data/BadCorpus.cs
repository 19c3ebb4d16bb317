using System.Text;
using System.Text.Json.Nodes;
using Qwen3Tts.Tests.Training;

namespace Qwen3Tts.Tests.Data;

/// <summary>One generated bad record: its line (or Parquet row + 1), the field its refusal must name (a prefix), and
/// whether only decoding its reference clip finds it (info reads no audio, so it is the trainer's and preflight's alone).</summary>
sealed record BadCase(string Name, int Line, string Field, bool FoundByDecoding = false);

/// <summary>A training corpus of good records and one bad record per case, generated here (no checked-in files):
/// every class of bad input a user meets, each placed on a known line so that every tool's refusal can be matched to it.</summary>
sealed class BadCorpus
{
    /// <summary>--max_frames of the runs over the corpus (one case exceeds it and nothing else).</summary>
    public const int MaxFrames = 1000;

    public required string Path { get; init; }
    public required IReadOnlyList<BadCase> Cases { get; init; }
    public required int GoodRecords { get; init; }
    public required IReadOnlyList<int> BlankLines { get; init; }

    /// <summary>A JSONL corpus: 4 good demo records (each with its own clip, for preflight) and 36 bad ones.</summary>
    public static BadCorpus Jsonl()
    {
        string data = TrainingFixture.DemoData(4, tag: "bad-corpus");
        string dir = System.IO.Path.GetDirectoryName(data)!;
        var good = File.ReadAllLines(data).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        foreach (var g in good) File.Copy(System.IO.Path.Combine(dir, "ref_voice.wav"), System.IO.Path.Combine(dir, (string)g["audio"]!));
        byte[] wav = File.ReadAllBytes(System.IO.Path.Combine(dir, "ref_voice.wav"));
        File.WriteAllText(System.IO.Path.Combine(dir, "notes.wav"), "these are not audio samples\n");
        File.WriteAllBytes(System.IO.Path.Combine(dir, "truncated.wav"), wav[..30]);
        Qwen3Tts.Model.Audio.WavWriter.Write(System.IO.Path.Combine(dir, "empty.wav"), [], 24000); // a well-formed header, no samples
        string outside = System.IO.Path.Combine(TestPaths.NewTempDir("bad-corpus-elsewhere"), "voice.wav");
        File.WriteAllBytes(outside, wav);

        JsonObject Template() => (JsonObject)good[0].DeepClone();
        string With(Action<JsonObject> change)
        {
            var o = Template();
            change(o);
            return o.ToJsonString();
        }
        JsonArray Frames(int n, Func<int, int, JsonNode?> code, int width = 16) =>
            new(Enumerable.Range(0, n).Select(f => (JsonNode?)new JsonArray(Enumerable.Range(0, width).Select(k => code(f, k)).ToArray())).ToArray());
        JsonArray Ids(IEnumerable<int> ids) => new(ids.Select(i => (JsonNode?)i).ToArray());
        int[] chat = [151644, 77091, 198, 9707, 151645, 198, 151644, 77091, 198]; // a minimal valid chat: prefix, one id, 5 trailing

        var bad = new (string Name, string Field, object Line, bool Decoding)[]
        {
            ("not JSON", "json", "{\"audio\": ", false),
            ("an array, not an object", "json", "[1, 2, 3]", false),
            ("no audio", "audio", With(o => o.Remove("audio")), false),
            ("audio a number", "audio", With(o => o["audio"] = 5), false),
            ("no text", "text", With(o => o.Remove("text")), false),
            ("empty text", "text", With(o => o["text"] = ""), false),
            ("text a number", "text", With(o => o["text"] = 12), false),
            ("no audio_codes", "audio_codes", With(o => o.Remove("audio_codes")), false),
            ("audio_codes empty", "audio_codes", With(o => o["audio_codes"] = new JsonArray()), false),
            ("15 codebooks", "audio_codes[0]", With(o => o["audio_codes"] = Frames(3, (f, k) => 1, width: 15)), false),
            ("17 codebooks", "audio_codes[0]", With(o => o["audio_codes"] = Frames(3, (f, k) => 1, width: 17)), false),
            ("a negative code", "audio_codes[1][3]", With(o => o["audio_codes"] = Frames(3, (f, k) => f == 1 && k == 3 ? -1 : 1)), false),
            ("2048 in codebook 5", "audio_codes[2][5]", With(o => o["audio_codes"] = Frames(3, (f, k) => f == 2 && k == 5 ? 2048 : 1)), false),
            ("4096 in codebook 0", "audio_codes[0][0]", With(o => o["audio_codes"] = Frames(3, (f, k) => f == 0 && k == 0 ? 4096 : 1)), false),
            ("a code as a string", "audio_codes[1][0]", With(o => o["audio_codes"] = Frames(3, (f, k) => f == 1 && k == 0 ? "12" : 1)), false),
            ("a fractional code", "audio_codes[0][2]", With(o => o["audio_codes"] = Frames(3, (f, k) => f == 0 && k == 2 ? 1.5 : 1)), false),
            ("a null frame", "audio_codes[1]", With(o => o["audio_codes"] = new JsonArray(Frames(1, (f, k) => 1)[0]!.DeepClone(), null)), false),
            ("frames nested too deep", "audio_codes[0][0]", With(o => o["audio_codes"] = new JsonArray(new JsonArray(Enumerable.Range(0, 16).Select(_ => (JsonNode?)new JsonArray(1)).ToArray()))), false),
            ("no ref_audio", "ref_audio", With(o => o.Remove("ref_audio")), false),
            ("ref_audio empty", "ref_audio", With(o => o["ref_audio"] = ""), false),
            ("ref_audio missing", "ref_audio", With(o => o["ref_audio"] = "nope.wav"), false),
            ("ref_audio a ../ chain to a system file", "ref_audio", With(o => o["ref_audio"] = string.Concat(Enumerable.Repeat("../", 12)) + "etc/passwd"), false),
            ("ref_audio absolute, elsewhere", "ref_audio", With(o => o["ref_audio"] = outside), false),
            ("ref_audio not audio", "ref_audio", With(o => o["ref_audio"] = "notes.wav"), true),
            ("ref_audio a truncated WAV", "ref_audio", With(o => o["ref_audio"] = "truncated.wav"), true),
            ("ref_audio without samples", "ref_audio", With(o => o["ref_audio"] = "empty.wav"), true),
            ("text_ids outside the vocabulary", "text_ids[3]", With(o => o["text_ids"] = Ids([.. chat[..3], 200_000, .. chat[4..]])), false),
            ("a negative text id", "text_ids[3]", With(o => o["text_ids"] = Ids([.. chat[..3], -7, .. chat[4..]])), false),
            ("too few text_ids", "text_ids", With(o => o["text_ids"] = Ids(chat[..3])), false),
            ("text_ids not a list", "text_ids", With(o => o["text_ids"] = "151644 77091"), false),
            ("a runaway text (40k ids)", "audio_codes", With(o => o["text_ids"] = Ids([.. chat[..3], .. Enumerable.Repeat(9707, 40_000), .. chat[4..]])), false),
            ("a runaway target (40k frames)", "audio_codes", With(o => o["audio_codes"] = Frames(40_000, (f, k) => (f + k) % 2048)), false),
            ("above --max_frames", "audio_codes", With(o => o["audio_codes"] = Frames(MaxFrames + 200, (f, k) => (f * 3 + k) % 2048)), false),
            ("language a number", "language", With(o => o["language"] = 3), false),
            ("speaker_id an object", "speaker_id", With(o => o["speaker_id"] = new JsonObject { ["id"] = 1 }), false),
            ("invalid UTF-8 in the text", "line", Encoding.UTF8.GetBytes(With(o => o["text"] = "Sannu XX da zuwa.")) is var b
                ? Replace(b, "XX"u8.ToArray(), [0xC3, 0x28]) : null!, false),
        };

        // Good records first and last, bad ones between, and two blank lines (warnings, not refusals).
        var lines = new List<byte[]> { Bytes(good[0]), Bytes(good[1]) };
        var cases = new List<BadCase>();
        var blank = new List<int>();
        foreach (var (name, field, line, decoding) in bad)
        {
            if (cases.Count == 10 || cases.Count == 30) { lines.Add([]); blank.Add(lines.Count); }
            lines.Add(line is byte[] raw ? raw : Encoding.UTF8.GetBytes((string)line));
            cases.Add(new BadCase(name, lines.Count, field, decoding));
        }
        lines.Add(Bytes(good[2]));
        lines.Add(Bytes(good[3]));
        string path = System.IO.Path.Combine(dir, "corpus.jsonl");
        using (var file = File.Create(path))
            foreach (var l in lines) { file.Write(l); file.WriteByte((byte)'\n'); }
        File.Delete(data);
        return new BadCorpus { Path = path, Cases = cases, GoodRecords = 4, BlankLines = blank };

        static byte[] Bytes(JsonObject o) => Encoding.UTF8.GetBytes(o.ToJsonString());
    }

    /// <summary>A Parquet corpus (written by Apache Arrow's writer, as <c>datasets</c> writes): 3 good rows, 8 bad.</summary>
    public static BadCorpus Parquet()
    {
        string demo = TrainingFixture.DemoData(3, tag: "bad-corpus-parquet");
        string dir = System.IO.Path.GetDirectoryName(demo)!;
        var good = File.ReadAllLines(demo).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        foreach (var g in good) File.Copy(System.IO.Path.Combine(dir, "ref_voice.wav"), System.IO.Path.Combine(dir, (string)g["audio"]!));
        long?[]?[] Codes(JsonObject o) => o["audio_codes"]!.AsArray().Select(f => f!.AsArray().Select(c => (long?)(long)c!).ToArray()).ToArray<long?[]?>();
        ParquetRow Row(JsonObject o) => new(Text: (string)o["text"]!, Codes: Codes(o), RefAudio: new AudioValue(null, "ref_voice.wav", false),
            Audio: new AudioValue(null, (string)o["audio"]!, false), Language: "hausa", SpeakerId: "demo_speaker");
        var template = Row(good[0]);
        var wide = template.Codes!.Select(f => f!.Append(1).ToArray()).ToArray<long?[]?>();
        var outOfRange = template.Codes!.Select((f, i) => i == 2 ? f!.Select((c, k) => k == 7 ? (long?)2048 : c).ToArray() : f).ToArray<long?[]?>();
        var bad = new (string Name, string Field, ParquetRow Row)[]
        {
            ("text null", "text", template with { Text = null }),
            ("text empty", "text", template with { Text = "" }),
            ("codes null", "audio_codes", template with { Codes = null }),
            ("17 codebooks", "audio_codes[0]", template with { Codes = wide }),
            ("2048 in codebook 7", "audio_codes[2][7]", template with { Codes = outOfRange }),
            ("ref_audio missing", "ref_audio", template with { RefAudio = new AudioValue(null, "nope.wav", false) }),
            ("ref_audio outside", "ref_audio", template with { RefAudio = new AudioValue(null, "../../../../../../../../etc/passwd", false) }),
            ("text_ids outside the vocabulary", "text_ids[3]", template with { TextIds = [151644, 77091, 198, 300_000, 151645, 198, 151644, 77091, 198] }),
        };
        var rows = new List<ParquetRow> { Row(good[0]) };
        var cases = new List<BadCase>();
        foreach (var (name, field, row) in bad)
        {
            rows.Add(row);
            cases.Add(new BadCase(name, rows.Count, field));
        }
        rows.Add(Row(good[1]));
        rows.Add(Row(good[2]));
        string path = System.IO.Path.Combine(dir, "corpus.parquet");
        ArrowParquet.Write(path, rows, rowGroupSize: 4);
        File.Delete(demo);
        return new BadCorpus { Path = path, Cases = cases, GoodRecords = 3, BlankLines = [] };
    }

    static byte[] Replace(byte[] bytes, byte[] what, byte[] with)
    {
        int at = bytes.AsSpan().IndexOf(what);
        return [.. bytes[..at], .. with, .. bytes[(at + what.Length)..]];
    }
}
