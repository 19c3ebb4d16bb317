using System.Security.Cryptography;
using System.Text;

namespace Qwen3Tts.Coordinator.Data;

/// <summary>--train_prompt: which prompt a record trains on.</summary>
public enum TrainPromptKind
{
    /// <summary>The x-vector prompt (speaker embedding only), as the reference fine-tuning script trains.</summary>
    XVector,

    /// <summary>The ICL cloning prompt (the reference clip's transcript and codes before the target) for every record with a ref_text.</summary>
    Icl,

    /// <summary>A seeded choice per record between the two (<see cref="TrainPrompt.IclProbability"/>).</summary>
    Mixed,
}

/// <summary>Which records train on the ICL prompt: with <see cref="TrainPromptKind.Icl"/> every record that has a
/// reference transcript (ref_text), with <see cref="TrainPromptKind.Mixed"/> each of those with probability
/// <see cref="IclProbability"/>, drawn from the seed and the record's file name and line: the same on every rank, after a
/// resume and at any world size, and without anything to store. Records without ref_text always train on the x-vector
/// prompt. The plan groups ICL records by their whole length (reference frames included).</summary>
public sealed record TrainPrompt(TrainPromptKind Kind, double IclProbability, long Seed)
{
    public static TrainPrompt XVector { get; } = new(TrainPromptKind.XVector, 0.5, 0);

    /// <summary>--train_prompt and --icl_probability as given.</summary>
    public static TrainPrompt Parse(string kind, double iclProbability, long seed) => new(kind switch
    {
        "xvector" => TrainPromptKind.XVector,
        "icl" => TrainPromptKind.Icl,
        "mixed" => TrainPromptKind.Mixed,
        _ => throw new ArgumentException($"--train_prompt: must be xvector, icl or mixed, got '{kind}'"),
    }, iclProbability is >= 0 and <= 1 ? iclProbability : throw new ArgumentException($"--icl_probability: must be between 0 and 1, got {iclProbability}"), seed);

    public bool IsIcl(TrainingRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        if (Kind == TrainPromptKind.XVector || string.IsNullOrWhiteSpace(record.RefText)) return false;
        return Kind == TrainPromptKind.Icl || Draw(record) < IclProbability;
    }

    /// <summary>A uniform number in [0, 1) per (seed, file name, line): the file's name, not its path, so a copy of the
    /// data elsewhere draws alike.</summary>
    public double Draw(TrainingRecord record)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(FormattableString.Invariant($"{Seed}\n{Path.GetFileName(record.Source)}\n{record.Line}")));
        return (BitConverter.ToUInt64(hash, 0) >> 11) / (double)(1UL << 53);
    }

    /// <summary>The length the plan groups a record by: its frames, plus its reference clip's frames when it trains on the
    /// ICL prompt (<paramref name="refFrames"/>: its ref_codes, or what the codec makes of its clip).</summary>
    public int PlanLength(TrainingRecord record, Func<TrainingRecord, int> refFrames) =>
        IsIcl(record) ? record.PlanLength + refFrames(record) : record.PlanLength;

    /// <summary>The plan lengths a standalone coordinator computes without the codec, equal to the ranks': an ICL record's
    /// reference frames are its ref_codes', or for a clip the ranks encode, ceil(24 kHz samples / <paramref name="samplesPerFrame"/>),
    /// the frames the codec makes of it (each distinct clip read once).</summary>
    public IReadOnlyList<int> PlanLengths(IReadOnlyList<TrainingRecord> records, int samplesPerFrame)
    {
        ArgumentNullException.ThrowIfNull(records);
        var clips = new Dictionary<string, int>(StringComparer.Ordinal);
        int Frames(TrainingRecord r)
        {
            if (r.RefCodes is { } codes) return codes.Frames;
            string key = SftSampleBuilder.ClipKey(r);
            if (!clips.TryGetValue(key, out int frames))
                clips[key] = frames = (SftSampleBuilder.LoadMono24k(r).Length + samplesPerFrame - 1) / samplesPerFrame;
            return frames;
        }
        return records.Select(r => PlanLength(r, Frames)).ToArray();
    }
}
