using Qwen3Tts.Model.Generation;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Text;
using Qwen3Tts.Model.Sft;

namespace Qwen3Tts.Coordinator.Data;

/// <summary>The one rule set every record meets before the first step, against the model it will train: codes within
/// each codebook's range (<see cref="Bounds"/>, which the readers apply), chat ids within the text vocabulary, the whole
/// training sequence within max_position_embeddings (<see cref="SftCollate.Problem"/>), and <c>--max_frames</c> /
/// <c>--max_seconds</c>. The trainer, <c>info --model</c> and <c>preflight --model</c> judge by this one rule set, so
/// whatever the trainer would refuse the others report.</summary>
/// <param name="Config">the model's config; null where no model is given (then only the frame limit and the speech
/// tokenizer's code ranges apply).</param>
/// <param name="Tokenize">chat ids of a record's text, for records without <c>text_ids</c>; null where no tokenizer
/// is at hand (then only given ids and frames are checked).</param>
/// <param name="MaxFrames">longest target a record may have, in codec frames; null: only the context limits it.</param>
/// <param name="Language"><c>--language</c>: the language every record trains with, instead of its own.</param>
/// <param name="AllowOutsidePaths"><c>--allow_absolute_paths</c>: a record may name clips outside its data file's folder
/// (<see cref="DataPaths.Outside"/>).</param>
public sealed record RecordRules(Qwen3TtsConfig? Config, Func<string, IReadOnlyList<int>>? Tokenize = null, int? MaxFrames = null,
    bool AllowOutsidePaths = false, string? Language = null)
{
    /// <summary>Which language tag each record trains with (<see cref="LanguageChoice"/>), the model's; null without one.</summary>
    public LanguageChoice? Languages => Config is null ? null : new LanguageChoice(Config.Talker, Language);

    /// <summary>The rules of a model given as a folder, its config.json or a preset (<see cref="ModelDirectory.ResolveConfig"/>),
    /// with the folder's text tokenizer, or the released one (identical in every checkpoint) for a preset or a bare config.</summary>
    public static RecordRules ForModel(string spec, int? maxFrames = null, bool allowOutsidePaths = false, string? language = null)
    {
        var (json, source, folder, _) = ModelDirectory.ResolveConfig(spec);
        var tokenizer = folder is not null && File.Exists(Path.Combine(folder, Qwen3TextTokenizer.VocabFileName))
            ? Qwen3TextTokenizer.FromModelDirectory(folder)
            : Qwen3TextTokenizer.FromEmbeddedReference();
        return new RecordRules(Qwen3TtsConfig.Parse(json, source), tokenizer.EncodeChat, maxFrames, allowOutsidePaths, language);
    }

    /// <summary>Codec frames per second of the 12 Hz tokenizer.</summary>
    public const double FramesPerSecond = DatasetInfo.FramesPerSecond;

    /// <summary>Each codebook's range: the talker's, else the speech tokenizer's.</summary>
    public CodeBounds Bounds => Config is null ? CodeBounds.SpeechTokenizer : CodeBounds.Of(Config.Talker);

    /// <summary>Frames the speech tokenizer encodes a clip of this length to: ceil(seconds × 12.5) (1920 samples at 24 kHz each).</summary>
    public static int FramesOf(double seconds) => (int)Math.Ceiling(seconds * FramesPerSecond - 1e-9);

    /// <summary><c>--max_frames</c> / <c>--max_seconds</c> as one frame limit (the smaller when both are given).</summary>
    public static int? FrameLimit(int? maxFrames, double? maxSeconds)
    {
        int? fromSeconds = maxSeconds is double s ? (int)Math.Floor(s * FramesPerSecond) : null;
        return (maxFrames, fromSeconds) switch
        {
            (int f, int g) => Math.Min(f, g),
            (int f, null) => f,
            (null, int g) => g,
            _ => null,
        };
    }

    /// <summary>Why a record of this text (or these chat ids) and this many target frames cannot train, as (field,
    /// reason); null when it can.</summary>
    public (string Field, string Reason)? Problem(string text, IReadOnlyList<int>? textIds, int frames, string? language = null)
    {
        if (MaxFrames is int max && frames > max)
            return ("audio_codes", $"has {frames} frames ({frames / FramesPerSecond:F1} s), above the limit of {max} frames " +
                $"({max / FramesPerSecond:F1} s) set by --max_frames / --max_seconds");
        if (Config is null) return null;
        var ids = textIds ?? Tokenize?.Invoke(text);
        return ids is null ? null : SftCollate.Problem(ids, frames, Config, Languages!.IdOf(language) is not null);
    }

    public BadRecord? Check(TrainingRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (!AllowOutsidePaths && record.RefAudioBytes is null && DataPaths.Outside(record.RefAudio, record.Source) is { } outside)
            return new BadRecord(record.Source, record.Line, "ref_audio", outside);
        return Problem(record.Text, record.TextIds, record.AudioCodes.Frames, record.Language) is { } p ? new BadRecord(record.Source, record.Line, p.Field, p.Reason) : null;
    }

    /// <summary>The records that pass; the others go to <paramref name="refusals"/>.</summary>
    public IReadOnlyList<TrainingRecord> Apply(IReadOnlyList<TrainingRecord> records, Refusals refusals)
    {
        ArgumentNullException.ThrowIfNull(records);
        ArgumentNullException.ThrowIfNull(refusals);
        var fits = new List<TrainingRecord>(records.Count);
        foreach (var record in records)
        {
            if (Check(record) is { } bad) refusals.Add(bad);
            else fits.Add(record);
        }
        return fits;
    }
}

