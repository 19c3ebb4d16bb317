using System.Net;
using System.Net.Sockets;
using Qwen3Tts.Rank.Distributed;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Distributed;

/// <summary>Reduce-scatter and all-gather (ZeRO's two halves of an all-reduce) against hand-computed results, on 1, 2
/// and 3 ranks, with a count that does not divide evenly (padded to equal blocks): the TCP ring as threads of this
/// process, the interface's default (all-reduce based) implementations, and one process alone. MPI's
/// (MPI_Reduce_scatter_block, MPI_Allgather) are checked by the MPI driver under both launchers.</summary>
public class ReduceScatterAllGatherTests
{
    static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    static T[] OnRanks<T>(int n, Func<int, T> body)
    {
        var tasks = Enumerable.Range(0, n).Select(r => Task.Factory.StartNew(() => body(r), TaskCreationOptions.LongRunning)).ToArray();
        Assert.True(Task.WaitAll(tasks, Limit), $"ranks still running after {Limit.TotalSeconds} s");
        return tasks.Select(t => t.Result).ToArray();
    }

    /// <param name="defaults">wrap each rank so that reduce-scatter and all-gather are the interface's default
    /// implementations over the ring's all-reduce.</param>
    static ICommunicator[] World(int n, bool defaults)
    {
        if (n == 1) return [new SingleProcessCommunicator()];
        int port = FreePort();
        var settings = new TcpSettings("127.0.0.1", port, TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(60), "job-secret");
        var tcp = OnRanks(n, r => TcpCommunicator.Connect(r, n, r, settings));
        return defaults ? tcp.Select(c => (ICommunicator)new DefaultOnly(c)).ToArray() : tcp;
    }

    /// <summary>Only the required members: reduce-scatter and all-gather fall to the interface's defaults.</summary>
    sealed class DefaultOnly(ICommunicator inner) : ICommunicator
    {
        public int Rank => inner.Rank;
        public int WorldSize => inner.WorldSize;
        public int LocalRank => inner.LocalRank;
        public string Backend => "defaults over " + inner.Backend;
        public void AllReduceSum(Tensor tensor) => inner.AllReduceSum(tensor);
        public Task AllReduceSumAsync(Tensor tensor) => inner.AllReduceSumAsync(tensor);
        public void Broadcast(Tensor tensor, int root = 0) => inner.Broadcast(tensor, root);
        public void Broadcast(byte[] buffer, int root = 0) => inner.Broadcast(buffer, root);
        public void Barrier() => inner.Barrier();
        public void Abort(int exitCode) => inner.Abort(exitCode);
        public void Dispose() => inner.Dispose();
    }

    public static TheoryData<int, bool, ScalarType> Cases()
    {
        var data = new TheoryData<int, bool, ScalarType>();
        foreach (int n in new[] { 1, 2, 3 })
            foreach (bool defaults in new[] { false, true })
                foreach (var dtype in new[] { ScalarType.Float32, ScalarType.Float64, ScalarType.Int64 })
                    if (!(n == 1 && defaults)) data.Add(n, defaults, dtype);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Each_rank_gets_its_block_of_the_sum_and_every_rank_gets_every_block(int n, bool defaults, ScalarType dtype)
    {
        const int count = 10; // with 3 ranks: blocks of 4, the last two elements padding
        long block = Partition.Block(count, n), padded = Partition.Padded(count, n);
        Assert.Equal(padded, block * n);
        Assert.True(padded >= count && padded - count < n);
        var comms = World(n, defaults);
        try
        {
            var results = OnRanks(n, r =>
            {
                // Rank r holds x_r[i] = (i + 1)(r + 1) + 2r for the real elements, zeros in the padding.
                var values = Enumerable.Range(0, (int)padded).Select(i => i < count ? (i + 1) * (r + 1) + 2.0 * r : 0).ToArray();
                using var input = tensor(values).to(dtype);
                using var mine = zeros(block, dtype: dtype);
                comms[r].ReduceScatterSum(input, mine);

                // Then every rank's block back into the whole: block k of rank k, for every k.
                using var gathered = zeros(padded, dtype: dtype);
                comms[r].AllGather(mine, gathered);
                return (Mine: mine.to(ScalarType.Float64).data<double>().ToArray(), All: gathered.to(ScalarType.Float64).data<double>().ToArray());
            });
            // By hand: sum over r of (i + 1)(r + 1) + 2r = (i + 1) n(n + 1)/2 + n(n - 1).
            var sum = Enumerable.Range(0, (int)padded).Select(i => i < count ? (i + 1) * n * (n + 1) / 2.0 + n * (n - 1) : 0).ToArray();
            for (int r = 0; r < n; r++)
            {
                Assert.Equal(sum.Skip((int)(r * block)).Take((int)block), results[r].Mine);
                Assert.Equal(sum, results[r].All);
            }
        }
        finally
        {
            foreach (var c in comms) c.Dispose();
        }
    }

    [Fact]
    public void Buffers_that_are_not_whole_blocks_are_refused_naming_the_padding()
    {
        using var comm = new SingleProcessCommunicator();
        ICommunicator c = comm;
        var e = Assert.Throws<CommunicatorException>(() => c.ReduceScatterSum(zeros(10), zeros(4)));
        Assert.Contains("not 1 blocks of 4", e.Message);
        Assert.Contains("Partition.Padded", e.Message);
        Assert.Throws<CommunicatorException>(() => c.AllGather(zeros(4), zeros(4, dtype: ScalarType.Float64)));
    }
}
