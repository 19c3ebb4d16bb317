using System.Text.Json.Nodes;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Codec;
using Qwen3Tts.Model.Config;

namespace Qwen3Tts.Coordinator.Data.Prepare;

/// <summary>What <c>qwen3tts prepare</c> is told.</summary>
/// <param name="Input">a speech dataset in any layout <see cref="RawSpeechData"/> reads (JSONL, HF Parquet, clip folder).</param>
/// <param name="Output">the training records to write: <c>.jsonl</c> or <c>.parquet</c>.</param>
/// <param name="RefAudio">the reference clip for records that name none (the single-speaker flow).</param>
/// <param name="MaxSamples">prepare only the first N records.</param>
/// <param name="Split">which split of an HF dataset folder (<c>train-*.parquet</c>, <c>data/validation-*.parquet</c>).</param>
/// <param name="SkipBadSamples">list bad records in <see cref="PrepareJob.SkipReportPath"/> instead of stopping.</param>
/// <param name="Bounds">the model's code ranges (<see cref="CodeBounds.Of"/>): an encoded code outside them makes the
/// record bad, as the trainer would refuse it. Null: the codec's own range, nothing more to check.</param>
/// <param name="AllowAbsolutePaths">records may name clips outside the input's folder (<see cref="DataPaths.Outside"/>).</param>
public sealed record PrepareOptions(string Input, string Output, string? RefAudio = null, int? MaxSamples = null, string? Split = null,
    bool SkipBadSamples = false, CodeBounds? Bounds = null, bool AllowAbsolutePaths = false);

/// <summary>The outcome of <see cref="PrepareJob.Merge"/>.</summary>
public sealed record PrepareResult(string Output, int Written, IReadOnlyList<BadRecord> Skipped, double AudioSeconds, string? SkipReport);

/// <summary>Raw speech records to training records: each record's target audio is encoded by the 12 Hz speech tokenizer
/// into <c>audio_codes</c> [frames][16] and added to the record, keeping every other field (the reference's
/// finetuning/prepare_data.py, for any number of processes).
/// <list type="number">
/// <item><see cref="Open"/> reads the source (every rank reads all of it, in the same order).</item>
/// <item><see cref="EncodeShare"/> encodes the records with index % worldSize == rank that the journal in
/// <see cref="PartialDir"/> does not hold yet, appending each to the journal as it finishes.</item>
/// <item>After all ranks are done, <see cref="Merge"/> (one process) writes the output in source order, atomically, and
/// deletes the journal.</item>
/// </list>
/// The output depends only on the source and the codec, not on the number of ranks or on interruptions: clips are encoded
/// one at a time (Mimi's batch padding would change the last frame), and the merge follows source order.
/// <para>Reference clips: a record without <c>ref_audio</c> gets <c>--ref_audio</c> when given, else the first usable
/// clip of its speaker (<c>speaker_id</c>; records without one form one speaker), so a multi-speaker HF dataset trains
/// each speaker's embedding from that speaker's own voice.</para></summary>
public sealed class PrepareJob
{
    PrepareJob(PrepareOptions options, RawSpeechFormat format, IReadOnlyList<RawSpeechRecord> records, IReadOnlyList<BadRecord> malformed,
        AudioSource? refAudio)
    {
        Options = options;
        Format = format;
        Records = records;
        Malformed = malformed;
        RefAudio = refAudio;
    }

    public PrepareOptions Options { get; }
    public RawSpeechFormat Format { get; }

    /// <summary>The records to prepare, in source order (their index is their place here).</summary>
    public IReadOnlyList<RawSpeechRecord> Records { get; }

    /// <summary>Records the reader could not parse (only with --skip_bad_samples; otherwise <see cref="Open"/> throws).</summary>
    public IReadOnlyList<BadRecord> Malformed { get; }

    AudioSource? RefAudio { get; }

    /// <summary><c>OUTPUT.partial/</c>: the journal of an unfinished job.</summary>
    public string PartialDir => Options.Output + ".partial";

    /// <summary><c>OUTPUT-without-extension.skipped.jsonl</c>: bad records, when --skip_bad_samples found any.</summary>
    public string SkipReportPath => Path.ChangeExtension(Options.Output, null) + ".skipped.jsonl";

