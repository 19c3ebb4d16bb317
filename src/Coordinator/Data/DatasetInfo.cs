using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Qwen3Tts.Coordinator.Data;

/// <summary>Records and seconds of audio of one speaker or language.</summary>
public sealed record Coverage(string Key, int Records, double Seconds);

/// <summary>Per speaker and per language: how many records and how much audio, and the speakers with too little audio
/// for a voice of their own (what <c>info</c> and <c>preflight</c> report before a --multi_speaker run).</summary>
public static class VoiceCoverage
{
    /// <summary>Less audio than this for a speaker is a warning.</summary>
    public const double MinSpeakerSeconds = 60;

    public static IReadOnlyList<Coverage> Of(IEnumerable<(string? Key, double Seconds)> items) =>
        items.GroupBy(x => x.Key ?? DatasetInfo.None).Select(g => new Coverage(g.Key, g.Count(), g.Sum(x => x.Seconds)))
            .OrderByDescending(c => c.Seconds).ThenBy(c => c.Key, StringComparer.Ordinal).ToList();

    /// <summary>One line per named speaker with less than <see cref="MinSpeakerSeconds"/> of audio.</summary>
    public static IReadOnlyList<string> Warnings(IReadOnlyList<Coverage> speakers) =>
        speakers.Where(c => c.Key != DatasetInfo.None && c.Seconds < MinSpeakerSeconds)
            .Select(c => string.Create(CultureInfo.InvariantCulture,
                $"speaker {c.Key}: {c.Seconds:F1} s of audio in {c.Records} record(s), less than a minute; too little to learn a voice of its own"))
            .ToList();

    public static JsonObject ToJson(IReadOnlyList<Coverage> rows)
    {
        var o = new JsonObject();
        foreach (var c in rows) o[c.Key] = new JsonObject { ["records"] = c.Records, ["seconds"] = c.Seconds };
        return o;
    }
}

/// <summary>One bar of the code-length histogram: records with <see cref="From"/> ≤ frames ≤ <see cref="To"/>.</summary>
public sealed record LengthBin(int From, int To, int Count);

