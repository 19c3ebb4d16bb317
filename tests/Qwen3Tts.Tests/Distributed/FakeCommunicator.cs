using System.Collections.Concurrent;
using Qwen3Tts.Rank.Distributed;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Distributed;

/// <summary>N in-process ranks for tests. Each rank's view runs its collectives, synchronous and async alike, on one
/// worker thread in call order (as a real backend orders them); a collective exchanges through shared slots between
/// two barrier phases. Sums add the ranks' contributions in rank order in fp64 (int64 for integers), so every rank
/// gets bit-identical results.</summary>
public sealed class FakeWorld : IDisposable
{
    readonly Barrier barrier;
    readonly Tensor?[] slots;
    readonly byte[]?[] byteSlots;

    public FakeWorld(int size)
    {
        Size = size;
        barrier = new Barrier(size);
        slots = new Tensor?[size];
        byteSlots = new byte[]?[size];
        Ranks = Enumerable.Range(0, size).Select(r => new FakeCommunicator(this, r)).ToArray();
    }

    public int Size { get; }
    public IReadOnlyList<FakeCommunicator> Ranks { get; }

    /// <summary>Runs body(rank) on one thread per rank and rethrows the first failure.</summary>
    public static void Run(int size, Action<FakeCommunicator> body)
    {
        using var world = new FakeWorld(size);
        var errors = new ConcurrentQueue<Exception>();
        var threads = world.Ranks.Select(comm => new Thread(() =>
        {
            try { body(comm); }
            catch (Exception e) { errors.Enqueue(e); world.barrier.RemoveParticipant(); }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        if (!errors.IsEmpty) throw new AggregateException(errors);
    }

    internal void Sum(int rank, Tensor tensor)
    {
        using var scope = NewDisposeScope();
        var wide = tensor.dtype == ScalarType.Int64 ? ScalarType.Int64 : ScalarType.Float64;
        slots[rank] = tensor.detach().to(wide, copy: true).cpu().DetachFromDisposeScope();
        barrier.SignalAndWait();
        var total = slots[0]!.clone();
        for (int r = 1; r < Size; r++) total.add_(slots[r]!);
        barrier.SignalAndWait();
        using (no_grad()) tensor.copy_(total);
        slots[rank]!.Dispose();
        slots[rank] = null;
    }

    internal void Broadcast(int rank, Tensor tensor, int root)
    {
        if (rank == root) slots[rank] = tensor.detach().cpu().clone();
        barrier.SignalAndWait();
        using (no_grad()) if (rank != root) tensor.copy_(slots[root]!);
        barrier.SignalAndWait();
        if (rank == root) { slots[rank]!.Dispose(); slots[rank] = null; }
    }

    internal void Broadcast(int rank, byte[] buffer, int root)
    {
        if (rank == root) byteSlots[root] = buffer;
        barrier.SignalAndWait();
        if (rank != root) byteSlots[root]!.CopyTo(buffer, 0);
        barrier.SignalAndWait();
    }

    internal void Barrier() => barrier.SignalAndWait();

    public void Dispose()
    {
        foreach (var r in Ranks) r.Dispose();
        barrier.Dispose();
    }
}

/// <summary>One rank's view of a <see cref="FakeWorld"/>.</summary>
public sealed class FakeCommunicator : ICommunicator
{
    readonly FakeWorld world;
    readonly BlockingCollection<Action> queue = new();
    readonly Thread worker;

    internal FakeCommunicator(FakeWorld world, int rank)
    {
        this.world = world;
        Rank = rank;
        worker = new Thread(() => { foreach (var op in queue.GetConsumingEnumerable()) op(); }) { IsBackground = true, Name = $"fake-comm-{rank}" };
        worker.Start();
    }

    public int Rank { get; }
    public int WorldSize => world.Size;
    public int LocalRank => Rank;
    public string Backend => "fake";

    /// <summary>How many async all-reduces this rank has started (tests check that no sync runs on accumulation steps).</summary>
    public int AsyncCalls;
    public int SyncCalls;

    /// <summary>The element count of each async all-reduce, in call order (tests check bucket order with it).</summary>
    public readonly ConcurrentQueue<long> AsyncSizes = new();

    Task Enqueue(Action op)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        queue.Add(() =>
        {
            try { op(); done.SetResult(); }
            catch (Exception e) { done.SetException(e); }
        });
        return done.Task;
    }

    public void AllReduceSum(Tensor tensor) { Interlocked.Increment(ref SyncCalls); Enqueue(() => world.Sum(Rank, tensor)).GetAwaiter().GetResult(); }
    public Task AllReduceSumAsync(Tensor tensor) { Interlocked.Increment(ref AsyncCalls); AsyncSizes.Enqueue(tensor.numel()); return Enqueue(() => world.Sum(Rank, tensor)); }
    public void Broadcast(Tensor tensor, int root = 0) => Enqueue(() => world.Broadcast(Rank, tensor, root)).GetAwaiter().GetResult();
    public void Broadcast(byte[] buffer, int root = 0) => Enqueue(() => world.Broadcast(Rank, buffer, root)).GetAwaiter().GetResult();
    public void Barrier() => Enqueue(world.Barrier).GetAwaiter().GetResult();
    public void Abort(int exitCode) => throw new CommunicatorException($"rank {Rank} aborted with exit code {exitCode}");

    public void Dispose() => queue.CompleteAdding();
}