    /// <summary>Reads and checks the source and the options. Malformed records throw <see cref="DataException"/> naming file,
    /// line and field (or are collected with --skip_bad_samples).</summary>
    public static PrepareJob Open(PrepareOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        string ext = Path.GetExtension(options.Output).ToLowerInvariant();
        if (ext is not (".jsonl" or ".parquet"))
            throw new ArgumentException($"--output {options.Output}: must end in .jsonl or .parquet (the format of the training records)");
        if (!File.Exists(options.Input) && !Directory.Exists(options.Input))
            throw new FileNotFoundException($"--input {options.Input}: no such file or folder", options.Input);
        if (Path.GetFullPath(options.Input) == Path.GetFullPath(options.Output))
            throw new ArgumentException($"--output {options.Output}: is the input; write the prepared records to another file");
        if (options.MaxSamples is <= 0) throw new ArgumentException($"--max_samples: must be positive, got {options.MaxSamples}");

        var format = RawSpeechData.Detect(options.Input);
        var refusals = new Refusals(options.SkipBadSamples);
        var records = RawSpeechData.Read(options.Input, refusals, options.Split);
        if (!options.AllowAbsolutePaths) records = records.Where(r => RawSpeechData.OutsidePath(r) is not { } bad || Refused(refusals, bad)).ToList();
        refusals.ThrowIfAny();
        var malformed = refusals.Kept;
        if (options.MaxSamples is { } max && records.Count > max) records = records.Take(max).ToList();
        if (records.Count == 0)
            throw new ArgumentException($"--input {options.Input}: no usable records" + (malformed.Count > 0 ? $" ({malformed.Count} malformed, first: {malformed[0]})" : ""));

        AudioSource? refAudio = null;
        if (options.RefAudio is { } refPath)
        {
            string full = Path.GetFullPath(refPath);
            if (!File.Exists(full)) throw new FileNotFoundException($"--ref_audio {refPath}: no such file", refPath);
            refAudio = AudioSource.FromFile(full);
            if (refAudio.LoadMono24k().Samples.Length == 0) throw new AudioException(full, "--ref_audio has no samples");
        }
        // A Parquet column is kept as the source wrote it, so ref_audio cannot be filled into one that has it for some rows only.
        if (format == RawSpeechFormat.Parquet && ext == ".parquet" && records.Any(r => r.RefAudio is null) && records.Any(r => r.RefAudio is not null))
        {
            var r = records.First(r => r.RefAudio is null);
            throw new DataException(r.Source, r.Line, "ref_audio", "is null where other rows have a reference clip; give every row one, " +
                "or drop the column to let prepare pick one per speaker, or write JSONL output");
        }
        return new PrepareJob(options, format, records, malformed, refAudio);
    }

    static bool Refused(Refusals refusals, BadRecord bad)
    {
        refusals.Add(bad);
        return false;
    }

    /// <summary>What identifies this job's journal: a journal written for another input, split, sample limit or codec is refused.</summary>
    JsonObject Identity(string codecKey) => new()
    {
        ["input"] = Path.GetFullPath(Options.Input),
        ["split"] = Options.Split,
        ["max_samples"] = Options.MaxSamples,
        ["records"] = Records.Count,
        ["codec"] = codecKey,
    };

    /// <summary>Indices this rank encodes: index % worldSize == rank.</summary>
    public static IEnumerable<int> Share(int count, int rank, int worldSize) =>
        Enumerable.Range(0, count).Where(i => i % worldSize == rank);

    /// <summary>Encodes this rank's unfinished records, appending each to the journal before starting the next. A bad
    /// record (missing or undecodable audio, empty text, unreadable reference clip) throws <see cref="DataException"/>
    /// naming file, line and field, or with --skip_bad_samples is journaled as bad. <paramref name="codecKey"/> names the
    /// codec (a journal of another codec is refused). <paramref name="recordDone"/> is called with the count of records
    /// this call has finished (tests use it to interrupt a job). Returns the number of records this call encoded.</summary>
    public int EncodeShare(SpeechTokenizer tokenizer, string codecKey, int rank, int worldSize, TextWriter? progressOutput = null,
        CancellationToken cancel = default, Action<int>? recordDone = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (worldSize < 1 || rank < 0 || rank >= worldSize) throw new ArgumentOutOfRangeException(nameof(rank), $"rank {rank} of {worldSize}");
        PrepareJournal.Begin(PartialDir, Identity(codecKey), rank);
        var journal = PrepareJournal.ReadAll(PartialDir);
        var mine = Share(Records.Count, rank, worldSize).ToList();
        var todo = mine.Where(i => !IsDone(journal, i)).ToList();
        var progress = progressOutput is null ? null : new PrepareProgress(progressOutput,
            worldSize == 1 ? "prepare" : $"prepare (rank {rank} of {worldSize}, its share)", mine.Count, mine.Count - todo.Count, PrepareProgress.DefaultInterval);

        var refChecks = new Dictionary<string, string?>(StringComparer.Ordinal); // clip key -> why it cannot be read (null: fine)
        using var writer = new PrepareJournal.Writer(PartialDir, rank);
        int finished = 0;
        foreach (int i in todo)
        {
            cancel.ThrowIfCancellationRequested();
            var record = Records[i];
            var entry = Encode(tokenizer, i, record, refChecks, Options.Bounds);
            if (!entry.Ok && !Options.SkipBadSamples) throw new DataException(record.Source, record.Line, entry.BadField!, entry.BadReason!);
            writer.Append(entry);
            progress?.Advance(entry.Seconds);
            recordDone?.Invoke(++finished);
        }
        progress?.Finish();
        return finished;
    }

