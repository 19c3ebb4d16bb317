namespace Qwen3Tts.Coordinator.Data;

/// <summary>One training record, validated: a line of a JSONL file (see <see cref="JsonlTrainingData"/>) or a row of a
/// Parquet file (see <see cref="ParquetTrainingData"/>).</summary>
/// <param name="Source">the JSONL or Parquet file the record came from, as given to the reader.</param>
/// <param name="Line">1-based line number in <paramref name="Source"/>; for Parquet the row's index within the file
/// (across row groups) plus one, so that reports keyed by line keep working.</param>
/// <param name="Audio">target audio path, as written (its codes are already in <paramref name="AudioCodes"/>); empty when a
/// Parquet row has none.</param>
/// <param name="Text">the utterance's text.</param>
/// <param name="AudioCodes">codec ids of the target audio, [frames, codebooks].</param>
/// <param name="RefAudio">reference clip for the speaker embedding, resolved to a full path
/// (relative paths are taken from the JSONL file's folder).</param>
/// <param name="TextIds">pre-tokenized full chat ids; when present they replace tokenizing <paramref name="Text"/>.</param>
/// <param name="RefCodes">the reference clip's codec frames ([frames][16] <c>ref_codes</c>), which ICL training puts in the
/// prompt before the target; null when the record has none (they are then encoded from the clip when needed).</param>
/// <param name="Extra">the record's other string fields by name (e.g. a dataset's own speaker column).</param>
/// <param name="RefAudioBytes">the reference clip's encoded file bytes (WAV, FLAC or MP3), when the data carries them inline (a Parquet
/// <c>ref_audio</c> given as the Hugging Face audio struct); <paramref name="RefAudio"/> then only names the clip.</param>
public sealed record TrainingRecord(
    string Source,
    int Line,
    string Audio,
    string Text,
    CodeGrid AudioCodes,
    string RefAudio,
    string? RefText = null,
    string? Language = null,
    string? SpeakerId = null,
    string? Gender = null,
    string? AgeRange = null,
    IReadOnlyList<int>? TextIds = null,
    byte[]? RefAudioBytes = null,
    IReadOnlyDictionary<string, string>? Extra = null,
    CodeGrid? RefCodes = null)
{
    /// <summary>A string field by its name in the data: the ones with a place of their own, else <see cref="Extra"/>
    /// (every other string field of the line or column of the row); null where the record has none.</summary>
    public string? Field(string name) => name switch
    {
        "text" => Text,
        "ref_text" => RefText,
        "language" => Language,
        "speaker_id" => SpeakerId,
        "gender" => Gender,
        "age_range" => AgeRange,
        _ => Extra?.GetValueOrDefault(name),
    };

    /// <summary>"file:line" ("file: row N" for Parquet), the prefix of every message about this record.</summary>
    public string Where => DataLocation.Format(Source, Line);

    /// <summary>The length the plan groups batches by: codec frames. A sample's sequence is its text tokens + frames + 8
    /// rows and frames dominate (12.5 per second of speech against a few text tokens); frames need no tokenizer, so a
    /// standalone coordinator plans from the data alone, exactly as the ranks do.</summary>
    public int PlanLength => AudioCodes.Frames;
}

/// <summary>How messages name a record: <c>train.jsonl:17</c> for a JSONL line, <c>train-00000-of-00001.parquet: row 16</c>
/// for a Parquet row (whose <see cref="TrainingRecord.Line"/> is the 0-based row index plus one).</summary>
public static class DataLocation
{
    public static bool IsParquet(string source) => source.EndsWith(".parquet", StringComparison.OrdinalIgnoreCase);

    public static string Format(string source, int line) => IsParquet(source) ? $"{source}: row {line - 1}" : $"{source}:{line}";
}

/// <summary>An immutable [frames, codebooks] grid of codec ids, each in [0, 32768), stored as 16-bit values.</summary>
public sealed class CodeGrid
{
    readonly short[] codes; // row-major [frames, codebooks]

    /// <summary>Copies <paramref name="codes"/>; throws if a value does not fit in 16 bits.</summary>
    public CodeGrid(long[,] codes)
    {
        ArgumentNullException.ThrowIfNull(codes);
        Frames = codes.GetLength(0);
        Codebooks = codes.GetLength(1);
        this.codes = new short[Frames * Codebooks];
        for (int f = 0; f < Frames; f++)
            for (int g = 0; g < Codebooks; g++)
            {
                long v = codes[f, g];
                if (v < 0 || v > short.MaxValue)
                    throw new ArgumentOutOfRangeException(nameof(codes), v, $"codes[{f}][{g}] is {v}, outside [0, {short.MaxValue}]");
                this.codes[f * Codebooks + g] = (short)v;
            }
    }

    public int Frames { get; }
    public int Codebooks { get; }
    public int this[int frame, int codebook] => codes[frame * Codebooks + codebook];

    /// <summary>A fresh [frames, codebooks] copy, as <see cref="Qwen3Tts.Model.Sft.SftSample.AudioCodes"/> wants it.</summary>
    public long[,] ToArray()
    {
        var result = new long[Frames, Codebooks];
        for (int f = 0; f < Frames; f++)
            for (int g = 0; g < Codebooks; g++)
                result[f, g] = codes[f * Codebooks + g];
        return result;
    }
}

/// <summary>A line a lenient read skipped, and why.</summary>
public sealed record BadRecord(string Source, int Line, string Field, string Reason)
{
    public override string ToString() => $"{DataLocation.Format(Source, Line)}: {Field}: {Reason}";
}

