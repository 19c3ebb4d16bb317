using Qwen3Tts.Coordinator.Planning;

namespace Qwen3Tts.Tests.Planning;

public class EpochPlanTests
{
    [Fact]
    public void Order_is_a_permutation_fixed_by_seed_and_epoch()
    {
        var a = EpochPlan.Order(1000, seed: 42, epoch: 0);
        Assert.Equal(Enumerable.Range(0, 1000), a.Order());
        Assert.Equal(a, EpochPlan.Order(1000, 42, 0));
        Assert.NotEqual(a, EpochPlan.Order(1000, 42, 1));
        Assert.NotEqual(a, EpochPlan.Order(1000, 43, 0));
        Assert.NotEqual(Enumerable.Range(0, 1000), a);
    }

    [Fact]
    public void Shuffle_is_roughly_uniform()
    {
        // Position of element 0 over many epochs: each of 10 slots ~ 1/10 of the time.
        var counts = new int[10];
        for (int e = 0; e < 5000; e++) counts[Array.IndexOf(EpochPlan.Order(10, 7, e), 0)]++;
        Assert.All(counts, c => Assert.InRange(c, 400, 600));
    }

    [Fact]
    public void Global_batches_keep_every_sample_once_and_the_short_tail()
    {
        var batches = EpochPlan.GlobalBatches(10, 1, 0, 4);
        Assert.Equal(new[] { 4, 4, 2 }, batches.Select(b => b.Length));
        Assert.Equal(Enumerable.Range(0, 10), batches.SelectMany(b => b).Order());
    }

    [Fact]
    public void Rank_shares_concatenate_to_the_global_batch()
    {
        var batch = new[] { 5, 3, 9, 1, 7 };
        var shares = Enumerable.Range(0, 2).Select(r => EpochPlan.Share(batch, r, 2)).ToList();
        Assert.Equal(new[] { 5, 3, 9 }, shares[0]);
        Assert.Equal(new[] { 1, 7 }, shares[1]);
        Assert.Equal(batch, shares.SelectMany(s => s));
        Assert.Empty(EpochPlan.Share(new[] { 1 }, 1, 2));
    }
}

public class BucketedEpochPlanTests
{
    static int[] Lengths(int n, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => random.Next(20, 400)).ToArray();
    }

    [Fact]
    public void Every_sample_once_short_batch_last_and_fixed_by_seed_and_epoch()
    {
        var lengths = Lengths(103, 1);
        var batches = EpochPlan.GlobalBatches(lengths, seed: 5, epoch: 0, globalBatch: 8, bucketWindow: 4);
        Assert.Equal(Enumerable.Range(0, 103), batches.SelectMany(b => b).Order());
        Assert.Equal(13, batches.Count);
        Assert.All(batches.Take(12), b => Assert.Equal(8, b.Length));
        Assert.Equal(7, batches[^1].Length);
        Assert.Equal(batches, EpochPlan.GlobalBatches(lengths, 5, 0, 8, 4));
        Assert.NotEqual(batches, EpochPlan.GlobalBatches(lengths, 5, 1, 8, 4));
        Assert.NotEqual(batches, EpochPlan.GlobalBatches(lengths, 6, 0, 8, 4));
    }

    [Fact]
    public void A_batch_holds_neighbours_in_length_within_its_window()
    {
        // Window of 2 batches of 4 over 8 samples: the plan must be the shuffled order sorted by length, cut in two.
        int[] lengths = [50, 10, 80, 20, 70, 30, 60, 40];
        var batches = EpochPlan.GlobalBatches(lengths, seed: 3, epoch: 0, globalBatch: 4, bucketWindow: 2);
        var sets = batches.Select(b => b.Select(i => lengths[i]).Order().ToArray()).OrderBy(b => b[0]).ToList();
        Assert.Equal(new[] { 10, 20, 30, 40 }, sets[0]);
        Assert.Equal(new[] { 50, 60, 70, 80 }, sets[1]);
    }

    [Fact]
    public void Window_zero_is_plain_random_batching()
    {
        var lengths = Lengths(50, 2);
        Assert.Equal(EpochPlan.GlobalBatches(50, 9, 3, 6), EpochPlan.GlobalBatches(lengths, 9, 3, 6, bucketWindow: 0));
    }

    [Fact]
    public void Padding_fraction_by_hand_and_bucketing_pads_less_than_random()
    {
        // Shares of [10, 30] and [20, 20] on two ranks of one batch: rank 0 gets {10, 30} padded to 30 → 20 of 60 wasted,
        // rank 1 gets {20, 20} → none. 20 / (60 + 40) = 0.2.
        int[] lengths = [10, 30, 20, 20];
        Assert.Equal(0.2, EpochPlan.PaddingFraction([[0, 1, 2, 3]], lengths, worldSize: 2), 12);
        Assert.Equal(1 - 80.0 / 120, EpochPlan.PaddingFraction([[0, 1, 2, 3]], lengths, worldSize: 1), 12);

        var many = Lengths(2000, 3);
        double random = EpochPlan.PaddingFraction(EpochPlan.GlobalBatches(many, 1, 0, 16, 0), many, 2);
        double bucketed = EpochPlan.PaddingFraction(EpochPlan.GlobalBatches(many, 1, 0, 16, 32), many, 2);
        Assert.True(bucketed < random / 4, $"bucketed {bucketed:P1} vs random {random:P1}");
    }

    [Fact]
    public void Two_ranks_of_b_see_the_same_global_batches_as_one_rank_of_2b()
    {
        // The plan takes the global batch only; the world size enters in Share, which concatenates back to the batch.
        var lengths = Lengths(41, 4);
        var plan = EpochPlan.GlobalBatches(lengths, 11, 2, globalBatch: 6, bucketWindow: 3);
        foreach (var batch in plan)
            Assert.Equal(batch, Enumerable.Range(0, 2).SelectMany(r => EpochPlan.Share(batch, r, 2)));
    }
}
