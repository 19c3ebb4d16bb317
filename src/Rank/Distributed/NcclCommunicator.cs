using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Distributed;

/// <summary>Collectives over NCCL on contiguous CUDA tensors, one GPU per rank (cuda:<see cref="LocalRank"/>). NCCL is
/// bootstrapped over another communicator (MPI under mpiexec/srun): rank 0 makes the ncclUniqueId and broadcasts its
/// 128 bytes (<see cref="ShareUniqueId"/>). That communicator stays in use for the host-side calls (byte broadcast,
/// barrier, abort) and is disposed with this one.
///
/// One dedicated thread owns the NCCL communicator, as with MPI: it makes cuda:LocalRank's primary context current,
/// joins the clique, then runs the submitted operations one at a time in submission order (so every rank issues its
/// collectives in the order the training loop made them, which NCCL requires), and destroys the communicator last.
///
/// Ordering on the GPU. TorchSharp 0.107 exposes no CUDA stream API (no stream type, no THS*Stream exports;
/// NcclCommunicatorTests checks this by reflection), so every kernel libtorch runs in this process goes to the
/// device's default stream, stream 0, which in libtorch is the legacy default stream. The collectives are enqueued on
/// that same stream 0. Hence: (1) whatever the training thread enqueued before submitting a collective (e.g. packing
/// a bucket) runs before NCCL reads the buffer, with no synchronize first; (2) after enqueueing, the owner thread
/// waits on an event recorded right behind the collective (it waits for that collective, not for later work), so the
/// returned task completes when the tensor truly holds the result, as <see cref="ICommunicator"/> promises; (3) the
/// tensor's memory cannot be reused early: the caller keeps it alive until the task completes, and the caching
/// allocator reuses freed blocks on the same stream 0, after the collective in stream order.
/// If TorchSharp ever lets code run on a side stream, (1) no longer holds for that work.</summary>
public sealed unsafe class NcclCommunicator : ICommunicator
{
    /// <summary>The legacy default stream (see the class remarks).</summary>
    const nint DefaultStream = 0;

    readonly ICommunicator _bootstrap;
    readonly Nccl _nccl;
    readonly CudaDriver _cuda;
    readonly Thread _owner;
    readonly BlockingCollection<Operation> _queue = new();
    nint _comm;
    int _disposed;
    volatile bool _failed;

    public int Rank => _bootstrap.Rank;
    public int WorldSize => _bootstrap.WorldSize;
    public int LocalRank => _bootstrap.LocalRank;
    public string Backend { get; }

    /// <summary>This rank's GPU: tensors passed to the collectives must live on it.</summary>
    public Device Device { get; }

    Device ICommunicator.TensorDevice => Device;

    sealed record Operation(Action Run, TaskCompletionSource Done);

    NcclCommunicator(ICommunicator bootstrap, Nccl nccl, CudaDriver cuda, int deviceIndex)
    {
        _bootstrap = bootstrap;
        _nccl = nccl;
        _cuda = cuda;
        Device = new Device(TorchSharp.DeviceType.CUDA, deviceIndex);
        Backend = $"nccl {Nccl.VersionText(nccl.VersionCode)} (bootstrap {bootstrap.Backend})";
        var id = ShareUniqueId(bootstrap, () => nccl.GetUniqueId().ToArray());
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _owner = new Thread(() => OwnerLoop(NcclUniqueId.From(id), deviceIndex, started)) { IsBackground = true, Name = "nccl" };
        _owner.Start();
        started.Task.GetAwaiter().GetResult();
    }

    /// <summary>Starts NCCL on cuda:LocalRank for the world of <paramref name="bootstrap"/>, which this communicator
    /// then owns (it is disposed with it, also when starting fails). <paramref name="env"/> defaults to this process's
    /// environment (for <see cref="EnvVars.NcclLibrary"/>).</summary>
    public static NcclCommunicator Start(ICommunicator bootstrap, IReadOnlyDictionary<string, string>? env = null)
    {
        try
        {
            env ??= EnvVars.Snapshot();
            var nccl = Nccl.Load(env);
            int devices = cuda.device_count();
            if (bootstrap.LocalRank >= devices)
                throw new CommunicatorException(
                    $"rank {bootstrap.Rank} has local rank {bootstrap.LocalRank} but this node has {devices} CUDA device(s): start at most one rank per GPU (mpiexec -npernode {devices}) or restrict CUDA_VISIBLE_DEVICES consistently");
            return new NcclCommunicator(bootstrap, nccl, CudaDriver.Load(), bootstrap.LocalRank);
        }
        catch
        {
            bootstrap.Dispose();
            throw;
        }
    }