/// <summary>A training-data line that cannot be used. The message names file, line and field, e.g.
/// <c>train.jsonl:17: audio_codes[3][16]: expected 16 codebooks, found 17</c>, or for Parquet file, row and column,
/// e.g. <c>train-00001-of-00004.parquet: row 17: audio_codes[3]: expected 16 codebooks, found 15</c>. A run that
/// refuses several records says how many in its message and lists the first <see cref="Refusals.Listed"/> in
/// <see cref="Details"/>.</summary>
public sealed class DataException : Qwen3Tts.Model.UserInputException
{
    readonly IReadOnlyList<BadRecord> listed;

    public DataException(BadRecord bad) : base(bad.ToString()) => (Bad, listed, Count) = (bad, [bad], 1);

    public DataException(string source, int line, string field, string reason) : this(new BadRecord(source, line, field, reason)) { }

    /// <summary>Several refusals at once: <paramref name="count"/> in all, from <paramref name="files"/> files, the first
    /// of them in <paramref name="listed"/>. The message names the file when there is one.</summary>
    public DataException(IReadOnlyList<BadRecord> listed, int count, int files, string hint)
        : base($"{(files == 1 ? $"{listed[0].Source}: {count} records" : $"{count} records in {files} files")} cannot be used" +
            $"{(count > listed.Count ? $" (the first {listed.Count} listed)" : "")}; {hint}") =>
        (Bad, this.listed, Count) = (listed[0], listed, count);

    /// <summary>The first refused record.</summary>
    public BadRecord Bad { get; }

    /// <summary>How many records were refused.</summary>
    public int Count { get; }

    public IReadOnlyList<BadRecord> Listed => listed;

    public override IReadOnlyList<string> Details => Count == 1 ? [] :
        [.. listed.Select(b => b.ToString()), .. Count > listed.Count ? new[] { $"... and {Count - listed.Count} more" } : []];
}

/// <summary>The records a read or a check refused. When they are skipped every one is kept, for the skipped report (up
/// to <see cref="MaxKept"/>); otherwise the first <see cref="Listed"/> and a count, so that a file of nothing but bad
/// lines cannot fill memory, and <see cref="ThrowIfAny"/> then stops the run naming them all at once. Blank lines of a
/// JSONL file are not refusals: they are counted here as warnings, by line.</summary>
public sealed class Refusals(bool skip)
{
    /// <summary>Refusals a stopped run lists (the rest are counted).</summary>
    public const int Listed = 20;

    /// <summary>Refusals kept for a skipped report; past this many the data is refused as a whole.</summary>
    public const int MaxKept = 1_000_000;

    /// <summary>What a stopped run tells the user to do instead.</summary>
    public const string SkipHint = "--skip_bad_samples leaves them out and trains on the rest";

    readonly List<BadRecord> kept = [];
    readonly List<(string Source, int Line)> blank = [];
    readonly HashSet<string> sources = new(StringComparer.Ordinal);

    /// <summary>Whether refused records are left out (true) or stop the run (false).</summary>
    public bool Skip => skip;

    public int Count { get; private set; }

    /// <summary>Every refusal when skipping, else the first <see cref="Listed"/>; by file, then line (the readers, the rules
    /// and the clip checks each refuse in their own pass).</summary>
    public IReadOnlyList<BadRecord> Kept => kept.OrderBy(b => b.Source, StringComparer.Ordinal).ThenBy(b => b.Line).ToList();

    /// <summary>Blank lines met (first <see cref="Listed"/> kept) and how many.</summary>
    public IReadOnlyList<(string Source, int Line)> BlankLines => blank;

    public int BlankLineCount { get; private set; }

    public void Add(BadRecord bad)
    {
        ArgumentNullException.ThrowIfNull(bad);
        Count++;
        sources.Add(bad.Source);
        if (!skip && kept.Count >= Listed) return;
        if (kept.Count >= MaxKept)
            throw new InvalidDataException($"{bad.Source}: more than {MaxKept} records refused (the last: {bad}); this is not training data as the reader expects it");
        kept.Add(bad);
    }

    public void AddBlankLine(string source, int line)
    {
        if (BlankLineCount++ < Listed) blank.Add((source, line));
    }

    /// <summary>The blank-line warning ("train.jsonl: 2 blank lines (3, 9) skipped"), or null when there were none.</summary>
    public string? BlankLineWarning => BlankLineCount == 0 ? null
        : string.Join("; ", blank.GroupBy(b => b.Source).Select(g => $"{g.Key}: blank line{(g.Count() > 1 ? "s" : "")} {string.Join(", ", g.Select(b => b.Line))}"))
          + (BlankLineCount > blank.Count ? $" and {BlankLineCount - blank.Count} more" : "") + " skipped";

    /// <summary>Runs a read that reports to a fresh <see cref="Refusals"/>: without <paramref name="skip"/> any refusal
    /// stops it (all of them listed, <see cref="ThrowIfAny"/>); with it they come back in <paramref name="skipped"/>.</summary>
    public static T Collect<T>(bool skip, Func<Refusals, T> read, out IReadOnlyList<BadRecord> skipped)
    {
        ArgumentNullException.ThrowIfNull(read);
        var refusals = new Refusals(skip);
        var result = read(refusals);
        refusals.ThrowIfAny();
        skipped = refusals.Kept;
        return result;
    }

    /// <summary>Stops the run when records were refused and are not to be skipped: one refusal as itself, several
    /// with a count and the first <see cref="Listed"/>.</summary>
    public void ThrowIfAny(string hint = SkipHint)
    {
        if (skip || Count == 0) return;
        if (Count == 1) throw new DataException(kept[0]);
        throw new DataException(Kept, Count, sources.Count, hint);
    }
}
