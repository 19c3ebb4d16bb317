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

    /// <summary>Which records train on the ICL prompt (each of those carries its <see cref="TrainingRecord.RefCodes"/>).</summary>
    public TrainPrompt Prompt { get; }

    /// <param name="language">the codec language row each record trains with; null: none (the auto prefix).</param>
    /// <param name="prompt">--train_prompt; the records it trains on the ICL prompt must carry their reference codes
    /// (<see cref="Open"/> resolves them).</param>
    public SftDataSource(IReadOnlyList<TrainingRecord> records, Qwen3TextTokenizer tokenizer, Qwen3TtsConfig config,
        Func<TrainingRecord, int?>? language = null, TrainPrompt? prompt = null)
    {
        this.records = records;
        this.config = config;
        this.tokenizer = tokenizer;
        this.language = language ?? (_ => null);
        Prompt = prompt ?? TrainPrompt.XVector;
        // The choice and the transcript's tokens once per ICL record, not per batch (a mixed draw hashes the record).
        var transcripts = new Dictionary<string, IReadOnlyList<int>>(StringComparer.Ordinal);
        foreach (var r in records.Where(Prompt.IsIcl))
        {
            if (r.RefCodes is null) throw new ArgumentException($"{r.Where}: trains on the ICL prompt but its reference codes were not resolved", nameof(records));
            if (!transcripts.TryGetValue(r.RefText!, out var ids))
                transcripts[r.RefText!] = ids = tokenizer.Encode(Qwen3Tts.Model.Generation.PromptBuilder.RefChatText(r.RefText!));
            refTextIds[r] = ids;
        }
        builder = SftSampleBuilder.ForRecords(tokenizer, LoadClip, language: this.language, icl: Reference);
    }

    /// <summary>The ICL records (by reference) and their reference transcript turn's ids.</summary>
    readonly Dictionary<TrainingRecord, IReadOnlyList<int>> refTextIds = new(ReferenceEqualityComparer.Instance);

    bool IsIcl(TrainingRecord r) => refTextIds.ContainsKey(r);

    /// <summary>An ICL record's reference transcript turn and clip codes; null for an x-vector record.</summary>
    (IReadOnlyList<int> RefTextIds, long[,] RefCodes)? Reference(TrainingRecord r) =>
        refTextIds.TryGetValue(r, out var ids) ? (ids, r.RefCodes!.ToArray()) : null;

    /// <summary>Records that train on the ICL prompt.</summary>
    public int IclCount => refTextIds.Count;

    public int Count => records.Count;

    /// <summary>The records it holds, in order.</summary>
    public IReadOnlyList<TrainingRecord> Records => records;

    /// <summary>Each record's talker rows (its training sequence less the last row, which predicts nothing) and codec
    /// frames: what <see cref="MemoryPlan"/> sizes batches by.</summary>
    public IReadOnlyList<(int Positions, int Frames)> Shapes => records.Select(r => (IsIcl(r)
        ? SftCollate.IclSequenceLength(r.RefCodes!.Frames, r.AudioCodes.Frames, language(r) is not null) - 1
        : SftCollate.SequenceLength((r.TextIds ?? tokenizer.EncodeChat(r.Text)).Count, r.AudioCodes.Frames, language(r) is not null) - 1, r.AudioCodes.Frames)).ToArray();

    /// <summary>Each record's length for the plan's length grouping (<see cref="TrainPrompt.PlanLength"/>: the reference's
    /// frames count for an ICL record).</summary>
    public IReadOnlyList<int> PlanLengths => records.Select(r => Prompt.PlanLength(r, x => x.RefCodes!.Frames)).ToArray();

    /// <summary>Checks every record up front, before any batch is built: against <paramref name="rules"/> (text ids,
    /// sequence length, frame limit), then each distinct reference clip decoded once (an unreadable or too-short clip
    /// refuses every record that uses it). Refused records go to <paramref name="refusals"/>; the source holds the rest.</summary>
    /// <param name="prompt">--train_prompt: its ICL records get their reference codes (ref_codes, else
    /// <paramref name="encode"/> of their clip, once per distinct clip content) and are checked as ICL samples.</param>
    /// <param name="encode">the model's speech tokenizer: mono 24 kHz samples to [frames, 16] codes; null when there is none.</param>
    public static SftDataSource Open(IReadOnlyList<TrainingRecord> records, Qwen3TextTokenizer tokenizer, Qwen3TtsConfig config,
        RecordRules rules, Refusals refusals, TrainPrompt? prompt = null, Func<float[], long[,]>? encode = null)
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
        foreach (var r in records)
            if (bad.TryGetValue(SftSampleBuilder.ClipKey(r), out var e)) refusals.Add(new BadRecord(r.Source, r.Line, "ref_audio", e.Bad.Reason));
        records = records.Where(r => !bad.ContainsKey(SftSampleBuilder.ClipKey(r))).ToList();
        prompt ??= TrainPrompt.XVector;
        if (records.Any(prompt.IsIcl)) records = IclReferences(records, prompt, probe.LoadClip, encode, tokenizer, config, language, refusals);
        return bad.Count == 0 && prompt.Kind == TrainPromptKind.XVector ? probe : new SftDataSource(records, tokenizer, config, language, prompt);
    }

    /// <summary>The ICL records with their reference codes (the record's ref_codes, else its clip encoded once per distinct
    /// content, keyed by the content's sha256), each checked as an ICL sample (the reference transcript's tokens, the codes'
    /// bounds, the whole sequence within the context); a record that fails is refused like any other bad record.</summary>
    static List<TrainingRecord> IclReferences(IReadOnlyList<TrainingRecord> records, TrainPrompt prompt, Func<TrainingRecord, float[]> loadClip,
        Func<float[], long[,]>? encode, Qwen3TextTokenizer tokenizer, Qwen3TtsConfig config, Func<TrainingRecord, int?>? language, Refusals refusals)
    {
        var encoded = new Dictionary<string, CodeGrid>(StringComparer.Ordinal);
        var bounds = CodeBounds.Of(config.Talker);
        var kept = new List<TrainingRecord>(records.Count);
        foreach (var r in records)
        {
            if (!prompt.IsIcl(r)) { kept.Add(r); continue; }
            var codes = r.RefCodes;
            if (codes is null)
            {
                string key = ContentKey(r);
                if (!encoded.TryGetValue(key, out codes))
                {
                    if (encode is null)
                        throw new DataException(r.Source, r.Line, "ref_codes", "is missing, and the model has no speech_tokenizer/ to encode the reference clip with: " +
                            "prepare the data with ref_text (it writes ref_codes), or train with --train_prompt xvector");
                    encoded[key] = codes = new CodeGrid(encode(loadClip(r)));
                }
            }
            var ids = r.TextIds ?? tokenizer.EncodeChat(r.Text);
            var refIds = tokenizer.Encode(Qwen3Tts.Model.Generation.PromptBuilder.RefChatText(r.RefText!));
            var problem = SftCollate.Problem(ids, r.AudioCodes.Frames, config, language?.Invoke(r) is not null, refIds, codes.Frames);
            if (problem is null && bounds.FirstProblem(codes.ToArray()) is { } outOfRange) problem = ($"ref_codes[{outOfRange.Frame}][{outOfRange.Codebook}]", outOfRange.Problem);
            if (problem is { } p) { refusals.Add(new BadRecord(r.Source, r.Line, p.Field, p.Reason)); continue; }
            kept.Add(r with { RefCodes = codes });
        }
        return kept;
    }

    /// <summary>A clip by content: the sha256 of its inline bytes, or of its file.</summary>
    static string ContentKey(TrainingRecord r) => r.RefAudioBytes is null
        ? "sha256:" + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(r.RefAudio)))
        : SftSampleBuilder.ClipKey(r);

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
