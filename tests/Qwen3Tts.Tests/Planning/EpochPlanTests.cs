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
