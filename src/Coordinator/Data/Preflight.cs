using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Qwen3Tts.Model.Audio;

namespace Qwen3Tts.Coordinator.Data;

public enum Severity
{
    Warning,
    Error,
}

/// <summary>One finding about a record. <see cref="Code"/> is stable (JSON consumers match on it); the message says what
/// was found and, where there is one, the fix.</summary>
public sealed record PreflightIssue(Severity Severity, string Code, string Message);

/// <summary>What preflight found about one record. Audio fields are as found in the file, before mixdown and resampling;
/// they are 0 (and <see cref="Format"/> null) when the clip could not be read.</summary>
public sealed record PreflightRecord(
    string Id,
    string Where,
    string Clip,
    string? Format,
    int SampleRate,
    int Channels,
    int BitsPerSample,
    double Seconds,
    AudioLevels? Levels,
    string? Reference,
    string? SpeakerId,
    string? Language,
    IReadOnlyList<PreflightIssue> Issues)
{
    public bool HasErrors => Issues.Any(i => i.Severity == Severity.Error);
    public bool HasWarnings => Issues.Any(i => i.Severity == Severity.Warning);
}

/// <summary>A distinct reference clip and what was found about it (its issues also land on every record that uses it).</summary>
public sealed record PreflightReference(string Clip, int Records, string? Format, int SampleRate, int Channels, double Seconds,
    AudioLevels? Levels, IReadOnlyList<PreflightIssue> Issues);

public enum PreflightVerdict
{
    Go,
    GoWithCaution,
    NoGo,
}

/// <summary>The thresholds preflight judges by (<c>qwen3tts preflight --help</c> and the README list them).</summary>
public sealed record PreflightThresholds
{
    /// <summary>Shorter clips are flagged (warning): too little speech to learn from, and often mis-segmented.</summary>
    public double MinSeconds { get; init; } = 0.5;

    /// <summary>Longer clips are an error. The default when no model is given; with a model the limit comes from the
    /// talker's context, and each record is judged by the trainer's <see cref="Rules"/>.</summary>
    public double MaxSeconds { get; init; } = 60;

    /// <summary>Where <see cref="MaxSeconds"/> came from, for the report.</summary>
    public string MaxSecondsSource { get; init; } = "default; --model derives it from the talker's max_position_embeddings";

    /// <summary>The talker's max_position_embeddings when a model was given: a clip must fit with its text.</summary>
    public int? MaxPositions => Rules?.Config?.Talker.MaxPositionEmbeddings;

    /// <summary>The trainer's rules when a model was given (<see cref="Preflight.ForModel"/>): every record is judged by
    /// them exactly, so whatever the trainer would refuse is an error here.</summary>
    public RecordRules? Rules { get; init; }

    /// <summary>The range of each codebook's codes: the model's when one was given, else the speech tokenizer's.</summary>
    public Qwen3Tts.Model.Config.CodeBounds CodeBounds => Rules?.Bounds ?? Qwen3Tts.Model.Config.CodeBounds.SpeechTokenizer;

    /// <summary>Share of samples in clipped runs (<see cref="AudioLevels.ClippedShare"/>) from which a clip is flagged (warning).</summary>
    public double MaxClippedShare { get; init; } = 0.001;

    /// <summary>Share of 20 ms frames below -50 dBFS above which a clip is flagged as mostly silent (warning).</summary>
    public double MaxSilenceShare { get; init; } = 0.5;

    /// <summary>A noise floor (10th-percentile frame level) above this is flagged (warning), in dBFS.</summary>
    public double MaxNoiseFloorDb { get; init; } = -40;

    /// <summary>Files below this rate are flagged (warning): upsampled to 24 kHz they carry nothing above half their rate.</summary>
    public int MinSampleRate { get; init; } = 16000;

    /// <summary>Codes whose length differs from the audio's by more than this many seconds are flagged (warning).</summary>
    public double MaxCodeLengthMismatchSeconds { get; init; } = 1.0;

    /// <summary>A record without any reference clip is an error. Off where the data will be prepared without --ref_audio:
    /// prepare gives each speaker its first usable clip, which preflight checks as that record's own audio.</summary>
    public bool RequireReference { get; init; } = true;

    /// <summary>--max_line_mb as bytes: a longer JSONL line is refused unread.</summary>
    public int MaxLineBytes { get; init; } = JsonlTrainingData.MaxLineBytes;

