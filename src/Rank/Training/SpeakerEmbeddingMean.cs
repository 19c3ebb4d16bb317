using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Training;

/// <summary>The mean speaker-encoder embedding per speaker over every row seen, the voice a custom_voice
/// export stores in codec row 3000. The reference keeps the first batch's first embedding only; this sums every
/// row in fp64 (order-insensitive to a few ulps, whatever the model dtype) and counts them. The sums travel in
/// <see cref="TrainerState.SpeakerEmbeddings"/>, so a resumed run keeps averaging where it stopped. Across
/// ranks, gather every rank's <see cref="ToState"/> and pass them all to <see cref="FromState"/>, which adds up
/// sums and counts of the same speaker, before exporting.</summary>
public sealed class SpeakerEmbeddingMean
{
    readonly SortedDictionary<string, (double[] Sum, long Count)> speakers = new(StringComparer.Ordinal);

    public IReadOnlyCollection<string> Speakers => speakers.Keys;

    public long Count(string speaker) => speakers.TryGetValue(speaker, out var s) ? s.Count : 0;

    /// <summary>Adds every row of <paramref name="embeddings"/> [B, H] (any float dtype or device) to the speaker's sum.</summary>
    public void Add(string speaker, Tensor embeddings)
    {
        if (embeddings.dim() != 2) throw new ArgumentException($"speaker '{speaker}': embeddings must be [batch, hidden], got {Shape(embeddings)}", nameof(embeddings));
        using var scope = NewDisposeScope();
        var rows = embeddings.detach().cpu().to_type(ScalarType.Float64);
        // sum([0L]), not sum(0): a literal 0 binds to the ScalarType overload (Byte).
        Accumulate(speaker, rows.sum([0L]).data<double>().ToArray(), rows.shape[0]);
    }

    /// <summary>Adds the one embedding in <paramref name="embedding"/> [1, H] as <paramref name="rows"/> rows (a
    /// reference clip that many training rows share).</summary>
    public void Add(string speaker, Tensor embedding, long rows)
    {
        if (embedding.dim() != 2 || embedding.shape[0] != 1) throw new ArgumentException($"speaker '{speaker}': expected one embedding [1, hidden], got {Shape(embedding)}", nameof(embedding));
        if (rows < 1) throw new ArgumentOutOfRangeException(nameof(rows), rows, "a clip counts for at least one row");
        using var scope = NewDisposeScope();
        var row = embedding.detach().cpu().to_type(ScalarType.Float64)[0].data<double>().ToArray();
        Accumulate(speaker, row.Select(v => v * rows).ToArray(), rows);
    }

    /// <summary>Adds row i of <paramref name="embeddings"/> [B, H] to speaker <paramref name="speakerOfRow"/>[i] (mixed batches).</summary>
    public void Add(IReadOnlyList<string> speakerOfRow, Tensor embeddings)
    {
        if (embeddings.dim() != 2 || embeddings.shape[0] != speakerOfRow.Count)
            throw new ArgumentException($"embeddings must be [{speakerOfRow.Count}, hidden] (one row per speaker name), got {Shape(embeddings)}", nameof(embeddings));
        using var scope = NewDisposeScope();
        var rows = embeddings.detach().cpu().to_type(ScalarType.Float64);
        foreach (var group in Enumerable.Range(0, speakerOfRow.Count).GroupBy(i => speakerOfRow[i]))
        {
            var index = tensor(group.Select(i => (long)i).ToArray());
            Accumulate(group.Key, rows.index_select(0, index).sum([0L]).data<double>().ToArray(), group.Count());
        }
    }

    /// <summary>The speaker's mean embedding [H] in fp32.</summary>
    public Tensor Mean(string speaker)
    {
        if (!speakers.TryGetValue(speaker, out var s) || s.Count == 0)
            throw new InvalidOperationException($"no embeddings were added for speaker '{speaker}'" + (speakers.Count == 0 ? "" : $"; known: {string.Join(", ", speakers.Keys)}"));
        using var scope = NewDisposeScope();
        return tensor(s.Sum, dtype: ScalarType.Float64).div(s.Count).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    public IReadOnlyList<SpeakerEmbeddingSum> ToState() =>
        speakers.Select(kv => new SpeakerEmbeddingSum(kv.Key, kv.Value.Count, kv.Value.Sum.ToArray())).ToList();

    /// <summary>Rebuilds the accumulator; entries naming the same speaker (states of several ranks) are added up.</summary>
    public static SpeakerEmbeddingMean FromState(IEnumerable<SpeakerEmbeddingSum> state)
    {
        var mean = new SpeakerEmbeddingMean();
        foreach (var s in state) mean.Accumulate(s.Speaker, s.Sum.ToArray(), s.Count);
        return mean;
    }

    void Accumulate(string speaker, double[] sum, long count)
    {
        if (string.IsNullOrEmpty(speaker)) throw new ArgumentException("a speaker name must not be empty");
        if (!speakers.TryGetValue(speaker, out var s))
        {
            speakers[speaker] = (sum, count);
            return;
        }
        if (s.Sum.Length != sum.Length)
            throw new ArgumentException($"speaker '{speaker}': embeddings of width {sum.Length}, but earlier ones had width {s.Sum.Length}");
        for (int i = 0; i < sum.Length; i++) s.Sum[i] += sum[i];
        speakers[speaker] = (s.Sum, s.Count + count);
    }

    static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";
}