    /// <summary>Rank 0 calls <paramref name="create"/> (ncclGetUniqueId) and every rank receives its bytes over
    /// <paramref name="bootstrap"/>; returns the same 128 bytes on every rank. <paramref name="create"/> runs on rank 0
    /// only. If it fails there, every rank throws (rank 0 broadcasts a failure flag instead of an id) rather than the
    /// other ranks waiting in a broadcast that never comes.</summary>
    public static byte[] ShareUniqueId(ICommunicator bootstrap, Func<byte[]> create)
    {
        ArgumentNullException.ThrowIfNull(bootstrap);
        ArgumentNullException.ThrowIfNull(create);
        // [0] = 1 when rank 0 made an id, then the id's bytes.
        var message = new byte[1 + Nccl.UniqueIdBytes];
        Exception? failure = null;
        if (bootstrap.Rank == 0)
        {
            try
            {
                var made = create();
                if (made.Length != Nccl.UniqueIdBytes)
                    throw new CommunicatorException($"ncclGetUniqueId produced {made.Length} bytes; an ncclUniqueId is {Nccl.UniqueIdBytes}");
                made.CopyTo(message, 1);
                message[0] = 1;
            }
            catch (Exception e) when (e is CommunicatorException or DllNotFoundException or EntryPointNotFoundException)
            {
                failure = e;
            }
        }
        bootstrap.Broadcast(message, root: 0);
        if (failure is not null) throw failure;
        if (message[0] != 1)
            throw new CommunicatorException($"rank {bootstrap.Rank}: rank 0 could not create the NCCL unique id (see rank 0's error)");
        return message[1..];
    }

    void OwnerLoop(NcclUniqueId id, int deviceIndex, TaskCompletionSource started)
    {
        try
        {
            _cuda.SetCurrentDevice(deviceIndex);
            _comm = _nccl.CommInitRank(WorldSize, id, Rank);
            started.SetResult();
        }
        catch (Exception e)
        {
            started.SetException(e);
            return;
        }

        foreach (var op in _queue.GetConsumingEnumerable())
        {
            try
            {
                op.Run();
                op.Done.SetResult();
            }
            catch (Exception e)
            {
                _failed = true;
                op.Done.SetException(e);
            }
        }

        // After a failed collective the communicator may be wedged, and ncclCommDestroy would wait for it.
        try
        {
            if (_failed) _nccl.CommAbort(_comm);
            else _nccl.CommDestroy(_comm);
        }
        catch (CommunicatorException e)
        {
            Console.Error.WriteLine($"rank {Rank}: {e.Message}");
        }
    }