/// <summary>What <c>qwen3tts info PATH</c> prints about a training set (JSONL or Parquet): how many records, which
/// languages and speakers, and how long the target audio is, in codec frames and seconds (12.5 frames a second).
/// Records with no language or speaker are counted under <see cref="None"/>.</summary>
public sealed record DatasetInfo(
    string Path,
    DataFormat Format,
    int Count,
    int Skipped,
    IReadOnlyList<KeyValuePair<string, int>> Languages,
    IReadOnlyList<KeyValuePair<string, int>> Speakers,
    long TotalFrames,
    int MinFrames,
    int MaxFrames,
    IReadOnlyList<LengthBin> Histogram)
{
    /// <summary>Codec frames per second of the 12 Hz tokenizer.</summary>
    public const double FramesPerSecond = 12.5;

    /// <summary>Histogram bars.</summary>
    public const int Bins = 10;

    /// <summary>The key under which records without a language or speaker are counted.</summary>
    public const string None = "(none)";

    /// <summary>The records left out, each with its file, line (or row), field and reason.</summary>
    public IReadOnlyList<BadRecord> Malformed { get; init; } = [];

    public double TotalSeconds => TotalFrames / FramesPerSecond;
    public double MeanFrames => Count == 0 ? 0 : (double)TotalFrames / Count;
    public double MinSeconds => MinFrames / FramesPerSecond;
    public double MaxSeconds => MaxFrames / FramesPerSecond;
    public double MeanSeconds => MeanFrames / FramesPerSecond;

    /// <summary>Records and seconds per speaker and per language, most audio first.</summary>
    public IReadOnlyList<Coverage> SpeakerCoverage { get; init; } = [];
    public IReadOnlyList<Coverage> LanguageCoverage { get; init; } = [];

    /// <summary>Records with a reference transcript (ref_text), which --train_prompt icl trains on the ICL prompt, and
    /// those of them that carry their reference clip's codes (ref_codes; the others are encoded when training starts).</summary>
    public int WithRefText { get; init; }
    public int WithRefCodes { get; init; }

    /// <summary>Blank lines met (a warning: "train.jsonl: blank lines 3, 9 skipped"), or null.</summary>
    public string? BlankLines { get; init; }

    /// <summary>Reads <paramref name="path"/> leniently and summarizes the records the trainer would take: those the reader
    /// or <paramref name="rules"/> (the trainer's, with a model; default: the speech tokenizer's code ranges) refuse are
    /// counted in <see cref="Skipped"/> and listed in <see cref="Malformed"/>.</summary>
    public static DatasetInfo Compute(string path, string? split = null, RecordRules? rules = null, int maxLineBytes = JsonlTrainingData.MaxLineBytes)
    {
        var refusals = new Refusals(skip: true);
        var records = TrainingData.Read(path, refusals, split, rules?.Bounds, maxLineBytes);
        if (rules is not null) records = rules.Apply(records, refusals);
        return Of(path, TrainingData.Detect(path), records, refusals.Count) with { Malformed = refusals.Kept, BlankLines = refusals.BlankLineWarning };
    }

    /// <summary>The summary of records already read. Bins are equal integer ranges over [min, max]: each
    /// ceil((max - min + 1) / 10) frames wide, fewer than 10 when the range is narrower.</summary>
    public static DatasetInfo Of(string path, DataFormat format, IReadOnlyList<TrainingRecord> records, int skipped)
    {
        static IReadOnlyList<KeyValuePair<string, int>> Tally(IEnumerable<string?> keys) =>
            keys.GroupBy(k => k ?? None).Select(g => KeyValuePair.Create(g.Key, g.Count()))
                .OrderByDescending(p => p.Value).ThenBy(p => p.Key, StringComparer.Ordinal).ToList();

        var frames = records.Select(r => r.AudioCodes.Frames).ToList();
        int min = frames.Count == 0 ? 0 : frames.Min(), max = frames.Count == 0 ? 0 : frames.Max();
        var bins = new List<LengthBin>();
        if (frames.Count > 0)
        {
            int width = (max - min + 1 + Bins - 1) / Bins;
            for (int from = min; from <= max; from += width)
            {
                int to = Math.Min(from + width - 1, max);
                bins.Add(new LengthBin(from, to, frames.Count(f => f >= from && f <= to)));
            }
        }
        return new DatasetInfo(path, format, records.Count, skipped, Tally(records.Select(r => r.Language)),
            Tally(records.Select(r => r.SpeakerId)), frames.Sum(f => (long)f), min, max, bins)
        {
            SpeakerCoverage = VoiceCoverage.Of(records.Select(r => (r.SpeakerId, r.AudioCodes.Frames / FramesPerSecond))),
            LanguageCoverage = VoiceCoverage.Of(records.Select(r => (r.Language, r.AudioCodes.Frames / FramesPerSecond))),
            WithRefText = records.Count(r => !string.IsNullOrWhiteSpace(r.RefText)),
            WithRefCodes = records.Count(r => !string.IsNullOrWhiteSpace(r.RefText) && r.RefCodes is not null),
        };
    }

    /// <summary>A plain-text report: totals, then the languages, speakers and length histogram as tables.</summary>
    public string ToText()
    {
        var c = CultureInfo.InvariantCulture;
        var s = new StringBuilder();
        s.AppendLine(c, $"{Path} ({Format.ToString().ToLowerInvariant()})");
        s.AppendLine(c, $"records   {Count}{(Skipped > 0 ? $" usable; {Skipped} refused (the trainer stops on them unless --skip_bad_samples):" : "")}");
        const int listed = Refusals.Listed;
        foreach (var bad in Malformed.Take(listed)) s.AppendLine(c, $"  refused {bad}");
        if (Malformed.Count > listed) s.AppendLine(c, $"  ... and {Malformed.Count - listed} more (--json lists every one)");
        if (BlankLines is not null) s.AppendLine(c, $"warning   {BlankLines}");
        s.AppendLine(c, $"frames    {TotalFrames} total, min {MinFrames}, mean {MeanFrames:F1}, max {MaxFrames}");
        s.AppendLine(c, $"seconds   {TotalSeconds:F1} total ({TotalSeconds / 3600:F2} h), min {MinSeconds:F2}, mean {MeanSeconds:F2}, max {MaxSeconds:F2}");
        if (WithRefText > 0)
            s.AppendLine(c, $"icl       {WithRefText} records with a ref_text, {WithRefCodes} of them with ref_codes (--train_prompt icl or mixed trains them on the ICL prompt)");
        void Table(string title, IReadOnlyList<Coverage> rows)
        {
            s.AppendLine().AppendLine(c, $"{title,-24} {"records",8} {"seconds",10}");
            foreach (var row in rows) s.AppendLine(c, $"{row.Key,-24} {row.Records,8} {row.Seconds,10:F1}");
        }
        Table("language", LanguageCoverage);
        Table("speaker", SpeakerCoverage);
        foreach (string warning in VoiceCoverage.Warnings(SpeakerCoverage)) s.AppendLine(c, $"warning   {warning}");
        s.AppendLine().AppendLine(c, $"{"frames",-13} {"seconds",-15} {"records",8}");
        int peak = Histogram.Count == 0 ? 0 : Histogram.Max(b => b.Count);
        foreach (var b in Histogram)
            s.AppendLine(c, $"{$"{b.From}-{b.To}",-13} {$"{b.From / FramesPerSecond:F1}-{b.To / FramesPerSecond:F1}",-15} {b.Count,8} {new string('#', peak == 0 ? 0 : (int)Math.Round(30.0 * b.Count / peak))}");
        return s.ToString();
    }

    /// <summary>The same numbers as a JSON object (frames, seconds, histogram bins with from/to/count).</summary>
    public string ToJson()
    {
        static JsonObject Counts(IReadOnlyList<KeyValuePair<string, int>> rows)
        {
            var o = new JsonObject();
            foreach (var (key, n) in rows) o[key] = n;
            return o;
        }
        var histogram = new JsonArray();
        foreach (var b in Histogram) histogram.Add(new JsonObject { ["from"] = b.From, ["to"] = b.To, ["count"] = b.Count });
        return new JsonObject
        {
            ["path"] = Path,
            ["format"] = Format.ToString().ToLowerInvariant(),
            ["records"] = Count,
            ["skipped"] = Skipped,
            ["blank_lines"] = BlankLines,
            ["malformed"] = new JsonArray(Malformed.Select(b => (JsonNode)new JsonObject
                { ["source"] = b.Source, ["line"] = b.Line, ["field"] = b.Field, ["reason"] = b.Reason }).ToArray()),
            ["languages"] = Counts(Languages),
            ["speakers"] = Counts(Speakers),
            ["speaker_coverage"] = VoiceCoverage.ToJson(SpeakerCoverage),
            ["language_coverage"] = VoiceCoverage.ToJson(LanguageCoverage),
            ["warnings"] = new JsonArray(VoiceCoverage.Warnings(SpeakerCoverage).Select(w => (JsonNode)JsonValue.Create(w)!).ToArray()),
            ["frames"] = new JsonObject { ["total"] = TotalFrames, ["min"] = MinFrames, ["mean"] = MeanFrames, ["max"] = MaxFrames },
            ["seconds"] = new JsonObject { ["total"] = TotalSeconds, ["min"] = MinSeconds, ["mean"] = MeanSeconds, ["max"] = MaxSeconds },
            ["frames_per_second"] = FramesPerSecond,
            ["ref_text"] = WithRefText,
            ["ref_codes"] = WithRefCodes,
            ["histogram"] = histogram,
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
