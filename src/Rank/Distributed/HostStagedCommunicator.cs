using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Distributed;

/// <summary>Runs a CPU communicator's collectives (MPI, TCP) on tensors that live on a GPU (<c>--device cuda --backend
/// mpi</c>): a tensor that is not on the CPU is copied into a fresh host buffer, reduced or broadcast there by the inner
/// communicator, and copied back into the tensor. CPU tensors go straight through. It works wherever MPI does, at the
/// cost of a device-to-host and a host-to-device copy per collective and no GPU-direct transfer: NCCL is the fast path.
///
/// The device-to-host copy is made on the calling thread when the collective is started (in libtorch it waits for
/// the work already queued on the tensor's stream, so the buffer holds what the caller wrote); an async reduce copies
/// back on the inner communicator's thread once the host sum is ready, before its task completes, so the
/// <see cref="ICommunicator"/> promise (the tensor holds the result when the task is done) still holds. The host buffer
/// belongs to no dispose scope: a scope the caller closes while the reduce is in flight must not free it.
/// Does not own the inner communicator.</summary>
public sealed class HostStagedCommunicator(ICommunicator inner) : ICommunicator
{
    /// <summary>Tests only: stage CPU tensors through a separate host buffer too, so the copy-out / reduce / copy-back
    /// path runs on a machine without a GPU.</summary>
    internal bool StageCpuTensors { get; init; }

    public ICommunicator Inner => inner;
    public int Rank => inner.Rank;
    public int WorldSize => inner.WorldSize;
    public int LocalRank => inner.LocalRank;
    public string Backend => $"{inner.Backend}, GPU tensors staged through host memory (slower than nccl)";

    /// <summary>Host buffers are what the inner communicator sees.</summary>
    public Device TensorDevice => CPU;

    bool Direct(Tensor tensor) => tensor.device_type == TorchSharp.DeviceType.CPU && !StageCpuTensors;

    public void AllReduceSum(Tensor tensor)
    {
        if (Direct(tensor))
        {
            inner.AllReduceSum(tensor);
            return;
        }
        using var host = ToHost(tensor);
        inner.AllReduceSum(host);
        CopyBack(host, tensor);
    }

    /// <summary>The tensor must stay alive and untouched until the task completes (as with every communicator).</summary>
    public Task AllReduceSumAsync(Tensor tensor)
    {
        if (Direct(tensor)) return inner.AllReduceSumAsync(tensor);
        var host = ToHost(tensor);
        Task reduce;
        try { reduce = inner.AllReduceSumAsync(host); }
        catch
        {
            host.Dispose();
            throw;
        }
        return reduce.ContinueWith(done =>
        {
            try
            {
                done.GetAwaiter().GetResult(); // a failed reduce fails this task, and nothing is copied back
                CopyBack(host, tensor);
            }
            finally { host.Dispose(); }
        }, TaskContinuationOptions.ExecuteSynchronously);
    }

    public void Broadcast(Tensor tensor, int root = 0)
    {
        if (Direct(tensor))
        {
            inner.Broadcast(tensor, root);
            return;
        }
        using var host = ToHost(tensor);
        inner.Broadcast(host, root);
        CopyBack(host, tensor);
    }

    public void Broadcast(byte[] buffer, int root = 0) => inner.Broadcast(buffer, root);

    public void ReduceScatterSum(Tensor input, Tensor output) => Staged(input, output, inner.ReduceScatterSum);

    public void AllGather(Tensor input, Tensor output) => Staged(input, output, inner.AllGather);

    /// <summary>A two-buffer collective on host copies of both buffers; only the output is copied back.</summary>
    void Staged(Tensor input, Tensor output, Action<Tensor, Tensor> collective)
    {
        if (Direct(input) && Direct(output))
        {
            collective(input, output);
            return;
        }
        using var hostInput = ToHost(input);
        using var hostOutput = ToHost(output);
        collective(hostInput, hostOutput);
        CopyBack(hostOutput, output);
    }

    public void Barrier() => inner.Barrier();

    public void Abort(int exitCode) => inner.Abort(exitCode);

    /// <summary>Nothing: the inner communicator belongs to whoever made it.</summary>
    public void Dispose() { }

    /// <summary>A contiguous CPU copy of <paramref name="tensor"/>, outside every dispose scope.</summary>
    static Tensor ToHost(Tensor tensor)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return tensor.detach().to(CPU, copy: true).contiguous().DetachFromDisposeScope();
    }

    /// <summary>Writes the host result into the caller's tensor (on any thread: no_grad and scopes are per thread).</summary>
    static void CopyBack(Tensor host, Tensor tensor)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        tensor.copy_(host);
    }
}