    Task Submit(Action run)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            _queue.Add(new Operation(run, done));
        }
        catch (InvalidOperationException)
        {
            throw new ObjectDisposedException(nameof(NcclCommunicator), "the NCCL communicator has been disposed");
        }
        return done.Task;
    }

    void Wait(Task task)
    {
        if (Thread.CurrentThread == _owner)
            throw new InvalidOperationException("a synchronous collective was called on the NCCL thread itself; it would wait for itself");
        task.GetAwaiter().GetResult();
    }

    public void AllReduceSum(Tensor tensor) => Wait(AllReduceSumAsync(tensor));

    /// <summary>The tensor must stay alive and untouched until the task completes.</summary>
    public Task AllReduceSumAsync(Tensor tensor)
    {
        var (data, count, dataType) = Describe(tensor, "AllReduceSum", Device, _nccl.VersionCode);
        if (count == 0) return Task.CompletedTask;
        return Submit(() =>
        {
            _nccl.AllReduceSumInPlace(_comm, (void*)data, count, dataType, DefaultStream);
            _cuda.WaitForStream(DefaultStream);
        });
    }

    public void Broadcast(Tensor tensor, int root = 0)
    {
        CheckRoot(root);
        var (data, count, dataType) = Describe(tensor, "Broadcast", Device, _nccl.VersionCode);
        if (count == 0) return;
        Wait(Submit(() =>
        {
            _nccl.BroadcastInPlace(_comm, (void*)data, count, dataType, root, DefaultStream);
            _cuda.WaitForStream(DefaultStream);
        }));
    }

    public void ReduceScatterSum(Tensor input, Tensor output) => Wait(ReduceScatterSumAsync(input, output));

    public Task ReduceScatterSumAsync(Tensor input, Tensor output)
    {
        Partition.CheckReduceScatter(this, input, output);
        var (send, _, dataType) = Describe(input, "ReduceScatterSum", Device, _nccl.VersionCode);
        var (receive, block, _) = Describe(output, "ReduceScatterSum", Device, _nccl.VersionCode);
        if (block == 0) return Task.CompletedTask;
        return Submit(() =>
        {
            _nccl.ReduceScatterSum(_comm, (void*)send, (void*)receive, block, dataType, DefaultStream);
            _cuda.WaitForStream(DefaultStream);
        });
    }

    public void AllGather(Tensor input, Tensor output)
    {
        Partition.CheckAllGather(this, input, output);
        var (send, block, dataType) = Describe(input, "AllGather", Device, _nccl.VersionCode);
        var (receive, _, _) = Describe(output, "AllGather", Device, _nccl.VersionCode);
        if (block == 0) return;
        Wait(Submit(() =>
        {
            _nccl.AllGather(_comm, (void*)send, (void*)receive, block, dataType, DefaultStream);
            _cuda.WaitForStream(DefaultStream);
        }));
    }

    /// <summary>Host bytes go over the bootstrap communicator, queued behind the pending collectives.</summary>
    public void Broadcast(byte[] buffer, int root = 0)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        CheckRoot(root);
        Wait(Submit(() => _bootstrap.Broadcast(buffer, root)));
    }

    /// <summary>Waits for this rank's pending collectives, then for every rank (over the bootstrap communicator).</summary>
    public void Barrier() => Wait(Submit(_bootstrap.Barrier));

    /// <summary>The bootstrap communicator's abort (MPI_Abort: the launcher kills every rank, which frees the GPUs).
    /// No ncclCommAbort first: with a peer dead it can block, and the job must end regardless.</summary>
    public void Abort(int exitCode) => _bootstrap.Abort(exitCode);

    /// <summary>Runs every submitted operation, destroys the NCCL communicator on its thread, then disposes the bootstrap.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _queue.CompleteAdding();
        try
        {
            if (Thread.CurrentThread != _owner) _owner.Join();
        }
        finally
        {
            _queue.Dispose();
            _bootstrap.Dispose();
        }
    }

    void CheckRoot(int root)
    {
        if (root < 0 || root >= WorldSize)
            throw new ArgumentOutOfRangeException(nameof(root), root, $"root must be a rank in 0..{WorldSize - 1}");
    }

    /// <summary>The device pointer, element count and ncclDataType_t of a contiguous CUDA tensor on <paramref name="device"/>.
    /// Everything is checked here, before anything is submitted to NCCL. <paramref name="versionCode"/> is the loaded
    /// NCCL's (bfloat16 needs ≥ 2.10).</summary>
    public static (nint Data, long Count, int DataType) Describe(Tensor tensor, string call, Device device, int versionCode)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.device_type != TorchSharp.DeviceType.CUDA)
            throw new CommunicatorException(
                $"{call}: NCCL needs a CUDA tensor, got a {tensor.dtype} tensor on {tensor.device}; move it to {device} (tensor.to({device})) or use the MPI backend (--backend mpi)");
        if (tensor.device_index != device.index)
            throw new CommunicatorException(
                $"{call}: the {tensor.dtype} tensor is on {tensor.device} but this rank's NCCL communicator is on {device}; move it to {device}");
        if (!tensor.is_contiguous())
            throw new CommunicatorException(
                $"{call}: the {tensor.dtype} tensor on {tensor.device} (shape [{string.Join(", ", tensor.shape)}]) is not contiguous; reduce a contiguous buffer (tensor.contiguous()) and copy back");
        var (dataType, _) = Nccl.DataTypeOf(tensor.dtype, call);
        if (dataType == Nccl.BFloat16 && versionCode < Nccl.BFloat16MinVersion)
            throw new CommunicatorException($"{call}: NCCL {Nccl.VersionText(versionCode)} has no bfloat16 (needs 2.10 or later); upgrade NCCL or reduce in float32");
        long count = tensor.numel();
        return count == 0 ? (0, 0, dataType) : (DataPointer(tensor), count, dataType);
    }

    /// <summary>The address of the first element. TorchSharp 0.107 has no data_ptr(); for a CUDA tensor its
    /// <c>bytes</c> would copy to the host, so the pointer comes from THSTensor_data (at::Tensor::data_ptr, storage
    /// offset included), the native call behind TorchSharp's own <c>data&lt;T&gt;()</c>.</summary>
    public static nint DataPointer(Tensor tensor)
    {
        var data = THSTensor_data(tensor.Handle);
        if (data == 0) throw new CommunicatorException($"the {tensor.dtype} tensor on {tensor.device} has no data pointer");
        return data;
    }

    [DllImport("LibTorchSharp")]
    static extern nint THSTensor_data(nint handle);
}
