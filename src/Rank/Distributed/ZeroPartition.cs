namespace Qwen3Tts.Rank.Distributed;

/// <summary>One contiguous piece of a parameter that a rank owns: <see cref="Length"/> elements starting at element
/// <see cref="ParameterOffset"/> of parameter <see cref="Parameter"/> (flattened), held at <see cref="ShardOffset"/>
/// of the rank's shard.</summary>
public readonly record struct ZeroSegment(int Parameter, long ParameterOffset, long ShardOffset, long Length);

/// <summary>Which elements of the trainable parameters a rank owns under ZeRO (the optimizer state, its fp32 master
/// slice and its reduced gradient). The gradient buckets (<see cref="BucketAssignment"/>) are the unit, as FSDP's flat
/// parameters are: bucket b's packed gradient of n_b elements is padded to N equal blocks of ceil(n_b / N), and rank r
/// owns block r of every bucket, so a bucket's reduce-scatter leaves each rank exactly its part of that bucket and no
/// copy is needed between the wire and the optimizer. A rank's shard is its blocks of bucket 0, 1, ... laid end to end.
/// A pure function of (sizes, buckets, N, r), like the buckets: every rank computes the same layout.</summary>
public sealed class ZeroPartition
{
    /// <param name="numels">elements per parameter (registration order).</param>
    /// <param name="buckets">the bucket assignment over those parameters (<see cref="BucketAssignment.Assign(IReadOnlyList{BucketParameter}, long, long)"/>).</param>
    public ZeroPartition(IReadOnlyList<long> numels, IReadOnlyList<int[]> buckets, int worldSize, int rank)
    {
        if (worldSize < 1) throw new ArgumentOutOfRangeException(nameof(worldSize), worldSize, "world size must be >= 1");
        if (rank < 0 || rank >= worldSize) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"rank must be in [0, {worldSize})");
        (WorldSize, Rank) = (worldSize, rank);
        var blocks = new long[buckets.Count];
        var shardOffsets = new long[buckets.Count];
        var segments = new List<ZeroSegment>();
        long shard = 0;
        for (int b = 0; b < buckets.Count; b++)
        {
            long bucketNumel = buckets[b].Sum(i => numels[i]);
            long block = Partition.Block(bucketNumel, worldSize);
            (blocks[b], shardOffsets[b]) = (block, shard);
            // This rank's block [lo, hi) of the bucket's packed order, cut at parameter boundaries.
            long lo = rank * block, hi = Math.Min(bucketNumel, lo + block), at = 0;
            foreach (int i in buckets[b])
            {
                long start = Math.Max(lo, at), end = Math.Min(hi, at + numels[i]);
                if (end > start) segments.Add(new ZeroSegment(i, start - at, shard + (start - lo), end - start));
                at += numels[i];
            }
            shard += block;
        }
        (BlockNumels, ShardOffsets, Segments, ShardNumel) = (blocks, shardOffsets, segments, shard);
    }

    public int WorldSize { get; }

    public int Rank { get; }

    /// <summary>Per bucket: the block each rank owns (the padded bucket is WorldSize of them).</summary>
    public IReadOnlyList<long> BlockNumels { get; }

    /// <summary>Per bucket: where this rank's block of it starts in the shard.</summary>
    public IReadOnlyList<long> ShardOffsets { get; }

    /// <summary>This rank's pieces of parameters, in shard order; the shard's padding (tail of a bucket's last block) is in none.</summary>
    public IReadOnlyList<ZeroSegment> Segments { get; }

    /// <summary>Elements of this rank's shard (padding included): Σ ceil(n_b / N), within a bucket count of Ψ / N.</summary>
    public long ShardNumel { get; }
}
