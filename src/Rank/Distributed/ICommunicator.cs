using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Distributed;

/// <summary>The collectives a data-parallel job needs, over CPU tensors (MPI) or CUDA tensors (NCCL).
/// Every rank must call the same collectives in the same order with the same shapes and dtypes.
/// Failures surface as <see cref="CommunicatorException"/> carrying the backend's error text.</summary>
public interface ICommunicator : IDisposable
{
    int Rank { get; }
    int WorldSize { get; }

    /// <summary>Ranks on this node and this rank's index among them (device selection).</summary>
    int LocalRank { get; }

    /// <summary>"single", "mpi (Open MPI 4.1.4)", "mpi (MPICH 4.0.2)", "nccl", ...</summary>
    string Backend { get; }

    /// <summary>Where the tensors handed to the collectives must live: the CPU (MPI, TCP, one process) or this rank's
    /// GPU (NCCL). Small host values every rank sums (token counts, checksums, flags) go here
    /// (<see cref="CommunicatorExtensions.SumAcrossRanks(ICommunicator, long[])"/>).</summary>
    Device TensorDevice => CPU;

    /// <summary>In-place element-wise sum across ranks of a contiguous tensor (float32, float64, bfloat16 where supported, int64).</summary>
    void AllReduceSum(Tensor tensor);

    /// <summary>Starts an in-place sum; the returned task completes when <paramref name="tensor"/> holds the result.
    /// Calls are executed in the order they are made (the same order on every rank).</summary>
    Task AllReduceSumAsync(Tensor tensor);

    /// <summary>Copies <paramref name="tensor"/> from <paramref name="root"/> into every rank's tensor, in place.</summary>
    void Broadcast(Tensor tensor, int root = 0);

    /// <summary>Reduce-scatter: sums <paramref name="input"/> (WorldSize equal blocks, contiguous) element-wise across
    /// ranks and leaves block <see cref="Rank"/> of the sum in <paramref name="output"/> (one block). The contents of
    /// <paramref name="input"/> are unspecified afterwards (a ring reduces in place). Uneven partitions are padded by the
    /// caller (<see cref="Partition"/>). This default sums the whole tensor and keeps its block (N times the traffic of a
    /// ring); the MPI, TCP and NCCL communicators send each block once.</summary>
    void ReduceScatterSum(Tensor input, Tensor output)
    {
        Partition.CheckReduceScatter(this, input, output);
        AllReduceSum(input);
        long n = output.numel();
        using var all = input.view(-1);
        using var mine = all.narrow(0, Rank * n, n);
        using var into = output.view(-1);
        into.copy_(mine);
    }

    /// <summary><see cref="ReduceScatterSum"/> queued behind this rank's earlier collectives; both tensors must stay alive
    /// and untouched until the task completes. This default runs it now and returns a completed task; the MPI, TCP and
    /// NCCL communicators run it on their collective thread, so backward goes on meanwhile.</summary>
    Task ReduceScatterSumAsync(Tensor input, Tensor output)
    {
        ReduceScatterSum(input, output);
        return Task.CompletedTask;
    }

    /// <summary>All-gather: every rank's <paramref name="input"/> (one block) into <paramref name="output"/> (WorldSize
    /// blocks, in rank order), on every rank. This default sums zero-filled copies (exact: x + 0 = x); the MPI, TCP and
    /// NCCL communicators send each block once.</summary>
    void AllGather(Tensor input, Tensor output)
    {
        Partition.CheckAllGather(this, input, output);
        long n = input.numel();
        using var all = output.view(-1);
        all.zero_();
        using var mine = all.narrow(0, Rank * n, n);
        using var from = input.view(-1);
        mine.copy_(from);
        AllReduceSum(output);
    }

    /// <summary>Broadcasts raw bytes (every rank passes a buffer of the same length).</summary>
    void Broadcast(byte[] buffer, int root = 0);

    void Barrier();

    /// <summary>Ends the whole job now (all ranks), with this exit code. Does not return.</summary>
    void Abort(int exitCode);
}

public sealed class CommunicatorException(string message) : IOException(message); // a peer or the network failed: reported as one line

/// <summary>How a flat buffer of <c>count</c> elements splits into one block per rank for reduce-scatter and all-gather:
/// equal blocks of ceil(count / N), the last ones padded (ZeRO's partitions).</summary>
public static class Partition
{
    public static long Block(long count, int worldSize) => (count + worldSize - 1) / worldSize;

    public static long Padded(long count, int worldSize) => Block(count, worldSize) * worldSize;

    internal static void CheckReduceScatter(ICommunicator comm, Tensor input, Tensor output) => Check(comm, full: input, block: output, "ReduceScatterSum");

    internal static void CheckAllGather(ICommunicator comm, Tensor input, Tensor output) => Check(comm, full: output, block: input, "AllGather");

    static void Check(ICommunicator comm, Tensor full, Tensor block, string call)
    {
        ArgumentNullException.ThrowIfNull(full);
        ArgumentNullException.ThrowIfNull(block);
        if (full.numel() != block.numel() * comm.WorldSize)
            throw new CommunicatorException($"{call}: the full buffer holds {full.numel()} elements, not {comm.WorldSize} blocks of {block.numel()}; " +
                "pad it to Partition.Padded(count, world size)");
        if (full.dtype != block.dtype) throw new CommunicatorException($"{call}: the buffers differ in dtype ({full.dtype}, {block.dtype})");
        if (!full.is_contiguous() || !block.is_contiguous()) throw new CommunicatorException($"{call}: both buffers must be contiguous");
    }
}

public static class CommunicatorExtensions
{
    /// <summary>Element-wise sums of small host values across ranks (every rank passes the same length), reduced on the
    /// communicator's <see cref="ICommunicator.TensorDevice"/>; returns a new array.</summary>
    public static long[] SumAcrossRanks(this ICommunicator comm, long[] values)
    {
        using var scope = NewDisposeScope();
        var sum = tensor(values).to(comm.TensorDevice);
        comm.AllReduceSum(sum);
        return sum.cpu().data<long>().ToArray();
    }

    /// <inheritdoc cref="SumAcrossRanks(ICommunicator, long[])"/>
    public static double[] SumAcrossRanks(this ICommunicator comm, double[] values)
    {
        using var scope = NewDisposeScope();
        var sum = tensor(values).to(comm.TensorDevice);
        comm.AllReduceSum(sum);
        return sum.cpu().data<double>().ToArray();
    }
}

/// <summary>One process, no communication: every collective is the identity.</summary>
public sealed class SingleProcessCommunicator : ICommunicator
{
    public int Rank => 0;
    public int WorldSize => 1;
    public int LocalRank => 0;
    public string Backend => "single";
    public void AllReduceSum(Tensor tensor) { }
    public Task AllReduceSumAsync(Tensor tensor) => Task.CompletedTask;
    public void Broadcast(Tensor tensor, int root = 0) { }
    public void Broadcast(byte[] buffer, int root = 0) { }
    public void Barrier() { }
    public void Abort(int exitCode) => Environment.Exit(exitCode);
    public void Dispose() { }
}
