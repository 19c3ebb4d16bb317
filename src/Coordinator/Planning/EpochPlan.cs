namespace Qwen3Tts.Coordinator.Planning;

/// <summary>The order of a run's data: global batches per epoch as a pure function of (sample count,
/// seed, epoch, global batch size). It does not depend on the number of ranks, so N ranks with batch B
/// and one rank with batch N·B see the same global batches.</summary>
public static class EpochPlan
{
    /// <summary>A seeded Fisher–Yates permutation of 0..count-1 for this epoch (SplitMix64, so the order is
    /// specified independently of any runtime's random number generator).</summary>
    public static int[] Order(int count, long seed, int epoch)
    {
        var order = Enumerable.Range(0, count).ToArray();
        ulong state = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL ^ (ulong)epoch * 0xD1B54A32D192ED03UL);
        for (int i = count - 1; i > 0; i--)
        {
            int j = (int)(SplitMix64(ref state) % (ulong)(i + 1));
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    /// <summary>Consecutive global batches of the epoch's order; the last may be smaller (nothing is dropped).</summary>
    public static IReadOnlyList<int[]> GlobalBatches(int count, long seed, int epoch, int globalBatch)
    {
        if (globalBatch < 1) throw new ArgumentOutOfRangeException(nameof(globalBatch), globalBatch, "must be at least 1");
        return Order(count, seed, epoch).Chunk(globalBatch).ToList();
    }

    /// <summary>Length-grouped global batches: the epoch's shuffled order is cut into windows of
    /// <paramref name="bucketWindow"/> global batches, each window is sorted by length (ties keep the shuffled order) and cut
    /// into batches, and the full batches are shuffled again so lengths do not trend through the epoch. Every sample appears
    /// once; the one short batch (if any) stays last, as in <see cref="GlobalBatches(int, long, int, int)"/>. Depends only on
    /// (lengths, seed, epoch, global batch, window), never on the world size. <paramref name="bucketWindow"/> 0 or 1 is plain
    /// random batching.</summary>
    public static IReadOnlyList<int[]> GlobalBatches(IReadOnlyList<int> lengths, long seed, int epoch, int globalBatch, int bucketWindow)
    {
        if (globalBatch < 1) throw new ArgumentOutOfRangeException(nameof(globalBatch), globalBatch, "must be at least 1");
        if (bucketWindow < 0) throw new ArgumentOutOfRangeException(nameof(bucketWindow), bucketWindow, "must be 0 (off) or more");
        var order = Order(lengths.Count, seed, epoch);
        if (bucketWindow <= 1) return order.Chunk(globalBatch).ToList();

        var batches = new List<int[]>();
        foreach (var window in order.Chunk(globalBatch * bucketWindow))
        {
            // OrderBy is stable: equal lengths keep their shuffled order.
            batches.AddRange(window.OrderBy(i => lengths[i]).Chunk(globalBatch));
        }
        int full = batches.Count > 0 && batches[^1].Length < globalBatch ? batches.Count - 1 : batches.Count;
        // A second, independent stream for the batch order (the sample order used the first).
        ulong state = unchecked((ulong)seed * 0xD6E8FEB86659FD93UL ^ (ulong)epoch * 0x9E3779B97F4A7C15UL ^ 0x5851F42D4C957F2DUL);
        for (int i = full - 1; i > 0; i--)
        {
            int j = (int)(SplitMix64(ref state) % (ulong)(i + 1));
            (batches[i], batches[j]) = (batches[j], batches[i]);
        }
        return batches;
    }

    /// <summary>The share of computed sequence positions that are padding when every rank pads its share of each batch
    /// to the share's longest sample: 1 − Σ lengths / Σ (share size × share max).</summary>
    public static double PaddingFraction(IEnumerable<int[]> globalBatches, IReadOnlyList<int> lengths, int worldSize)
    {
        long real = 0, padded = 0;
        foreach (var batch in globalBatches)
            for (int r = 0; r < worldSize; r++)
            {
                var share = Share(batch, r, worldSize);
                if (share.Length == 0) continue;
                int max = share.Max(i => lengths[i]);
                padded += (long)max * share.Length;
                real += share.Sum(i => (long)lengths[i]);
            }
        return padded == 0 ? 0 : 1 - (double)real / padded;
    }

    /// <summary>This rank's share of a global batch: a contiguous slice, so concatenating the ranks' shares in rank order gives the batch.</summary>
    public static int[] Share(int[] globalBatch, int rank, int worldSize)
    {
        int per = (globalBatch.Length + worldSize - 1) / worldSize;
        int start = Math.Min(rank * per, globalBatch.Length);
        return globalBatch[start..Math.Min(start + per, globalBatch.Length)];
    }

    static ulong SplitMix64(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
