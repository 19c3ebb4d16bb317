namespace Qwen3Tts.Rank.Distributed;

/// <summary>What bucket assignment needs to know about one parameter.</summary>
public readonly record struct BucketParameter(string Name, long Numel, int ElementSize)
{
    public long Bytes => Numel * ElementSize;
}

/// <summary>Which parameters' gradients travel together in one all-reduce, as PyTorch DDP's
/// compute_bucket_assignment_by_size: parameters in reverse registration order (backward produces gradients
/// roughly last layer first, so bucket 0 is ready first), the first bucket capped small (1 MB) so the first
/// reduce starts early, the rest at the cap (25 MB by default, --bucket_size_mb). A tensor is never split: a
/// bucket is closed before a tensor that would take it over its cap, and a tensor larger than the cap travels
/// alone. A pure function of (names, sizes, caps): every rank computes the same buckets and reduces them in
/// index order.</summary>
public static class BucketAssignment
{
    public const double DefaultCapMb = 25;
    public const double FirstBucketCapMb = 1;
    const long BytesPerMb = 1L << 20;

    /// <summary>--bucket_size_mb in bytes, checked.</summary>
    public static long CapBytes(double megabytes)
    {
        if (!(megabytes > 0) || double.IsInfinity(megabytes))
            throw new ArgumentOutOfRangeException(nameof(megabytes), megabytes, $"--bucket_size_mb must be a positive number of megabytes (default {DefaultCapMb})");
        return Math.Max(1, (long)(megabytes * BytesPerMb));
    }

    /// <returns>buckets of indices into <paramref name="parameters"/> (registration order); bucket 0 holds the last
    /// registered parameters; inside a bucket the indices descend. Every parameter appears in exactly one bucket.</returns>
    public static IReadOnlyList<int[]> Assign(IReadOnlyList<BucketParameter> parameters, long capBytes, long firstCapBytes)
    {
        if (capBytes <= 0) throw new ArgumentOutOfRangeException(nameof(capBytes), capBytes, "bucket cap must be > 0 bytes");
        if (firstCapBytes <= 0) throw new ArgumentOutOfRangeException(nameof(firstCapBytes), firstCapBytes, "first bucket cap must be > 0 bytes");
        for (int i = 0; i < parameters.Count; i++)
            if (parameters[i].Numel < 0 || parameters[i].ElementSize <= 0)
                throw new ArgumentException($"parameter #{i} '{parameters[i].Name}': numel {parameters[i].Numel}, element size {parameters[i].ElementSize}", nameof(parameters));

        var buckets = new List<int[]>();
        var current = new List<int>();
        long bytes = 0;
        for (int i = parameters.Count - 1; i >= 0; i--)
        {
            long cap = buckets.Count == 0 ? firstCapBytes : capBytes;
            long size = parameters[i].Bytes;
            if (current.Count > 0 && bytes + size > cap)
            {
                buckets.Add(current.ToArray());
                current.Clear();
                bytes = 0;
            }
            current.Add(i);
            bytes += size;
        }
        if (current.Count > 0) buckets.Add(current.ToArray());
        return buckets;
    }

    /// <summary>Bytes of the largest bucket <see cref="Assign(IReadOnlyList{BucketParameter}, long, long)"/> forms at this cap
    /// (the first bucket capped at min(1 MB, cap)), for memory planning.</summary>
    public static long LargestBucketBytes(IReadOnlyList<BucketParameter> parameters, long capBytes) =>
        Assign(parameters, capBytes, Math.Min(capBytes, CapBytes(FirstBucketCapMb))).Select(b => b.Sum(i => parameters[i].Bytes)).DefaultIfEmpty(0).Max();

    /// <summary>With the default caps: 1 MB first bucket, 25 MB after.</summary>
    public static IReadOnlyList<int[]> Assign(IReadOnlyList<BucketParameter> parameters) =>
        Assign(parameters, CapBytes(DefaultCapMb), CapBytes(FirstBucketCapMb));
}
