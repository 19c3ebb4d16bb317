using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Model.Text;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Training;

/// <summary>Training records turned into collated batches on demand. Reference clips are decoded once per
/// path or per distinct inline clip (a single-speaker corpus usually shares one), samples are built per batch.</summary>
public sealed class SftDataSource
{
    readonly IReadOnlyList<TrainingRecord> records;
    readonly SftSampleBuilder builder;
    readonly Qwen3TtsConfig config;
    readonly Qwen3TextTokenizer tokenizer;
    readonly Dictionary<string, float[]> clips = new(StringComparer.Ordinal);

    readonly Func<TrainingRecord, int?> language;

    /// <param name="language">the codec language row each record trains with; null: none (the auto prefix).</param>
    public SftDataSource(IReadOnlyList<TrainingRecord> records, Qwen3TextTokenizer tokenizer, Qwen3TtsConfig config,
        Func<TrainingRecord, int?>? language = null)
    {
        this.records = records;
        this.config = config;
        this.tokenizer = tokenizer;
        this.language = language ?? (_ => null);
        builder = SftSampleBuilder.ForRecords(tokenizer, LoadClip, language: this.language);
    }

    public int Count => records.Count;

    /// <summary>The records it holds, in order.</summary>
    public IReadOnlyList<TrainingRecord> Records => records;

    /// <summary>Each record's talker rows (its training sequence less the last row, which predicts nothing) and codec
    /// frames: what <see cref="MemoryPlan"/> sizes batches by.</summary>
    public IReadOnlyList<(int Positions, int Frames)> Shapes => records.Select(r =>
        (SftCollate.SequenceLength((r.TextIds ?? tokenizer.EncodeChat(r.Text)).Count, r.AudioCodes.Frames, language(r) is not null) - 1, r.AudioCodes.Frames)).ToArray();

    /// <summary>Each record's length for the plan's length grouping (<see cref="TrainingRecord.PlanLength"/>).</summary>
    public IReadOnlyList<int> PlanLengths => records.Select(r => r.PlanLength).ToArray();

    /// <summary>Checks every record up front, before any batch is built: against <paramref name="rules"/> (text ids,
    /// sequence length, frame limit), then each distinct reference clip decoded once (an unreadable or too-short clip
    /// refuses every record that uses it). Refused records go to <paramref name="refusals"/>; the source holds the rest.</summary>
    public static SftDataSource Open(IReadOnlyList<TrainingRecord> records, Qwen3TextTokenizer tokenizer, Qwen3TtsConfig config,
        RecordRules rules, Refusals refusals)
    {
        ArgumentNullException.ThrowIfNull(rules);
        ArgumentNullException.ThrowIfNull(refusals);
        records = rules.Apply(records, refusals);
        Func<TrainingRecord, int?>? language = rules.Languages is { } languages ? languages.IdOf : null;

        var probe = new SftDataSource(records, tokenizer, config, language);
        var bad = new Dictionary<string, DataException>(StringComparer.Ordinal);
        foreach (var record in records.DistinctBy(SftSampleBuilder.ClipKey))
        {
            try { probe.builder.Build(record).RefMel.Dispose(); }
            catch (DataException e) { bad[SftSampleBuilder.ClipKey(record)] = e; }
        }
        if (bad.Count == 0) return probe;
        foreach (var r in records)
            if (bad.TryGetValue(SftSampleBuilder.ClipKey(r), out var e)) refusals.Add(new BadRecord(r.Source, r.Line, "ref_audio", e.Bad.Reason));
        return new SftDataSource(records.Where(r => !bad.ContainsKey(SftSampleBuilder.ClipKey(r))).ToList(), tokenizer, config, language);
    }

    float[] LoadClip(TrainingRecord record)
    {
        string key = SftSampleBuilder.ClipKey(record);
        lock (clips)
        {
            if (!clips.TryGetValue(key, out var samples))
                clips[key] = samples = SftSampleBuilder.LoadMono24k(record);
            return samples;
        }
    }

    /// <summary>The collated batch of the given records (CPU tensors, owned by the caller).</summary>
    public SftBatch Batch(IReadOnlyList<int> indices)
    {
        var samples = indices.Select(i => builder.Build(records[i])).ToList();
        try { return SftCollate.Collate(samples, config); }
        finally { foreach (var s in samples) s.RefMel.Dispose(); }
    }

    /// <summary>The collated batch on <paramref name="device"/>: collated on the CPU, then every tensor moved once
    /// (owned by the caller). On the CPU this is <see cref="Batch(IReadOnlyList{int})"/> itself.</summary>
    public SftBatch Batch(IReadOnlyList<int> indices, Device device)
    {
        if (device.type == TorchSharp.DeviceType.CPU) return Batch(indices);
        using var onCpu = Batch(indices);
        return onCpu.To(device);
    }

    /// <summary>Each distinct reference clip once (per group of <paramref name="group"/>, e.g. per speaker), in first-use
    /// order: a record that uses it and how many records do. The speaker encoder's mean over every row is the
    /// count-weighted mean over these, at a fraction of the cost.</summary>
    public IReadOnlyList<(int Index, int Rows)> DistinctClips(Func<TrainingRecord, string>? group = null) =>
        records.Select((r, i) => (Key: (group?.Invoke(r) ?? "") + "\n" + SftSampleBuilder.ClipKey(r), Index: i)).GroupBy(x => x.Key, StringComparer.Ordinal)
            .Select(g => (g.First().Index, g.Count())).ToList();

    /// <summary>Labels the talker scores for these records: every frame's codebook 0 plus codec_eos.</summary>
    public long TalkerTokens(IEnumerable<int> indices) => indices.Sum(i => (long)records[i].AudioCodes.Frames + 1);

    /// <summary>Labels the code predictor scores: frames × the codebooks it is trained on.</summary>
    public long SubTalkerTokens(IEnumerable<int> indices, LossAlignment alignment) =>
        indices.Sum(i => (long)records[i].AudioCodes.Frames) * SftObjective.SubTalkerPairs(config.Talker.NumCodeGroups, alignment).Count;
}
