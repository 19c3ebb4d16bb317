using System.Security.Cryptography;
using System.Text.Json;
using Qwen3Tts.Model.Audio;

namespace Qwen3Tts.Coordinator.Data;

/// <summary>Where a clip is: a file (<see cref="Path"/>, absolute) or encoded bytes carried in the data
/// (<see cref="Bytes"/>: WAV, FLAC or MP3, e.g. a Hugging Face audio struct). <see cref="Name"/> names it in messages.</summary>
public sealed record AudioSource(string Name, string? Path, byte[]? Bytes)
{
    public static AudioSource FromFile(string path) => new(path, path, null);

    public static AudioSource Inline(byte[] bytes, string name) => new(name, null, bytes);

    /// <summary>The clip's channels at its own rate (throws <see cref="AudioException"/> naming it when it cannot be read).</summary>
    public AudioChannels ReadChannels() => Bytes is not null ? AudioFile.DecodeChannels(Bytes, Name) : AudioFile.ReadChannels(Path!);

    /// <summary>The clip as mono 24 kHz samples, what the speech tokenizer and speaker encoder take.</summary>
    public AudioClip LoadMono24k() => AudioFile.To24k(ReadChannels().ToMono());

    /// <summary>The same clip gives the same key: the full path, or a hash of the bytes (rows of one speaker often carry
    /// the same reference clip inline).</summary>
    public string Key => Bytes is null ? Path! : "sha256:" + Convert.ToHexString(SHA256.HashData(Bytes));

    /// <summary>Equal when they name the same clip the same way (byte contents compared, not array references).</summary>
    public bool Equals(AudioSource? other) =>
        other is not null && Name == other.Name && Path == other.Path
        && (Bytes is null ? other.Bytes is null : other.Bytes is not null && Bytes.AsSpan().SequenceEqual(other.Bytes));

    public override int GetHashCode() => HashCode.Combine(Name, Path, Bytes?.Length);
}

/// <summary>One utterance of a speech dataset before preparation: its audio, its text, and what else the source says
/// about it.</summary>
/// <param name="Source">the JSONL or Parquet file the record came from; for a folder of clips, the transcript file.</param>
/// <param name="Line">the JSONL line (1-based), the Parquet row index + 1 (as <see cref="TrainingRecord.Line"/>), or 1.</param>
/// <param name="Id">the record's <c>id</c> field when it has one, else one made from where it is: <c>train.jsonl:7</c>,
/// <c>train-00000-of-00001.parquet:row6</c>, or the clip's path relative to the folder without its extension.</param>
/// <param name="Audio">the target clip.</param>
/// <param name="Text">the transcript, as written (may be empty: <see cref="Preflight"/> reports that).</param>
/// <param name="RefAudio">the reference clip for the speaker embedding, when the record names one.</param>
/// <param name="Extra">every other field, by name: strings as they are, other JSON values as their JSON text; for Parquet,
/// the other string columns (null where the row has none).</param>
/// <param name="AudioCodes">codec ids ([frame][codebook]) when the data is already prepared, unvalidated: a null
/// frame or code is kept as null so that a checker can report it.</param>
public sealed record RawSpeechRecord(
    string Source,
    int Line,
    string Id,
    AudioSource Audio,
    string Text,
    AudioSource? RefAudio = null,
    string? SpeakerId = null,
    string? Language = null,
    IReadOnlyDictionary<string, string?>? Extra = null,
    long?[]?[]? AudioCodes = null)
{
    public string Where => DataLocation.Format(Source, Line);
}

/// <summary>How a speech dataset is laid out.</summary>
public enum RawSpeechFormat
{
    /// <summary>One JSON object per line: <c>audio</c> (a path, relative to the JSONL's folder or absolute) and <c>text</c>;
    /// optional <c>ref_audio</c>, <c>speaker_id</c>, <c>language</c>, <c>id</c>, <c>audio_codes</c>; the reference's
    /// <c>train_raw.jsonl</c> and the prepared training JSONL both read.</summary>
    Jsonl,

    /// <summary>A Hugging Face Parquet file or folder of shards: <c>audio</c> as the audio struct {bytes, path} or a path.</summary>
    Parquet,

    /// <summary>A folder of clips (<c>.wav</c>, <c>.flac</c>, <c>.mp3</c>, in subfolders too), each with its transcript in a
    /// <c>.txt</c> of the same name beside it.</summary>
    Folder,
}

