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

    /// <summary>Broadcasts raw bytes (every rank passes a buffer of the same length).</summary>
    void Broadcast(byte[] buffer, int root = 0);

    void Barrier();

    /// <summary>Ends the whole job now (all ranks), with this exit code. Does not return.</summary>
    void Abort(int exitCode);
}

public sealed class CommunicatorException(string message) : IOException(message); // a peer or the network failed: reported as one line

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