/// <summary>Where a record's files may be: under the folder of the data file that names them. A dataset from elsewhere
/// must not make a run read any file on the machine through an absolute path or a <c>..</c> chain;
/// <c>--allow_absolute_paths</c> lifts this for data the user trusts.</summary>
public static class DataPaths
{
    public const string AllowFlag = "--allow_absolute_paths";

    /// <summary>Why <paramref name="fullPath"/> may not be read for a record of <paramref name="source"/>, or null when
    /// it lies under the source's folder.</summary>
    public static string? Outside(string fullPath, string source)
    {
        ArgumentNullException.ThrowIfNull(fullPath);
        ArgumentNullException.ThrowIfNull(source);
        string folder = Path.GetDirectoryName(Path.GetFullPath(source))!;
        string relative = Path.GetRelativePath(folder, Path.GetFullPath(fullPath));
        bool outside = relative == ".." || relative.StartsWith(".." + Path.DirectorySeparatorChar, StringComparison.Ordinal) || Path.IsPathRooted(relative);
        return outside ? $"resolves to {Path.GetFullPath(fullPath)}, outside the dataset's folder {folder}; move the clips under it, or pass {AllowFlag} to read files elsewhere" : null;
    }
}

/// <summary>The language tag a record trains with: <c>--language</c> for every record when given, else the record's own
/// <c>language</c>; a name in the model's codec_language_id gives its row (<see cref="CodecPrefix"/>), anything else
/// (none, "auto", a language the model has no tag for) the no-language prefix, as generation would use.</summary>
public sealed record LanguageChoice(TalkerConfig Talker, string? Override = null)
{
    public int? IdOf(string? recordLanguage) => CodecPrefix.LanguageId(Override ?? recordLanguage, Talker);

    public int? IdOf(TrainingRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        return IdOf(record.Language);
    }

    /// <summary>One log line: each language's records and the tag it trains with ("english 12 (row 2050), hausa 30 (no tag: auto)").</summary>
    public string Describe(IEnumerable<TrainingRecord> records)
    {
        ArgumentNullException.ThrowIfNull(records);
        var groups = records.GroupBy(r => (Override ?? r.Language)?.Trim().ToLowerInvariant() ?? "(none)")
            .OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal);
        return "language tags: " + string.Join(", ", groups.Select(g => IdOf(g.First()) is int id
            ? $"{g.Key} {g.Count()} (row {id})"
            : $"{g.Key} {g.Count()} (no tag: the auto prefix{(g.Key is "(none)" or "auto" ? "" : "; the model has no tag for it")})"));
    }
}
