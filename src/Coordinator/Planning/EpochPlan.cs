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