    /// <summary>Done when the journal has it for this very record; a bad entry counts only while bad records are skipped,
    /// so a run without --skip_bad_samples tries it again (and stops there if it is still bad).</summary>
    bool IsDone(Dictionary<int, JournalEntry> journal, int i) =>
        journal.TryGetValue(i, out var e) && e.Fingerprint == PrepareJournal.Fingerprint(Records[i]) && (e.Ok || Options.SkipBadSamples);

    static JournalEntry Encode(SpeechTokenizer tokenizer, int index, RawSpeechRecord record, Dictionary<string, string?> refChecks,
        CodeBounds? bounds)
    {
        string fp = PrepareJournal.Fingerprint(record);
        JournalEntry Bad(string field, string reason) => new(index, fp, 0, null, field, reason);

        if (string.IsNullOrWhiteSpace(record.Text)) return Bad("text", "is empty; a training sample needs text to speak");
        if (record.Audio.Path is { } path && !File.Exists(path)) return Bad("audio", $"file '{path}' does not exist");
        if (record.RefAudio is { } refClip)
        {
            if (!refChecks.TryGetValue(refClip.Key, out string? problem))
            {
                problem = refClip.Path is { } p && !File.Exists(p) ? $"file '{p}' does not exist" : null;
                if (problem is null)
                    try { if (refClip.LoadMono24k().Samples.Length == 0) problem = $"'{refClip.Name}' has no samples"; }
                    catch (AudioException e) { problem = e.Message; }
                refChecks[refClip.Key] = problem;
            }
            if (problem is not null) return Bad("ref_audio", problem);
        }
        AudioClip clip;
        try { clip = record.Audio.LoadMono24k(); }
        catch (AudioException e) { return Bad("audio", e.Message); }
        if (clip.Samples.Length == 0) return Bad("audio", $"'{record.Audio.Name}' has no samples");
        var codes = tokenizer.Encode(clip.Samples);
        if (bounds?.FirstProblem(codes) is (var f, var g, var outside)) return Bad($"audio_codes[{f}][{g}]", outside + " (this model's)");
        return new JournalEntry(index, fp, clip.Samples.Length / (double)clip.SampleRate, codes);
    }

    /// <summary>Writes the output from the journal once every record is in it (one process, after all ranks finished):
    /// records in source order, each with its codes and, where it had none, its reference clip; bad records in
    /// <see cref="SkipReportPath"/>. The output appears atomically; the journal is then deleted.</summary>
    /// <param name="codec">encodes the reference clip of each record with a ref_text into its ref_codes (once per clip), the
    /// prompt ICL training puts before the target; null writes none.</param>
    public PrepareResult Merge(TextWriter log, SpeechTokenizer? codec = null)
    {
        ArgumentNullException.ThrowIfNull(log);
        var journal = PrepareJournal.ReadAll(PartialDir);
        var missing = Enumerable.Range(0, Records.Count).Where(i => !IsDone(journal, i)).ToList();
        if (missing.Count > 0)
            throw new InvalidOperationException($"{PartialDir}: {missing.Count} of {Records.Count} records are not prepared yet " +
                $"(first: {Records[missing[0]].Where}); run prepare again to finish them");

        var skipped = new List<BadRecord>(Malformed);
        var items = new List<PreparedItem>();
        foreach (var (record, i) in Records.Select((r, i) => (r, i)))
        {
            var e = journal[i];
            if (e.Ok) items.Add(new PreparedItem(i, record, e.Codes!, e.Seconds, null));
            else skipped.Add(new BadRecord(record.Source, record.Line, e.BadField!, e.BadReason!));
        }
        if (items.Count == 0) throw new ArgumentException($"--input {Options.Input}: no record could be prepared (first problem: {skipped[0]})");
        items = AssignReferences(items, log);
        if (codec is not null) items = ReferenceCodes(items, codec, log);

        string output = Path.GetFullPath(Options.Output);
        string? parent = Path.GetDirectoryName(output);
        if (parent is not null) Directory.CreateDirectory(parent);
        string tmp = output + ".tmp";
        if (Path.GetExtension(output).Equals(".parquet", StringComparison.OrdinalIgnoreCase))
            PreparedParquet.Write(this, items, tmp, output);
        else
            PreparedJsonl.Write(this, items, tmp, output);
        File.Move(tmp, output, overwrite: true);

        string? report = null;
        if (skipped.Count > 0)
        {
            report = SkipReportPath;
            JsonlTrainingData.WriteSkipReport(report, skipped);
            log.WriteLine($"skipped {skipped.Count} bad record(s), listed in {report}; first: {skipped[0]}");
        }
        else if (File.Exists(SkipReportPath)) File.Delete(SkipReportPath); // from an earlier run: no longer true
        Directory.Delete(PartialDir, recursive: true);
        double seconds = items.Sum(x => x.Seconds);
        log.WriteLine($"prepared {items.Count} record(s), {seconds:F1} s of audio, into {Options.Output}");
        return new PrepareResult(Options.Output, items.Count, skipped, seconds, report);
    }