/// <summary>Reads the utterances of a speech dataset from any of the three layouts of <see cref="RawSpeechFormat"/>,
/// for <c>preflight</c> and <c>prepare</c>. Only the structure is checked here (a record needs audio and text, fields
/// have the right types); whether the audio exists and decodes is the caller's business (<see cref="Preflight"/> reports
/// it per record). A malformed record throws <see cref="DataException"/> naming file, line and field, or with
/// <c>skipBad</c> is listed in <c>skipped</c>.</summary>
public static class RawSpeechData
{
    /// <summary>The fields with a place of their own in <see cref="RawSpeechRecord"/>; everything else goes to Extra.</summary>
    public static readonly IReadOnlySet<string> KnownFields = new HashSet<string>(StringComparer.Ordinal)
    {
        "id", "audio", "text", "ref_audio", "speaker_id", "language", "audio_codes",
    };

    /// <summary>Clip extensions a folder dataset is searched for.</summary>
    public static readonly IReadOnlyList<string> ClipExtensions = [".wav", ".flac", ".mp3"];

    /// <summary>A folder holding <c>.parquet</c> files (or a <c>data/</c> folder with them) is Parquet, any other folder
    /// clips with transcripts; a file is JSONL or Parquet as <see cref="TrainingData.Detect"/> decides.</summary>
    public static RawSpeechFormat Detect(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path))
        {
            bool parquet = Directory.EnumerateFiles(path, "*.parquet").Any()
                || (Directory.Exists(Path.Combine(path, "data")) && Directory.EnumerateFiles(Path.Combine(path, "data"), "*.parquet").Any())
                || Directory.GetDirectories(path).Any(c => Directory.GetDirectories(c).Any(s => Directory.EnumerateFiles(s, "*.parquet").Any())); // {config}/{split}/
            return parquet ? RawSpeechFormat.Parquet : RawSpeechFormat.Folder;
        }
        return TrainingData.Detect(path) == DataFormat.Jsonl ? RawSpeechFormat.Jsonl : RawSpeechFormat.Parquet;
    }

    /// <summary>Reads every record of <paramref name="path"/> in order (JSONL lines, Parquet rows across shards sorted by
    /// name, clips sorted by relative path). <paramref name="split"/> picks Parquet shards as in <see cref="ParquetTrainingData.Files"/>.</summary>
    public static IReadOnlyList<RawSpeechRecord> Read(string path, bool skipBad, out IReadOnlyList<BadRecord> skipped, string? split = null) =>
        Refusals.Collect(skipBad, refusals => Read(path, refusals, split), out skipped);

    /// <summary>Every record; refused ones (and blank JSONL lines, as warnings) go to <paramref name="refusals"/>.</summary>
    public static IReadOnlyList<RawSpeechRecord> Read(string path, Refusals refusals, string? split = null, int maxLineBytes = JsonlTrainingData.MaxLineBytes)
    {
        var format = Detect(path);
        if (split is not null && format != RawSpeechFormat.Parquet)
            throw new ArgumentException($"{path}: --split {split} applies to Parquet shards, not to a {format.ToString().ToLowerInvariant()} dataset");
        return format switch
        {
            RawSpeechFormat.Jsonl => JsonlTrainingData.ReadLines(path, "JSONL file", refusals, (text, line, folder) => ParseJsonLine(text, path, line, folder), maxLineBytes),
            RawSpeechFormat.Parquet => ParquetTrainingData.ReadSpeech(path, refusals, split),
            _ => ReadFolder(path, refusals),
        };
    }

    /// <summary>The record's clip (audio, then ref_audio) that lies outside its data file's folder, as a refusal; null
    /// when none does (<see cref="DataPaths.Outside"/>; inline clips and a clip folder's own files never do).</summary>
    public static BadRecord? OutsidePath(RawSpeechRecord r)
    {
        ArgumentNullException.ThrowIfNull(r);
        foreach (var (field, clip) in new[] { ("audio", r.Audio), ("ref_audio", r.RefAudio) })
            if (clip?.Path is { } p && DataPaths.Outside(p, r.Source) is { } why) return new BadRecord(r.Source, r.Line, field, why);
        return null;
    }

    /// <summary>Reads a JSONL file of utterances; blank lines are skipped.</summary>
    public static IReadOnlyList<RawSpeechRecord> ReadJsonl(string path, bool skipBad, out IReadOnlyList<BadRecord> skipped) =>
        JsonlTrainingData.ReadLines(path, "JSONL file", skipBad, out skipped, (text, line, folder) => ParseJsonLine(text, path, line, folder));

    static RawSpeechRecord ParseJsonLine(string text, string source, int line, string folder)
    {
        DataException Bad(string field, string reason) => new(source, line, field, reason);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(text); }
        catch (JsonException e) { throw Bad("json", $"not valid JSON: {e.Message}"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Bad("json", $"expected a JSON object, found {root.ValueKind.ToString().ToLowerInvariant()}");
            string? OptionalString(string name)
            {
                if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
                return v.ValueKind == JsonValueKind.String ? v.GetString() : throw Bad(name, $"expected a string, found {v.ValueKind.ToString().ToLowerInvariant()}");
            }
            AudioSource? Clip(string name)
            {
                string? p = OptionalString(name);
                if (p is null) return null;
                if (p.Length == 0) throw Bad(name, "is empty");
                return AudioSource.FromFile(Path.GetFullPath(Path.IsPathRooted(p) ? p : Path.Combine(folder, p)));
            }

            var audio = Clip("audio") ?? throw Bad("audio", "missing required field");
            string utterance = OptionalString("text") ?? throw Bad("text", "missing required field");
            string id = root.TryGetProperty("id", out var idValue) && idValue.ValueKind is JsonValueKind.String or JsonValueKind.Number
                ? (idValue.ValueKind == JsonValueKind.String ? idValue.GetString()! : idValue.GetRawText())
                : $"{Path.GetFileName(source)}:{line}";
            var extra = new Dictionary<string, string?>(StringComparer.Ordinal);
            foreach (var p in root.EnumerateObject())
                if (!KnownFields.Contains(p.Name))
                    extra[p.Name] = p.Value.ValueKind switch
                    {
                        JsonValueKind.String => p.Value.GetString(),
                        JsonValueKind.Null => null,
                        _ => p.Value.GetRawText(),
                    };
            return new RawSpeechRecord(source, line, id, audio, utterance,
                RefAudio: Clip("ref_audio"),
                SpeakerId: OptionalString("speaker_id"),
                Language: OptionalString("language"),
                Extra: extra,
                AudioCodes: Codes(root, Bad));
        }
    }

    /// <summary>audio_codes as written: an array of arrays; anything that is not an integer stays null for a checker to report.</summary>
    static long?[]?[]? Codes(JsonElement root, Func<string, string, DataException> bad)
    {
        if (!root.TryGetProperty("audio_codes", out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Array) throw bad("audio_codes", $"expected an array of frames, found {v.ValueKind.ToString().ToLowerInvariant()}");
        return v.EnumerateArray().Select(frame => frame.ValueKind != JsonValueKind.Array ? null
            : frame.EnumerateArray().Select(c => c.ValueKind == JsonValueKind.Number && c.TryGetInt64(out long x) ? x : (long?)null).ToArray()).ToArray();
    }

    /// <summary>Reads a folder of clips with transcripts beside them (<c>a/b.wav</c> + <c>a/b.txt</c>, UTF-8, trimmed).
    /// A clip without a transcript is a bad record; a transcript without a clip is ignored.</summary>
    public static IReadOnlyList<RawSpeechRecord> ReadFolder(string folder, bool skipBad, out IReadOnlyList<BadRecord> skipped) =>
        Refusals.Collect(skipBad, refusals => ReadFolder(folder, refusals), out skipped);

    static IReadOnlyList<RawSpeechRecord> ReadFolder(string folder, Refusals refusals)
    {
        ArgumentNullException.ThrowIfNull(folder);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{folder}: no such folder");
        string root = Path.GetFullPath(folder);
        var clips = Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Where(f => ClipExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
            .Select(f => (Full: f, Relative: Path.GetRelativePath(root, f).Replace('\\', '/')))
            .OrderBy(c => c.Relative, StringComparer.Ordinal).ToList();
        if (clips.Count == 0)
            throw new InvalidDataException($"{folder}: no .wav, .flac or .mp3 clips (nor .parquet files) in it or below it");
        var records = new List<RawSpeechRecord>();
        var ids = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (full, relative) in clips)
        {
            string transcript = Path.ChangeExtension(full, ".txt");
            string id = relative[..^Path.GetExtension(relative).Length];
            try
            {
                if (!File.Exists(transcript))
                    throw new DataException(full, 1, "text", $"no transcript: expected {Path.GetFileName(transcript)} beside the clip");
                if (ids.TryGetValue(id, out var other))
                    throw new DataException(full, 1, "audio", $"{Path.GetFileName(other)} has the same name and transcript; keep one format per utterance");
                ids[id] = full;
                records.Add(new RawSpeechRecord(transcript, 1, id, AudioSource.FromFile(full), File.ReadAllText(transcript).Trim()));
            }
            catch (DataException e) { refusals.Add(e.Bad); }
        }
        return records;
    }
}
