using Qwen3Tts.Rank.Distributed;

namespace Qwen3Tts.Tests.Distributed;

public class ZeroPartitionTests
{
    // Parameters of 5, 3 and 4 elements; bucket 0 packs parameters 2 then 1 (7 elements, blocks of 3 for 3 ranks),
    // bucket 1 parameter 0 (5 elements, blocks of 2). Worked by hand from the packed order.
    static readonly long[] Numels = [5, 3, 4];
    static readonly int[][] Buckets = [[2, 1], [0]];

    [Theory]
    [InlineData(0, new long[] { 2, 0, 0, 3, /**/ 0, 0, 3, 2 })]
    [InlineData(1, new long[] { 2, 3, 0, 1, /**/ 1, 0, 1, 2, /**/ 0, 2, 3, 2 })]
    [InlineData(2, new long[] { 1, 2, 0, 1, /**/ 0, 4, 3, 1 })] // the tails of both buckets' padded blocks own nothing
    public void Each_rank_owns_its_block_of_every_bucket_cut_at_parameter_boundaries(int rank, long[] expected)
    {
        var partition = new ZeroPartition(Numels, Buckets, worldSize: 3, rank);
        Assert.Equal([3L, 2L], partition.BlockNumels);
        Assert.Equal([0L, 3L], partition.ShardOffsets);
        Assert.Equal(5, partition.ShardNumel);
        Assert.Equal(expected.Chunk(4).Select(s => new ZeroSegment((int)s[0], s[1], s[2], s[3])), partition.Segments);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(7)] // more ranks than some buckets have elements
    public void The_ranks_together_own_every_element_once(int world)
    {
        var owners = Numels.Select(n => new int[n]).ToArray();
        for (int r = 0; r < world; r++)
            foreach (var s in new ZeroPartition(Numels, Buckets, world, r).Segments)
                for (long i = 0; i < s.Length; i++) owners[s.Parameter][s.ParameterOffset + i]++;
        Assert.All(owners.SelectMany(o => o), count => Assert.Equal(1, count));
    }
}