    /// <summary>The record's reference transcript (a ref_text field or column), or null.</summary>
    public static string? RefText(RawSpeechRecord record) =>
        record.Extra?.GetValueOrDefault("ref_text") is { } text && !string.IsNullOrWhiteSpace(text) ? text : null;

    /// <summary>ref_codes for each record with a ref_text: its reference clip encoded, each distinct clip once.</summary>
    static List<PreparedItem> ReferenceCodes(List<PreparedItem> items, SpeechTokenizer codec, TextWriter log)
    {
        var encoded = new Dictionary<string, long[,]>(StringComparer.Ordinal);
        var result = items.Select(x =>
        {
            if (RefText(x.Record) is null || (x.Record.RefAudio ?? x.AddedRef) is not { } clip) return x;
            if (!encoded.TryGetValue(clip.Key, out var codes)) encoded[clip.Key] = codes = codec.Encode(clip.LoadMono24k().Samples);
            return x with { RefCodes = codes };
        }).ToList();
        if (encoded.Count > 0)
            log.WriteLine($"ref_codes: {result.Count(x => x.RefCodes is not null)} record(s) with a ref_text, {encoded.Count} distinct reference clip(s) encoded (for --train_prompt icl)");
        return result;
    }

    /// <summary>Gives each record without a reference clip one: --ref_audio, else its speaker's first prepared clip.</summary>
    List<PreparedItem> AssignReferences(List<PreparedItem> items, TextWriter log)
    {
        var needing = items.Where(x => x.Record.RefAudio is null).ToList();
        if (needing.Count == 0) return items;
        if (RefAudio is { } given)
        {
            log.WriteLine($"ref_audio: {needing.Count} record(s) name no reference clip; using --ref_audio {Options.RefAudio}");
            return items.Select(x => x.Record.RefAudio is null ? x with { AddedRef = given } : x).ToList();
        }
        // The first clip of each speaker in source order; records without speaker_id are one speaker.
        var firstOf = new Dictionary<string, PreparedItem>(StringComparer.Ordinal);
        foreach (var x in needing) firstOf.TryAdd(x.Record.SpeakerId ?? "", x);
        log.WriteLine($"ref_audio: {needing.Count} record(s) name no reference clip and no --ref_audio was given; using each speaker's first clip " +
            $"({firstOf.Count} speaker(s)): " + string.Join(", ", firstOf.Take(5).Select(kv => $"{(kv.Key.Length == 0 ? "(no speaker_id)" : kv.Key)} -> {kv.Value.Record.Where}"))
            + (firstOf.Count > 5 ? ", ..." : ""));
        return items.Select(x => x.Record.RefAudio is null ? x with { AddedRef = firstOf[x.Record.SpeakerId ?? ""].Record.Audio } : x).ToList();
    }
}

/// <summary>A record ready to be written: its codes and, when the source named none, the reference clip it was given.</summary>
/// <param name="RefCodes">the reference clip's codes, for a record with a ref_text.</param>
public sealed record PreparedItem(int Index, RawSpeechRecord Record, long[,] Codes, double Seconds, AudioSource? AddedRef, long[,]? RefCodes = null);
