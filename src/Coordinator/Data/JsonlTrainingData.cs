using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Qwen3Tts.Model.Config;

namespace Qwen3Tts.Coordinator.Data;

/// <summary>Reads the fine-tuning JSONL (the reference's <c>train_jsonl</c>): one JSON object per line with
/// <c>audio</c>, <c>text</c>, <c>audio_codes</c> ([frames][16] ints), <c>ref_audio</c> (path relative to the file's
/// folder, or absolute), and optional <c>ref_text</c>, <c>language</c>, <c>speaker_id</c>, <c>gender</c>,
/// <c>age_range</c> (strings) and <c>text_ids</c> (pre-tokenized chat ids). Unknown keys are ignored; blank lines skipped with a warning.
/// Every line is validated up front so a bad record fails the read, not a training step hours later.</summary>
public static class JsonlTrainingData
{
    /// <summary>Reads every record; the first malformed line throws <see cref="DataException"/>.</summary>
    public static IReadOnlyList<TrainingRecord> Read(string path) => Read(path, skipBad: false, out _);

    /// <summary>Reads every record. A malformed line throws <see cref="DataException"/> naming file, line and field,
    /// unless <paramref name="skipBad"/> is set: then it is left out and listed in <paramref name="skipped"/>.
    /// <paramref name="bounds"/> are the model's (default: the speech tokenizer's 16 codebooks of 2048).</summary>
    public static IReadOnlyList<TrainingRecord> Read(string path, bool skipBad, out IReadOnlyList<BadRecord> skipped, CodeBounds? bounds = null)
        => ReadLines(path, "training JSONL file", skipBad, out skipped, (text, line, folder) => ParseLine(text, path, line, folder, bounds));

    /// <summary>Every record; refused lines go to <paramref name="refusals"/>.</summary>
    public static IReadOnlyList<TrainingRecord> Read(string path, Refusals refusals, CodeBounds? bounds = null, int maxLineBytes = MaxLineBytes)
        => ReadLines(path, "training JSONL file", refusals, (text, line, folder) => ParseLine(text, path, line, folder, bounds), maxLineBytes);

    /// <summary>Every non-blank line of a JSONL file through <paramref name="parse"/>, as
    /// <see cref="ReadLines{T}(string, string, Refusals, Func{string, int, string, T})"/>: a refused line stops the read
    /// (after the whole file, listing every refusal), or with <paramref name="skipBad"/> is listed in <paramref name="skipped"/>.</summary>
    public static IReadOnlyList<T> ReadLines<T>(string path, string what, bool skipBad, out IReadOnlyList<BadRecord> skipped,
        Func<string, int, string, T> parse) =>
        Refusals.Collect(skipBad, refusals => ReadLines(path, what, refusals, parse), out skipped);