    /// <summary>--allow_absolute_paths: records may name clips outside their data file's folder (else an error, path_outside).</summary>
    public bool AllowOutsidePaths { get; init; }

    /// <summary>NO-GO when more than this share of the records has an error.</summary>
    public double MaxErrorShare { get; init; } = 0.05;
}

/// <summary>The whole report of <c>qwen3tts preflight</c>.</summary>
public sealed record PreflightReport(
    string Path,
    RawSpeechFormat Format,
    PreflightThresholds Thresholds,
    string MaxSecondsSource,
    IReadOnlyList<PreflightRecord> Records,
    IReadOnlyList<BadRecord> Malformed,
    IReadOnlyList<PreflightReference> References,
    PreflightVerdict Verdict,
    IReadOnlyList<string> Reasons)
{
    /// <summary>Blank lines of a JSONL dataset (a warning: "data.jsonl: blank lines 3, 9 skipped"), or null.</summary>
    public string? BlankLines { get; init; }

    public int Total => Records.Count + Malformed.Count;
    public int WithErrors => Records.Count(r => r.HasErrors) + Malformed.Count;
    public int WithWarnings => Records.Count(r => !r.HasErrors && r.HasWarnings);
    public IEnumerable<PreflightRecord> Usable => Records.Where(r => !r.HasErrors);
    public double UsableMinutes => Usable.Sum(r => r.Seconds) / 60;
    public double AllMinutes => Records.Sum(r => r.Seconds) / 60;
    public int ExitCode => Verdict == PreflightVerdict.NoGo ? 2 : 0;

    public static string Name(PreflightVerdict v) => v switch
    {
        PreflightVerdict.Go => "GO",
        PreflightVerdict.GoWithCaution => "GO-WITH-CAUTION",
        _ => "NO-GO",
    };

    static IReadOnlyList<KeyValuePair<string, int>> Tally(IEnumerable<string> keys) =>
        keys.GroupBy(k => k).Select(g => KeyValuePair.Create(g.Key, g.Count()))
            .OrderByDescending(p => p.Value).ThenBy(p => p.Key, StringComparer.Ordinal).ToList();

    IReadOnlyList<KeyValuePair<string, int>> IssueCounts => Tally(Records.SelectMany(r => r.Issues.Select(i => i.Code).Distinct())
        .Concat(Malformed.Select(_ => "malformed_record")));

    public string ToText(bool allRecords = false)
    {
        var c = CultureInfo.InvariantCulture;
        var s = new StringBuilder();
        s.AppendLine(c, $"{Path} ({Format.ToString().ToLowerInvariant()}, {Total} records)");
        s.AppendLine(c, $"verdict      {Name(Verdict)}");
        foreach (var reason in Reasons) s.AppendLine(c, $"             - {reason}");
        s.AppendLine();
        var usable = Usable.ToList();
        s.AppendLine(c, $"records      {Total}: {usable.Count} usable, {WithErrors} with errors, {WithWarnings} with warnings only");
        if (BlankLines is not null) s.AppendLine(c, $"blank lines  {BlankLines}");
        string range = usable.Count > 0 ? string.Create(c, $", clips {usable.Min(r => r.Seconds):F2} s to {usable.Max(r => r.Seconds):F2} s") : "";
        s.AppendLine(c, $"audio        {UsableMinutes:F2} min usable ({AllMinutes:F2} min read){range}");
        var read = Records.Where(r => r.Format is not null).ToList();
        s.AppendLine(c, $"sample rates {Join(Tally(read.Select(r => $"{r.SampleRate} Hz")))}");
        s.AppendLine(c, $"channels     {Join(Tally(read.Select(r => r.Channels.ToString(c))))}");
        s.AppendLine(c, $"formats      {Join(Tally(read.Select(r => r.BitsPerSample > 0 ? $"{r.Format} {r.BitsPerSample}-bit" : r.Format!)))}");
        s.AppendLine(c, $"references   {References.Count} distinct reference clip(s)");
        s.AppendLine(c, $"speakers     {Speakers.Count} distinct speaker id(s){(Speakers.Count > 0 ? ": " + Cover(SpeakerCoverage.Where(x => x.Key != DatasetInfo.None)) : "")}");
        s.AppendLine(c, $"languages    {Cover(LanguageCoverage)}");
        foreach (string warning in VoiceCoverage.Warnings(SpeakerCoverage)) s.AppendLine(c, $"warning      {warning}");
        s.AppendLine(c, $"texts        {Count("empty_text")} empty, {Count("duplicate_text")} repeating an earlier record's text");
        s.AppendLine(c, $"findings     {(IssueCounts.Count == 0 ? "none" : Join(IssueCounts))}");
        var t = Thresholds;
        s.AppendLine(c, $"limits       duration {t.MinSeconds:0.##} s (warning) to {MaxSecondsSource} (error)");
        s.AppendLine(c, $"             warnings at: >= {t.MaxClippedShare:P1} of samples in runs of {AudioLevels.ClipRun}+ at |x| >= {AudioLevels.ClipLevel}; " +
            $"> {t.MaxSilenceShare:P0} of 20 ms frames below {AudioLevels.SilenceDb} dBFS; noise floor (10th percentile frame) above {t.MaxNoiseFloorDb} dBFS; " +
            $"below {t.MinSampleRate} Hz; codes and audio lengths {t.MaxCodeLengthMismatchSeconds:0.#} s apart");
        s.AppendLine(c, $"             NO-GO above {t.MaxErrorShare:P0} of records with errors");

        if (References.Count > 0)
        {
            s.AppendLine().AppendLine("reference clips");
            foreach (var r in References)
            {
                string what = r.Format is null ? "unreadable" : string.Create(c, $"{r.Format} {r.SampleRate} Hz x{r.Channels}, {r.Seconds:F2} s");
                string issues = r.Issues.Count > 0 ? "; " + string.Join("; ", r.Issues.Select(i => i.Message)) : "";
                s.AppendLine(c, $"  {r.Clip}: {r.Records} record(s), {what}{issues}");
            }
        }

        var shown = Records.Where(r => allRecords || r.Issues.Count > 0).ToList();
        if (shown.Count > 0 || Malformed.Count > 0)
        {
            s.AppendLine().AppendLine(allRecords ? "records" : "records with findings");
            int idWidth = Math.Clamp(shown.Select(r => r.Id.Length).DefaultIfEmpty(2).Max(), 2, 40);
            s.AppendLine(c, $"  {"id".PadRight(idWidth)} {"rate",6} {"ch",2} {"bits",4} {"sec",7} {"clip%",6} {"silent%",7} {"floor",6}  findings");
            foreach (var r in shown)
            {
                string id = r.Id.Length > idWidth ? "…" + r.Id[^(idWidth - 1)..] : r.Id.PadRight(idWidth);
                string levels = r.Levels is { } l ? $"{100 * l.ClippedShare,6:F2} {100 * l.SilenceShare,7:F1} {l.NoiseFloorDb,6:F1}" : $"{"-",6} {"-",7} {"-",6}";
                string audio = r.Format is null ? $"{"-",6} {"-",2} {"-",4} {"-",7}" : $"{r.SampleRate,6} {r.Channels,2} {(r.BitsPerSample > 0 ? r.BitsPerSample.ToString(c) : "-"),4} {r.Seconds,7:F2}";
                s.AppendLine(c, $"  {id} {audio} {levels}  {(r.Issues.Count == 0 ? "ok" : string.Join("; ", r.Issues.Select(i => $"{(i.Severity == Severity.Error ? "ERROR" : "warn")} {i.Code}: {i.Message}")))}");
            }
            foreach (var b in Malformed) s.AppendLine(c, $"  ERROR malformed_record: {b}");
        }
        return s.ToString();

        string Join(IEnumerable<KeyValuePair<string, int>> counts) => string.Join(", ", counts.Select(p => $"{p.Key}: {p.Value}"));
        string Cover(IEnumerable<Coverage> rows) => string.Join(", ", rows.Select(x => string.Create(c, $"{x.Key}: {x.Records} ({x.Seconds / 60:F1} min)")));
        int Count(string code) => Records.Count(r => r.Issues.Any(i => i.Code == code));
    }

    IReadOnlyList<KeyValuePair<string, int>> Speakers => Tally(Records.Select(r => r.SpeakerId).OfType<string>());

    IReadOnlyList<KeyValuePair<string, int>> Languages => Tally(Records.Select(r => r.Language ?? DatasetInfo.None));

    /// <summary>Usable records and their audio per speaker and per language.</summary>
    public IReadOnlyList<Coverage> SpeakerCoverage => VoiceCoverage.Of(Usable.Select(r => (r.SpeakerId, r.Seconds)));
    public IReadOnlyList<Coverage> LanguageCoverage => VoiceCoverage.Of(Usable.Select(r => (r.Language, r.Seconds)));

    public string ToJson()
    {
        static JsonObject? Levels(AudioLevels? l) => l is null ? null : new JsonObject
        {
            ["clipped_share"] = l.ClippedShare, ["clipped_runs"] = l.ClippedRuns, ["peak_dbfs"] = l.PeakDb,
            ["silence_share"] = l.SilenceShare, ["noise_floor_dbfs"] = l.NoiseFloorDb, ["speech_dbfs"] = l.SpeechDb,
        };
        static JsonArray Issues(IEnumerable<PreflightIssue> issues) =>
            new(issues.Select(i => (JsonNode)new JsonObject
            {
                ["severity"] = i.Severity == Severity.Error ? "error" : "warning", ["code"] = i.Code, ["message"] = i.Message,
            }).ToArray());
        static JsonObject Counts(IEnumerable<KeyValuePair<string, int>> counts)
        {
            var o = new JsonObject();
            foreach (var (k, v) in counts) o[k] = v;
            return o;
        }
        var usable = Usable.ToList();
        var t = Thresholds;
        return new JsonObject
        {
            ["path"] = Path,
            ["format"] = Format.ToString().ToLowerInvariant(),
            ["verdict"] = Name(Verdict),
            ["reasons"] = new JsonArray(Reasons.Select(r => (JsonNode)JsonValue.Create(r)!).ToArray()),
            ["exit_code"] = ExitCode,
            ["blank_lines"] = BlankLines,
            ["totals"] = new JsonObject
            {
                ["records"] = Total, ["usable"] = usable.Count, ["with_errors"] = WithErrors, ["with_warnings_only"] = WithWarnings,
                ["usable_minutes"] = UsableMinutes, ["minutes_read"] = AllMinutes,
                ["min_seconds"] = usable.Count > 0 ? usable.Min(r => r.Seconds) : 0, ["max_seconds"] = usable.Count > 0 ? usable.Max(r => r.Seconds) : 0,
                ["sample_rates"] = Counts(Tally(Records.Where(r => r.Format is not null).Select(r => r.SampleRate.ToString(CultureInfo.InvariantCulture)))),
                ["channels"] = Counts(Tally(Records.Where(r => r.Format is not null).Select(r => r.Channels.ToString(CultureInfo.InvariantCulture)))),
                ["reference_clips"] = References.Count,
                ["speakers"] = Counts(Speakers),
                ["languages"] = Counts(Languages),
                ["speaker_coverage"] = VoiceCoverage.ToJson(SpeakerCoverage),
                ["language_coverage"] = VoiceCoverage.ToJson(LanguageCoverage),
                ["speaker_warnings"] = new JsonArray(VoiceCoverage.Warnings(SpeakerCoverage).Select(w => (JsonNode)JsonValue.Create(w)!).ToArray()),
                ["findings"] = Counts(IssueCounts),
            },
            ["thresholds"] = new JsonObject
            {
                ["min_seconds"] = t.MinSeconds, ["max_seconds"] = t.MaxSeconds, ["max_positions"] = t.MaxPositions, ["max_seconds_source"] = MaxSecondsSource,
                ["clip_level"] = AudioLevels.ClipLevel, ["clip_run"] = AudioLevels.ClipRun, ["max_clipped_share"] = t.MaxClippedShare,
                ["frame_seconds"] = AudioLevels.FrameSeconds, ["silence_dbfs"] = AudioLevels.SilenceDb, ["max_silence_share"] = t.MaxSilenceShare,
                ["max_noise_floor_dbfs"] = t.MaxNoiseFloorDb, ["min_sample_rate"] = t.MinSampleRate,
                ["max_code_length_mismatch_seconds"] = t.MaxCodeLengthMismatchSeconds, ["max_error_share"] = t.MaxErrorShare,
            },
            ["references"] = new JsonArray(References.Select(r => (JsonNode)new JsonObject
            {
                ["clip"] = r.Clip, ["records"] = r.Records, ["format"] = r.Format, ["sample_rate"] = r.SampleRate, ["channels"] = r.Channels,
                ["seconds"] = r.Seconds, ["levels"] = Levels(r.Levels), ["issues"] = Issues(r.Issues),
            }).ToArray()),
            ["records"] = new JsonArray(Records.Select(r => (JsonNode)new JsonObject
            {
                ["id"] = r.Id, ["where"] = r.Where, ["audio"] = r.Clip, ["format"] = r.Format, ["sample_rate"] = r.SampleRate,
                ["channels"] = r.Channels, ["bits_per_sample"] = r.BitsPerSample, ["seconds"] = r.Seconds, ["levels"] = Levels(r.Levels),
                ["ref_audio"] = r.Reference, ["speaker_id"] = r.SpeakerId, ["language"] = r.Language, ["issues"] = Issues(r.Issues),
            }).ToArray()),
            ["malformed"] = new JsonArray(Malformed.Select(b => (JsonNode)new JsonObject
            {
                ["source"] = b.Source, ["line"] = b.Line, ["field"] = b.Field, ["reason"] = b.Reason,
            }).ToArray()),
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    }
}

/// <summary>Checks a speech dataset before preparation and training (<c>qwen3tts preflight</c>): reads every record
/// with <see cref="RawSpeechData"/>, decodes every clip and reference clip once, and judges them by
/// <see cref="PreflightThresholds"/>.
/// <para>Errors (the record cannot be trained on): malformed record, missing or unreadable audio, empty text, a clip
/// longer than the limit, a silent clip (no 20 ms frame at -50 dBFS or above), audio_codes that are not [frames][16]
/// ids in 0..2047, no reference clip (neither ref_audio nor --ref_audio), an unreadable or silent reference clip.
/// Warnings: shorter than the minimum, clipping, mostly silent, a high noise floor, a low sample rate, a text that
/// repeats an earlier record's (case and spacing ignored), codes whose length does not match the audio.</para>
/// <para>Verdict: NO-GO when no record is usable or more than <see cref="PreflightThresholds.MaxErrorShare"/> of the
/// records have errors; GO-WITH-CAUTION when any record has an error or a warning; GO otherwise.</para></summary>
public static class Preflight
{
    /// <summary>Codec frames per second of the 12 Hz tokenizer.</summary>
    public const double FramesPerSecond = DatasetInfo.FramesPerSecond;

    /// <summary>Thresholds for a model: <paramref name="modelSpec"/> is a model directory, its config.json, or a preset
    /// (tiny, 0.6b, 1.7b). Clips are limited by the talker's context; <paramref name="maxSeconds"/> may lower that.</summary>
    public static PreflightThresholds ForModel(PreflightThresholds t, string modelSpec, double? maxSeconds = null)
    {
        var rules = RecordRules.ForModel(modelSpec, RecordRules.FrameLimit(null, maxSeconds));
        var talker = rules.Config!.Talker;
        // The longest clip the context could hold with the shortest text: an upper bound; each record is judged exactly by Rules.
        double context = (talker.MaxPositionEmbeddings - Qwen3Tts.Model.Sft.SftCollate.SequenceLength(Qwen3Tts.Model.Sft.SftCollate.MinTextIds, 0)) / FramesPerSecond;
        return t with
        {
            Rules = rules,
            MaxSeconds = Math.Min(maxSeconds ?? context, context),
            MaxSecondsSource = maxSeconds is double m && m < context
                ? "--max_seconds"
                : string.Create(CultureInfo.InvariantCulture, $"talker max_position_embeddings {talker.MaxPositionEmbeddings} of {modelSpec}"),
        };
    }

    /// <summary>Runs every check. <paramref name="refAudio"/> is the reference clip for records that name none.</summary>
    public static PreflightReport Run(string path, PreflightThresholds? thresholds = null, string? refAudio = null, string? split = null)
    {
        var t = thresholds ?? new PreflightThresholds();
        var format = RawSpeechData.Detect(path);
        var refusals = new Refusals(skip: true);
        var records = RawSpeechData.Read(path, refusals, split, t.MaxLineBytes);
        var malformed = refusals.Kept;
        var fallback = refAudio is null ? null : AudioSource.FromFile(Path.GetFullPath(refAudio));

        // Each distinct reference clip is decoded once.
        var references = new ConcurrentDictionary<string, Lazy<PreflightReference>>(StringComparer.Ordinal);
        PreflightReference Reference(AudioSource clip) => references.GetOrAdd(clip.Key,
            _ => new Lazy<PreflightReference>(() => CheckReference(clip, t))).Value;

        var results = new PreflightRecord[records.Count];
        Parallel.For(0, records.Count, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount },
            i => results[i] = CheckRecord(records[i], t, records[i].RefAudio ?? fallback, Reference));

        // Prepared data (some records carry codes): a record without codes cannot train, as the trainer's reader says.
        if (records.Any(r => r.AudioCodes is not null))
            for (int i = 0; i < results.Length; i++)
                if (records[i].AudioCodes is null)
                    results[i] = results[i] with
                    {
                        Issues = [.. results[i].Issues, new(Severity.Error, "codes_missing", "no audio_codes where the other records have them; prepare it again")],
                    };

        // Texts that repeat an earlier record's, ignoring case and spacing.
        var firstWith = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < results.Length; i++)
        {
            string key = NormalizeText(records[i].Text);
            if (key.Length == 0) continue;
            if (firstWith.TryGetValue(key, out var first))
                results[i] = results[i] with
                {
                    Issues = [.. results[i].Issues, new(Severity.Warning, "duplicate_text", $"the same text as record {first}")],
                };
            else firstWith[key] = records[i].Id;
        }

        var refs = references.Values.Select(l => l.Value).ToList();
        var uses = results.Where(r => r.Reference is not null).GroupBy(r => r.Reference!).ToDictionary(g => g.Key, g => g.Count());
        refs = refs.Select(r => r with { Records = uses.GetValueOrDefault(r.Clip) }).OrderByDescending(r => r.Records).ThenBy(r => r.Clip, StringComparer.Ordinal).ToList();

        string maxSource = string.Create(CultureInfo.InvariantCulture, $"{t.MaxSeconds:0.##} s ({t.MaxSecondsSource})") + (t.MaxPositions is int positions
            ? string.Create(CultureInfo.InvariantCulture,
                $" and, as the trainer judges it, the training sequence (the text's chat ids + frames + prompt rows) within the talker's {positions} positions")
            : "");
        var (verdict, reasons) = Judge(results, malformed, t);
        return new PreflightReport(path, format, t, maxSource, results, malformed, refs, verdict, reasons) { BlankLines = refusals.BlankLineWarning };
    }

    static (PreflightVerdict, IReadOnlyList<string>) Judge(PreflightRecord[] records, IReadOnlyList<BadRecord> malformed, PreflightThresholds t)
    {
        int total = records.Length + malformed.Count;
        int errors = records.Count(r => r.HasErrors) + malformed.Count;
        int warnings = records.Count(r => !r.HasErrors && r.HasWarnings);
        int usable = records.Length - records.Count(r => r.HasErrors);
        var reasons = new List<string>();
        double share = total == 0 ? 1 : (double)errors / total;
        if (usable == 0) reasons.Add(total == 0 ? "the dataset has no records" : "no record is usable");
        if (share > t.MaxErrorShare) reasons.Add($"{errors} of {total} records ({share:P1}) have errors, more than {t.MaxErrorShare:P0}");
        if (reasons.Count > 0) return (PreflightVerdict.NoGo, reasons);
        if (errors > 0) reasons.Add($"{errors} of {total} records ({share:P1}) have errors and would be skipped");
        if (warnings > 0) reasons.Add($"{warnings} records have warnings");
        return (reasons.Count > 0 ? PreflightVerdict.GoWithCaution : PreflightVerdict.Go, reasons);
    }

    /// <summary>Lower case, whitespace runs collapsed, trimmed.</summary>
    public static string NormalizeText(string text) =>
        string.Join(' ', text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)).ToLowerInvariant();

    static PreflightRecord CheckRecord(RawSpeechRecord r, PreflightThresholds t, AudioSource? reference, Func<AudioSource, PreflightReference> check)
    {
        var issues = new List<PreflightIssue>();
        void Error(string code, string message) => issues.Add(new(Severity.Error, code, message));
        void Warn(string code, string message) => issues.Add(new(Severity.Warning, code, message));

        if (string.IsNullOrWhiteSpace(r.Text)) Error("empty_text", "the text is empty; there is nothing to learn to say");
        if (!t.AllowOutsidePaths && RawSpeechData.OutsidePath(r) is { } outside)
        {
            // Not read at all: a dataset must not make preflight open a file elsewhere on the machine.
            Error("path_outside", $"{outside.Field}: {outside.Reason}");
            return new PreflightRecord(r.Id, r.Where, r.Audio.Name, null, 0, 0, 0, 0, null, null, r.SpeakerId, r.Language, issues);
        }

        AudioChannels? audio = null;
        AudioLevels? levels = null;
        if (r.Audio.Path is { } p && !File.Exists(p)) Error("missing_audio", $"no such file: {p}");
        else
        {
            try
            {
                audio = r.Audio.ReadChannels();
                levels = AudioLevels.Measure(audio);
            }
            catch (AudioException e) { Error("unreadable_audio", e.Message); }
        }

        if (audio is not null && levels is not null)
        {
            double seconds = audio.DurationSeconds;
            if (seconds < t.MinSeconds) Warn("too_short", $"{seconds:F2} s is shorter than {t.MinSeconds} s");
            if (t.Rules is null && seconds > t.MaxSeconds) Error("too_long", $"{seconds:F1} s is longer than the {t.MaxSeconds:0.##} s limit; split the clip");
            if (levels.SpeechDb < AudioLevels.SilenceDb)
                Error("silent", $"no 20 ms frame reaches {AudioLevels.SilenceDb} dBFS (peak {levels.PeakDb:F1} dBFS)");
            else
            {
                if (levels.SilenceShare > t.MaxSilenceShare)
                    Warn("mostly_silent", $"{levels.SilenceShare:P0} of 20 ms frames are below {AudioLevels.SilenceDb} dBFS; trim the silence");
                if (levels.NoiseFloorDb > t.MaxNoiseFloorDb)
                    Warn("noisy", $"noise floor {levels.NoiseFloorDb:F1} dBFS (10th percentile of 20 ms frames) is above {t.MaxNoiseFloorDb} dBFS, or the clip has no pauses");
            }
            if (levels.ClippedShare >= t.MaxClippedShare)
                Warn("clipping", $"{levels.ClippedShare:P2} of samples lie in {levels.ClippedRuns} flat runs at full scale (|x| >= {AudioLevels.ClipLevel})");
            if (audio.SampleRate < t.MinSampleRate)
                Warn("low_sample_rate", $"{audio.SampleRate} Hz: nothing above {audio.SampleRate / 2} Hz to learn (the codec works at 24 kHz)");
        }

        if (r.AudioCodes is { } codes) CheckCodes(codes, audio?.DurationSeconds, t, Error, Warn);

        // The trainer's own rules (text ids, the training sequence within the context, --max_seconds), on the codes'
        // frames or, before prepare, the frames the audio will encode to.
        if (HasMalformedTextIds(r)) Error("text_ids_malformed", "text_ids: expected an array of integer token ids");
        int? frames = r.AudioCodes is { Length: > 0 } c ? c.Length : audio is null ? null : RecordRules.FramesOf(audio.DurationSeconds);
        if (frames is int n)
        {
            if (t.Rules is not null && !issues.Any(i => i.Code == "empty_text") && t.Rules.Problem(r.Text, TextIds(r), n, r.Language) is { } problem)
                Error(problem.Field.StartsWith("text_ids", StringComparison.Ordinal) ? "text_out_of_vocabulary" : "too_long",
                    $"{problem.Field}: {problem.Reason}; split the clip");
            else if (t.Rules is null && r.AudioCodes is not null && n / FramesPerSecond > t.MaxSeconds)
                Error("too_long", $"{n} frames of audio_codes ({n / FramesPerSecond:F1} s) are longer than the {t.MaxSeconds:0.##} s limit; split the clip");
        }

        string? referenceKey = null;
        if (reference is null)
        {
            if (t.RequireReference) Error("no_ref_audio", "no ref_audio, and no --ref_audio was given; the speaker embedding needs a reference clip");
        }
        else
        {
            var refResult = check(reference);
            referenceKey = refResult.Clip;
            foreach (var issue in refResult.Issues)
                issues.Add(issue with { Code = "ref_" + issue.Code, Message = $"reference {refResult.Clip}: {issue.Message}" });
        }

        return new PreflightRecord(r.Id, r.Where, r.Audio.Name, audio?.Format.ToString().ToLowerInvariant(), audio?.SampleRate ?? 0,
            audio?.Channels.Length ?? 0, audio?.BitsPerSample ?? 0, audio?.DurationSeconds ?? 0, levels, referenceKey, r.SpeakerId, r.Language, issues);
    }

    /// <summary>A record's pre-tokenized <c>text_ids</c> (kept as written among its other fields), which the trainer uses
    /// instead of tokenizing the text; null when it has none or they are not a list of integers (the trainer's reader
    /// refuses those: see <see cref="JsonlTrainingData"/>).</summary>
    static IReadOnlyList<int>? TextIds(RawSpeechRecord r)
    {
        if (r.Extra?.GetValueOrDefault("text_ids") is not { } json) return null;
        try { return JsonSerializer.Deserialize<int[]>(json); }
        catch (JsonException) { return null; }
    }

    static bool HasMalformedTextIds(RawSpeechRecord r) =>
        r.Extra is { } extra && extra.TryGetValue("text_ids", out var json) && json is not null && TextIds(r) is null;

    static void CheckCodes(long?[]?[] codes, double? seconds, PreflightThresholds t, Action<string, string> error, Action<string, string> warn)
    {
        if (codes.Length == 0) { error("codes_malformed", "audio_codes is empty"); return; }
        var bounds = t.CodeBounds;
        int badFrames = codes.Count(f => f is null || f.Length != bounds.Codebooks);
        long nulls = codes.Where(f => f is not null).Sum(f => f!.LongCount(c => c is null));
        var outside = codes.SelectMany((f, i) => (f ?? []).Select((c, k) => (i, k, c)))
            .Where(x => x.c is long c && x.k < bounds.Codebooks && bounds.Problem(c, x.k) is not null).ToList();
        if (badFrames > 0) error("codes_malformed", $"{badFrames} of {codes.Length} frames do not hold {bounds.Codebooks} codes");
        if (nulls > 0) error("codes_malformed", $"{nulls} codes are not integers");
        if (outside.Count > 0)
        {
            var (i, k, c) = outside[0];
            error("codes_out_of_range", $"{outside.Count} codes lie outside their codebook's range (first: audio_codes[{i}][{k}] {bounds.Problem(c!.Value, k)})");
        }
        if (seconds is double s && Math.Abs(codes.Length / FramesPerSecond - s) > t.MaxCodeLengthMismatchSeconds)
            warn("codes_length_mismatch", $"{codes.Length} frames ({codes.Length / FramesPerSecond:F1} s) for {s:F1} s of audio");
    }

    static PreflightReference CheckReference(AudioSource clip, PreflightThresholds t)
    {
        var issues = new List<PreflightIssue>();
        if (clip.Path is { } p && !File.Exists(p))
        {
            issues.Add(new(Severity.Error, "missing_audio", $"no such file: {p}"));
            return new PreflightReference(clip.Name, 0, null, 0, 0, 0, null, issues);
        }
        try
        {
            var audio = clip.ReadChannels();
            var levels = AudioLevels.Measure(audio);
            if (levels.SpeechDb < AudioLevels.SilenceDb)
                issues.Add(new(Severity.Error, "silent", $"no 20 ms frame reaches {AudioLevels.SilenceDb} dBFS"));
            if (audio.DurationSeconds < 1)
                issues.Add(new(Severity.Warning, "too_short", $"{audio.DurationSeconds:F2} s; a reference clip of a few seconds of clean speech gives a steadier voice"));
            if (levels.ClippedShare >= t.MaxClippedShare)
                issues.Add(new(Severity.Warning, "clipping", $"{levels.ClippedShare:P2} of samples lie in flat runs at full scale"));
            return new PreflightReference(clip.Name, 0, audio.Format.ToString().ToLowerInvariant(), audio.SampleRate, audio.Channels.Length,
                audio.DurationSeconds, levels, issues);
        }
        catch (AudioException e)
        {
            issues.Add(new(Severity.Error, "unreadable_audio", e.Message));
            return new PreflightReference(clip.Name, 0, null, 0, 0, 0, null, issues);
        }
    }
}
