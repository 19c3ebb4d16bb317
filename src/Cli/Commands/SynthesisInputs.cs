using System.Globalization;
using System.Text;
using System.Text.Json;
using Qwen3Tts.Model.Generation;

namespace Qwen3Tts.Cli.Commands;

/// <summary>One utterance as the command line or a requests file gives it: the text and the voice's sources (files
/// are turned into a <see cref="SynthesisRequest"/> by <see cref="SynthesizeCommand"/>).</summary>
public sealed record SynthesisInput
{
    public required string Id { get; init; }
    public required string Text { get; init; }
    public string Language { get; init; } = "auto";
    public string? Speaker { get; init; }
    public string? RefAudio { get; init; }
    public string? RefText { get; init; }
    public bool XVectorOnly { get; init; }
    public string? RefCodesFile { get; init; }
    public long[,]? RefCodes { get; init; }
    public string? SpeakerEmbeddingFile { get; init; }
    public string? Instruct { get; init; }
    public bool? NonStreaming { get; init; }
    public ulong? Seed { get; init; }

    /// <summary>Where it came from, for errors ("REQ.jsonl:3" or "the command line").</summary>
    public string Source { get; init; } = "the command line";
}

/// <summary>Requests files and codes files (JSONL). A bad line is an error naming the file, the line and the field.</summary>
public static class SynthesisInputs
{
    static readonly HashSet<string> RequestFields =
    [
        "id", "text", "language", "speaker", "ref_audio", "ref_text", "xvector_only", "x_vector_only_mode", "ref_codes",
        "ref_codes_file", "speaker_embedding", "instruct", "non_streaming", "non_streaming_mode", "seed",
    ];

    /// <summary>Reads REQ.jsonl: one object a line with "text" and optionally "id", "language", "speaker", "ref_audio",
    /// "ref_text", "xvector_only", "ref_codes" ([[16 ints]...]) or "ref_codes_file", "speaker_embedding" (a file),
    /// "instruct", "non_streaming", "seed". Paths are relative to the requests file.</summary>
    public static IReadOnlyList<SynthesisInput> ReadRequests(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such requests file");
        string baseDir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string? Resolve(string? p) => p is null ? null : Path.GetFullPath(Path.Combine(baseDir, p));
        var inputs = new List<SynthesisInput>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string where = $"{path}:{lineNumber}";
            using var doc = Parse(line, where);
            var root = doc.RootElement;
            foreach (var property in root.EnumerateObject())
                if (!RequestFields.Contains(property.Name))
                    throw new InvalidDataException($"{where}: {property.Name}: unknown field; expected {string.Join(", ", RequestFields.Order(StringComparer.Ordinal))}");
            string id = OptionalString(root, "id", where) ?? (inputs.Count + 1).ToString("D4", CultureInfo.InvariantCulture);
            if (id.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0 || id is "." or ".." || id == "codes")
                throw new InvalidDataException($"{where}: id: '{id}' cannot name an output file");
            if (!ids.Add(id)) throw new InvalidDataException($"{where}: id: '{id}' is used by an earlier line");
            inputs.Add(new SynthesisInput
            {
                Id = id,
                Source = where,
                Text = OptionalString(root, "text", where) ?? throw new InvalidDataException($"{where}: text: missing"),
                Language = OptionalString(root, "language", where) ?? "auto",
                Speaker = OptionalString(root, "speaker", where),
                RefAudio = Resolve(OptionalString(root, "ref_audio", where)),
                RefText = OptionalString(root, "ref_text", where),
                XVectorOnly = OptionalBool(root, "xvector_only", where) ?? OptionalBool(root, "x_vector_only_mode", where) ?? false,
                RefCodes = root.TryGetProperty("ref_codes", out var codes) ? Codes(codes, where, "ref_codes") : null,
                RefCodesFile = Resolve(OptionalString(root, "ref_codes_file", where)),
                SpeakerEmbeddingFile = Resolve(OptionalString(root, "speaker_embedding", where)),
                Instruct = OptionalString(root, "instruct", where),
                NonStreaming = OptionalBool(root, "non_streaming", where) ?? OptionalBool(root, "non_streaming_mode", where),
                Seed = root.TryGetProperty("seed", out var seed)
                    ? seed.ValueKind == JsonValueKind.Number && seed.TryGetUInt64(out ulong s) ? s : throw new InvalidDataException($"{where}: seed: must be a non-negative integer, found {seed.GetRawText()}")
                    : null,
            });
        }
        if (inputs.Count == 0) throw new InvalidDataException($"{path}: no requests");
        return inputs;
    }

    /// <summary>The "audio_codes" of a codes file's one record ([[16 ints] per frame], as --codes_out and training
    /// JSONL write them).</summary>
    public static long[,] ReadCodesFile(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such codes file");
        var lines = File.ReadLines(path).Select((text, i) => (text, number: i + 1)).Where(l => !string.IsNullOrWhiteSpace(l.text)).ToList();
        if (lines.Count != 1)
            throw new InvalidDataException($"{path}: a reference codes file holds one record with \"audio_codes\"; it has {lines.Count}");
        string where = $"{path}:{lines[0].number}";
        using var doc = Parse(lines[0].text, where);
        if (!doc.RootElement.TryGetProperty("audio_codes", out var codes)) throw new InvalidDataException($"{where}: audio_codes: missing");
        return Codes(codes, where, "audio_codes");
    }

    /// <summary>One JSONL line of generated codes: {"id"?, "text", "audio_codes": [[16 ints]...]}.</summary>
    public static string CodesLine(string? id, string text, long[,] codes)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            if (id is not null) w.WriteString("id", id);
            w.WriteString("text", text);
            Qwen3Tts.Coordinator.Data.JsonlTrainingData.WriteCodes(w, codes);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    static JsonDocument Parse(string line, string where)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(line); }
        catch (JsonException e) { throw new InvalidDataException($"{where}: not valid JSON: {e.Message}"); }
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            doc.Dispose();
            throw new InvalidDataException($"{where}: expected a JSON object");
        }
        return doc;
    }

    static string? OptionalString(JsonElement root, string name, string where)
    {
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw new InvalidDataException($"{where}: {name}: must be a string, found {v.GetRawText()}");
    }

    static bool? OptionalBool(JsonElement root, string name, string where)
    {
        if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new InvalidDataException($"{where}: {name}: must be true or false, found {v.GetRawText()}"),
        };
    }

    static long[,] Codes(JsonElement v, string where, string name)
    {
        if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() == 0)
            throw new InvalidDataException($"{where}: {name}: must be a non-empty list of frames, each a list of codes");
        int frames = v.GetArrayLength();
        int groups = -1;
        long[,]? codes = null;
        int f = 0;
        foreach (var frame in v.EnumerateArray())
        {
            if (frame.ValueKind != JsonValueKind.Array) throw new InvalidDataException($"{where}: {name}[{f}]: must be a list of codes");
            if (groups < 0)
            {
                groups = frame.GetArrayLength();
                codes = new long[frames, groups];
            }
            if (frame.GetArrayLength() != groups)
                throw new InvalidDataException($"{where}: {name}[{f}]: has {frame.GetArrayLength()} codes; frame 0 has {groups}");
            int g = 0;
            foreach (var code in frame.EnumerateArray())
            {
                if (code.ValueKind != JsonValueKind.Number || !code.TryGetInt64(out long c))
                    throw new InvalidDataException($"{where}: {name}[{f}][{g}]: must be an integer, found {code.GetRawText()}");
                codes![f, g++] = c;
            }
            f++;
        }
        return codes!;
    }
}
