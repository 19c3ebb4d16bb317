using Qwen3Tts.Rank.Distributed;
using TorchSharp;
using static TorchSharp.torch;

// Properties of the MPI communicator, checked on every rank. Every rank runs every collective in the same order
// whatever the earlier checks found, so one failure never hangs the others; the failure count is summed at the end.
int? failOnRank = args.Length == 2 && args[0] == "--fail-on-rank" ? int.Parse(args[1]) : null;
if (args.Length > 0 && failOnRank is null)
{
    Console.Error.WriteLine("usage: Qwen3Tts.MpiTests [--fail-on-rank R]");
    return 2;
}

var world = WorldDiscovery.Resolve(EnvVars.Snapshot());
// CPU tensors throughout: MPI's properties (on a GPU machine auto would otherwise pick NCCL, which takes CUDA tensors only).
using var comm = Communicators.Create(world, tensors: DeviceType.CPU);
int rank = comm.Rank, size = comm.WorldSize;
long rankSum = (long)size * (size - 1) / 2;
int checks = 0, failures = 0;

void Check(bool ok, string what)
{
    checks++;
    if (ok) return;
    failures++;
    Console.Error.WriteLine($"rank {rank}: FAILED {what}");
}

try
{
    if (failOnRank is { } doomed)
    {
        comm.Barrier();
        if (rank == doomed) throw new InvalidOperationException($"deliberate failure on rank {rank} (--fail-on-rank {doomed})");
        comm.AllReduceSum(torch.ones(4)); // the others block here until the abort kills them
        Console.Error.WriteLine($"rank {rank}: the job was not aborted");
        return 1;
    }

    Console.WriteLine($"rank {rank} of {size} (local {comm.LocalRank}), {comm.Backend}, launcher {world.Launcher}");
    Check(rank == world.Rank && size == world.WorldSize, $"MPI's rank/size {rank}/{size} match the launcher's {world.Rank}/{world.WorldSize}");

    // Sum of rank-valued tensors == size(size-1)/2 everywhere, per dtype.
    foreach (var dtype in new[] { ScalarType.Float32, ScalarType.Float64, ScalarType.Int64 })
    {
        using var t = torch.full([5, 3], rank, dtype: dtype);
        comm.AllReduceSum(t);
        Check(Same(t, torch.full([5, 3], rankSum, dtype: dtype)), $"all-reduce {dtype}: sum of ranks == {rankSum}");
    }

    // Element-wise: x[i] = i + rank sums to size*i + size(size-1)/2 (catches a wrong count or offset in the pointer).
    using (var x = torch.arange(1_000_003, dtype: ScalarType.Float64) + rank)
    {
        comm.AllReduceSum(x);
        var expected = torch.arange(1_000_003, dtype: ScalarType.Float64) * size + rankSum;
        Check(Same(x, expected), "all-reduce of 1M float64 elements is element-wise");
    }

    // In place on a view with a storage offset: only the view changes, in its own storage.
    using (var storage = torch.zeros(10, dtype: ScalarType.Float32))
    {
        var view = storage.narrow(0, 2, 5);
        view.fill_(rank + 1);
        comm.AllReduceSum(view);
        var want = torch.zeros(10, dtype: ScalarType.Float32);
        want.narrow(0, 2, 5).fill_(rankSum + size);
        Check(Same(storage, want), "all-reduce in place on a narrowed view leaves the rest of the storage alone");
    }

    // Reduce-scatter and all-gather (MPI_Reduce_scatter_block, MPI_Allgather) on a count that needs padding: rank r
    // holds x_r[i] = (i + 1)(r + 1) + 2r; the sum is (i + 1) size(size + 1)/2 + size(size - 1), zeros in the padding.
    foreach (var dtype in new[] { ScalarType.Float32, ScalarType.Float64, ScalarType.Int64 })
    {
        const int count = 1001;
        long block = Partition.Block(count, size), padded = Partition.Padded(count, size);
        var values = Enumerable.Range(0, (int)padded).Select(i => i < count ? (i + 1.0) * (rank + 1) + 2.0 * rank : 0).ToArray();
        var sum = Enumerable.Range(0, (int)padded).Select(i => i < count ? (i + 1.0) * size * (size + 1) / 2 + size * (size - 1) : 0).ToArray();
        using var input = torch.tensor(values).to(dtype);
        using var mine = torch.zeros(block, dtype: dtype);
        comm.ReduceScatterSum(input, mine);
        Check(Same(mine, torch.tensor(sum.Skip((int)(rank * block)).Take((int)block).ToArray()).to(dtype)), $"reduce-scatter {dtype}: this rank's block of the sum");
        Check(Same(input, torch.tensor(values).to(dtype)), $"reduce-scatter {dtype}: MPI leaves the input as it was");
        using var all = torch.zeros(padded, dtype: dtype);
        comm.AllGather(mine, all);
        Check(Same(all, torch.tensor(sum).to(dtype)), $"all-gather {dtype}: every rank's block in rank order");
    }

    // Broadcast a tensor and bytes from every root.
    for (int root = 0; root < Math.Min(size, 2); root++)
    {
        using var t = torch.full([7], 10 * rank + 1, dtype: ScalarType.Int64);
        comm.Broadcast(t, root);
        Check(Same(t, torch.full([7], 10 * root + 1, dtype: ScalarType.Int64)), $"broadcast of a tensor from root {root}");

        var bytes = Enumerable.Range(0, 300).Select(i => (byte)(i * (rank + 1))).ToArray();
        comm.Broadcast(bytes, root);
        Check(bytes.SequenceEqual(Enumerable.Range(0, 300).Select(i => (byte)(i * (root + 1)))), $"broadcast of bytes from root {root}");
    }

    // Eight all-reduces in flight: correct values, and each completes only after every earlier one.
    var tensors = Enumerable.Range(0, 8).Select(k => torch.full([1000 * (k + 1)], rank + k, dtype: ScalarType.Float32)).ToArray();
    var tasks = tensors.Select(comm.AllReduceSumAsync).ToArray();
    var orderChecks = tasks.Select((task, k) => task.ContinueWith(_ => tasks.Take(k).All(earlier => earlier.IsCompleted))).ToArray();
    Task.WaitAll(tasks);
    for (int k = 0; k < 8; k++)
    {
        Check(orderChecks[k].Result, $"async all-reduce {k} completed after all earlier ones");
        Check(Same(tensors[k], torch.full([1000 * (k + 1)], rankSum + (long)size * k, dtype: ScalarType.Float32)), $"async all-reduce {k} value");
        tensors[k].Dispose();
    }

    comm.Barrier();
    checks++;

    // Refusals happen before any communication, so they need no matching call on the other ranks.
    // (Without a launcher this runs on the single-process identity communicator, which refuses nothing.)
    if (comm is MpiCommunicator)
    {
        Check(Throws(() => comm.AllReduceSum(torch.ones(3, dtype: ScalarType.BFloat16))), "bfloat16 is refused with a CommunicatorException");
        Check(Throws(() => comm.AllReduceSum(torch.ones(3, 4).t())), "a non-contiguous tensor is refused with a CommunicatorException");
    }

    using var failed = torch.tensor(new long[] { failures });
    comm.AllReduceSum(failed);
    long total = failed.item<long>();
    Console.WriteLine($"rank {rank}: {checks} checks, {failures} failed here, {total} failed on all {size} ranks");
    if (rank == 0 && total == 0) Console.WriteLine($"ALL PASSED on {size} ranks ({comm.Backend})");
    return total == 0 ? 0 : 1;
}
catch (Exception e)
{
    Console.Error.WriteLine($"rank {rank} of {size} failed: {e.GetType().Name}: {e.Message}");
    comm.Abort(3);
    return 3;
}

static bool Same(Tensor actual, Tensor expected) =>
    actual.shape.SequenceEqual(expected.shape) && actual.dtype == expected.dtype && actual.eq(expected).all().item<bool>();

static bool Throws(Action action)
{
    try { action(); return false; }
    catch (CommunicatorException) { return true; }
}