    /// <summary>Every non-blank line of a JSONL file through <paramref name="parse"/> (text, 1-based line, the file's folder,
    /// against which relative paths resolve). A line it refuses (<see cref="DataException"/>), or one that is not UTF-8 or
    /// too long, goes to <paramref name="refusals"/>; a blank line is counted there as a warning.</summary>
    public static IReadOnlyList<T> ReadLines<T>(string path, string what, Refusals refusals, Func<string, int, string, T> parse,
        int maxLineBytes = MaxLineBytes)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(refusals);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such {what}", path);
        string folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var records = new List<T>();
        foreach (var (line, text, problem) in StrictLines(path, maxLineBytes))
        {
            try
            {
                if (problem is not null) throw new DataException(path, line, "line", problem);
                if (string.IsNullOrWhiteSpace(text)) { refusals.AddBlankLine(path, line); continue; }
                records.Add(parse(text!, line, folder));
            }
            catch (DataException e) { refusals.Add(e.Bad); }
        }
        return records;
    }

    /// <summary>Longest JSONL line read by default (bytes; --max_line_mb): a line past it is refused without being held in memory.</summary>
    public const int MaxLineBytes = 64 << 20;

    /// <summary>--max_line_mb as bytes (default <see cref="MaxLineBytes"/>).</summary>
    public static int LineLimit(int? megabytes) => megabytes switch
    {
        null => MaxLineBytes,
        >= 1 and <= 1024 => megabytes.Value << 20,
        _ => throw new ArgumentException($"--max_line_mb: must be 1 to 1024 (MB), got {megabytes}"),
    };

    static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The file's lines (1-based, without \n or \r\n; a leading BOM dropped), each either its text or why it
    /// cannot be read: bytes that are not UTF-8 (named by their offset in the line; decoding them leniently would train on
    /// mangled text) or a line longer than <see cref="MaxLineBytes"/> (skipped to its end, never buffered whole).</summary>
    static IEnumerable<(int Line, string? Text, string? Problem)> StrictLines(string path, int maxLineBytes)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var buffer = new byte[1 << 16];
        var current = new MemoryStream();
        bool tooLong = false;
        int line = 1;
        bool first = true;
        while (true)
        {
            int n = stream.Read(buffer, 0, buffer.Length);
            int start = 0;
            for (int i = 0; i < n; i++)
            {
                if (buffer[i] != (byte)'\n') continue;
                Append(buffer.AsSpan(start, i - start));
                yield return Finish();
                start = i + 1;
            }
            if (n == 0)
            {
                if (current.Length > 0 || tooLong) yield return Finish();
                yield break;
            }
            Append(buffer.AsSpan(start, n - start));
        }

        void Append(ReadOnlySpan<byte> bytes)
        {
            if (tooLong) return;
            if (current.Length + bytes.Length > maxLineBytes) { tooLong = true; current.SetLength(0); return; }
            current.Write(bytes);
        }

        (int, string?, string?) Finish()
        {
            var bytes = current.GetBuffer().AsSpan(0, (int)current.Length);
            if (first && bytes.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF])) bytes = bytes[3..];
            if (bytes.EndsWith((ReadOnlySpan<byte>)[(byte)'\r'])) bytes = bytes[..^1];
            (int, string?, string?) result = tooLong
                ? (line, null, $"longer than {maxLineBytes >> 20} MB (--max_line_mb); not read")
                : InvalidUtf8At(bytes) is { } offset
                    ? (line, null, $"byte {offset} of the line is not valid UTF-8 (0x{bytes[offset]:X2}); save the file as UTF-8")
                    : (line, Strict.GetString(bytes), null);
            current.SetLength(0);
            tooLong = false;
            first = false;
            line++;
            return result;
        }
    }

    static int? InvalidUtf8At(ReadOnlySpan<byte> bytes)
    {
        if (System.Text.Unicode.Utf8.IsValid(bytes)) return null; // the vectorized check; the scan below only names the byte
        for (int i = 0; i < bytes.Length;)
        {
            if (System.Text.Rune.DecodeFromUtf8(bytes[i..], out _, out int consumed) != System.Buffers.OperationStatus.Done) return i;
            i += consumed;
        }
        return null;
    }

    /// <summary>Writes what a lenient read skipped as JSONL: one <c>{"source", "line", "field", "reason"}</c> per line.</summary>
    public static void WriteSkipReport(string path, IReadOnlyList<BadRecord> skipped)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(skipped);
        using var writer = new StreamWriter(path);
        foreach (var b in skipped)
            writer.WriteLine(new JsonObject { ["source"] = b.Source, ["line"] = b.Line, ["field"] = b.Field, ["reason"] = b.Reason }
                .ToJsonString());
    }

    /// <summary>Parses one non-blank line; <paramref name="folder"/> resolves a relative ref_audio.</summary>
    public static TrainingRecord ParseLine(string text, string source, int line, string folder, CodeBounds? bounds = null)
    {
        DataException Bad(string field, string reason) => new(source, line, field, reason);

        JsonDocument doc;
        try { doc = JsonDocument.Parse(text); }
        catch (JsonException e) { throw Bad("json", $"not valid JSON: {e.Message}"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Bad("json", $"expected a JSON object, found {Kind(root)}");

            string RequiredString(string name)
            {
                if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) throw Bad(name, "missing required field");
                if (v.ValueKind != JsonValueKind.String) throw Bad(name, $"expected a string, found {Kind(v)}");
                return v.GetString()!;
            }
            string? OptionalString(string name)
            {
                if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
                if (v.ValueKind != JsonValueKind.String) throw Bad(name, $"expected a string, found {Kind(v)}");
                return v.GetString();
            }

            string audio = RequiredString("audio");
            string utterance = RequiredString("text");
            if (utterance.Length == 0) throw Bad("text", "is empty; a training sample needs text to speak");
            var codes = ParseCodes(root, Bad, bounds ?? CodeBounds.SpeechTokenizer)!;

            string refAudio = RequiredString("ref_audio");
            if (refAudio.Length == 0) throw Bad("ref_audio", "is empty");
            string resolved = Path.GetFullPath(Path.IsPathRooted(refAudio) ? refAudio : Path.Combine(folder, refAudio));
            if (!File.Exists(resolved)) throw Bad("ref_audio", $"file '{resolved}' does not exist");

            return new TrainingRecord(source, line, audio, utterance, codes, resolved,
                RefText: OptionalString("ref_text"),
                Language: OptionalString("language"),
                SpeakerId: OptionalString("speaker_id"),
                Gender: OptionalString("gender"),
                AgeRange: OptionalString("age_range"),
                TextIds: ParseTextIds(root, Bad),
                Extra: ExtraStrings(root),
                RefCodes: ParseCodes(root, Bad, bounds ?? CodeBounds.SpeechTokenizer, "ref_codes"));
        }
    }

    static readonly HashSet<string> Known = ["audio", "text", "audio_codes", "ref_audio", "ref_text", "ref_codes", "language", "speaker_id", "gender", "age_range", "text_ids"];

    /// <summary>The line's other string fields (a dataset's own columns, e.g. a speaker column of another name); null when none.</summary>
    static Dictionary<string, string>? ExtraStrings(JsonElement root)
    {
        Dictionary<string, string>? extra = null;
        foreach (var p in root.EnumerateObject())
            if (p.Value.ValueKind == JsonValueKind.String && !Known.Contains(p.Name))
                (extra ??= new(StringComparer.Ordinal))[p.Name] = p.Value.GetString()!;
        return extra;
    }

    /// <summary>Writes the <c>audio_codes</c> property (or <paramref name="name"/>), [frames][codebooks], as this reader reads it.</summary>
    public static void WriteCodes(System.Text.Json.Utf8JsonWriter json, long[,] codes, string name = "audio_codes")
    {
        json.WriteStartArray(name);
        for (int f = 0; f < codes.GetLength(0); f++)
        {
            json.WriteStartArray();
            for (int q = 0; q < codes.GetLength(1); q++) json.WriteNumberValue(codes[f, q]);
            json.WriteEndArray();
        }
        json.WriteEndArray();
    }

    /// <summary>audio_codes (required) or ref_codes (optional: null when absent).</summary>
    static CodeGrid? ParseCodes(JsonElement root, Func<string, string, DataException> bad, CodeBounds bounds, string name = "audio_codes")
    {
        int codebooks = bounds.Codebooks;
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
            return name == "audio_codes" ? throw bad(name, "missing required field") : null;
        if (v.ValueKind != JsonValueKind.Array) throw bad(name, $"expected an array of frames, found {Kind(v)}");
        int frames = v.GetArrayLength();
        if (frames == 0) throw bad(name, "is empty; a training sample needs at least one frame of codes");
        var codes = new long[frames, codebooks];
        int f = 0;
        foreach (var frame in v.EnumerateArray())
        {
            if (frame.ValueKind != JsonValueKind.Array) throw bad($"{name}[{f}]", $"expected an array of {codebooks} codes, found {Kind(frame)}");
            int width = frame.GetArrayLength();
            if (width != codebooks)
                throw bad(width > codebooks ? $"{name}[{f}][{codebooks}]" : $"{name}[{f}]", $"expected {codebooks} codebooks, found {width}");
            int g = 0;
            foreach (var code in frame.EnumerateArray())
            {
                if (code.ValueKind != JsonValueKind.Number || !code.TryGetInt32(out int c))
                    throw bad($"{name}[{f}][{g}]", $"expected an integer code, found {Describe(code)}");
                if (bounds.Problem(c, g) is { } problem) throw bad($"{name}[{f}][{g}]", problem);
                codes[f, g++] = c;
            }
            f++;
        }
        return new CodeGrid(codes);
    }

    static IReadOnlyList<int>? ParseTextIds(JsonElement root, Func<string, string, DataException> bad)
    {
        const string name = "text_ids";
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Array) throw bad(name, $"expected an array of token ids, found {Kind(v)}");
        var ids = new int[v.GetArrayLength()];
        int k = 0;
        foreach (var id in v.EnumerateArray())
        {
            if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out int t) || t < 0)
                throw bad($"{name}[{k}]", $"expected a non-negative integer token id, found {Describe(id)}");
            ids[k++] = t;
        }
        if (ids.Length < Qwen3Tts.Model.Sft.SftCollate.MinTextIds)
            throw bad(name, $"has {ids.Length} ids; the full chat text needs at least {Qwen3Tts.Model.Sft.SftCollate.MinTextIds} " +
                "(\"<|im_start|>assistant\\n\", at least one text id, \"<|im_end|>\\n<|im_start|>assistant\\n\")");
        return ids;
    }

    static string Kind(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => e.ValueKind.ToString(),
    };

    static string Describe(JsonElement e) => e.ValueKind == JsonValueKind.Number ? e.GetRawText() : Kind(e);
}
