using Qwen3Tts.Rank.Distributed;

namespace Qwen3Tts.Tests.Distributed;

/// <summary>Bucket assignment as DDP's: reverse registration order, small first bucket, cap after, never split.</summary>
public class BucketAssignmentTests
{
    const long MB = 1L << 20;

    static BucketParameter[] Fp32(params long[] numels) => numels.Select((n, i) => new BucketParameter($"p{i}", n, 4)).ToArray();

    [Fact]
    public void Parameters_go_in_reverse_order_first_bucket_at_the_small_cap()
    {
        // 0.25 MB each (65536 fp32). Reverse order: 5,4,3,2,1,0. First cap 0.5 MB: {5,4}; then 1 MB cap: {3,2,1,0}.
        var buckets = BucketAssignment.Assign(Fp32(65536, 65536, 65536, 65536, 65536, 65536), capBytes: MB, firstCapBytes: MB / 2);
        Assert.Equal(new[] { new[] { 5, 4 }, new[] { 3, 2, 1, 0 } }, buckets);
    }

    [Fact]
    public void A_tensor_larger_than_the_cap_travels_alone_and_is_never_split()
    {
        // bytes: p0 0.5 MB, p1 3 MB, p2 0.25 MB, p3 0.25 MB; caps 1 MB / 1 MB.
        // Reverse: p3 (0.25), p2 (0.5 total) → p1 would make 3.5 > 1: close {3,2}; p1 alone (3 MB > cap); p0 opens the next.
        var buckets = BucketAssignment.Assign(Fp32(131072, 786432, 65536, 65536), capBytes: MB, firstCapBytes: MB);
        Assert.Equal(new[] { new[] { 3, 2 }, new[] { 1 }, new[] { 0 } }, buckets);
    }

    [Fact]
    public void A_bucket_fills_exactly_to_its_cap()
    {
        // 4 × 0.25 MB exactly fill 1 MB; the fifth opens a new bucket.
        var buckets = BucketAssignment.Assign(Fp32(65536, 65536, 65536, 65536, 65536), capBytes: MB, firstCapBytes: MB);
        Assert.Equal(new[] { new[] { 4, 3, 2, 1 }, new[] { 0 } }, buckets);
    }

    [Fact]
    public void Default_caps_are_1_MB_then_25_MB()
    {
        // 1 MB tensors: bucket 0 holds one (1 MB cap), the next holds 25, the rest go on.
        var ps = Enumerable.Range(0, 30).Select(i => new BucketParameter($"p{i}", 262144, 4)).ToArray();
        var buckets = BucketAssignment.Assign(ps);
        Assert.Equal(new[] { 29 }, buckets[0]);
        Assert.Equal(Enumerable.Range(4, 25).Reverse(), buckets[1]);
        Assert.Equal(new[] { 3, 2, 1, 0 }, buckets[2]);
    }

    [Fact]
    public void Element_size_counts_bf16_is_half_of_fp32()
    {
        var bf16 = Enumerable.Range(0, 4).Select(i => new BucketParameter($"p{i}", 131072, 2)).ToArray(); // 0.25 MB each
        Assert.Equal(new[] { new[] { 3, 2, 1, 0 } }, BucketAssignment.Assign(bf16, MB, MB));
    }

    [Fact]
    public void Every_parameter_lands_in_exactly_one_bucket_and_no_bucket_exceeds_its_cap_unless_alone()
    {
        var rng = new Random(7);
        var ps = Enumerable.Range(0, 200).Select(i => new BucketParameter($"p{i}", rng.Next(0, 400_000), 4)).ToArray();
        long cap = MB, first = MB / 4;
        var buckets = BucketAssignment.Assign(ps, cap, first);
        Assert.Equal(Enumerable.Range(0, 200).Reverse(), buckets.SelectMany(b => b));
        for (int b = 0; b < buckets.Count; b++)
        {
            long bytes = buckets[b].Sum(i => ps[i].Bytes);
            Assert.True(bytes <= (b == 0 ? first : cap) || buckets[b].Length == 1, $"bucket {b}: {bytes} bytes in {buckets[b].Length} tensors");
        }
    }

    [Fact]
    public void Empty_input_gives_no_buckets_and_bad_caps_are_refused()
    {
        Assert.Empty(BucketAssignment.Assign(Array.Empty<BucketParameter>()));
        Assert.Throws<ArgumentOutOfRangeException>(() => BucketAssignment.Assign(Fp32(1), 0, 1));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => BucketAssignment.CapBytes(-1));
        Assert.Contains("--bucket_size_mb", e.Message);
        Assert.Equal(25 * MB, BucketAssignment.CapBytes(25));
    }
}
