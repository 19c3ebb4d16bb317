using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Distributed;

/// <summary>Collectives over MPI_COMM_WORLD on contiguous CPU tensors.
///
/// One dedicated thread owns MPI: it calls MPI_Init_thread (asking for MPI_THREAD_FUNNELED, which is all it needs),
/// then runs the submitted operations one at a time in submission order, then MPI_Finalize. So
/// <see cref="AllReduceSumAsync"/> lets backward keep running while earlier gradient buckets reduce, and every rank
/// issues its collectives in the order the training loop made them. The synchronous methods submit and wait.
///
/// The one call made from another thread is <see cref="Abort"/>: a failing rank cannot wait for the owner thread,
/// which may be blocked in a collective waiting for that very rank. MPI_Abort only asks the launcher to kill the job
/// (Open MPI: through ORTE/PMIx; MPICH: through the PMI connection to Hydra); this is checked under both by the
/// Mpi-category tests.</summary>
public sealed unsafe class MpiCommunicator : ICommunicator
{
    /// <summary>Elements per MPI call: MPI counts are C ints; 2^30 keeps every chunk's byte count well inside too.</summary>
    const int MaxChunk = 1 << 30;

    /// <summary>How long <see cref="Abort"/> waits between printing and calling MPI_Abort (see there).</summary>
    static readonly TimeSpan AbortGrace = TimeSpan.FromMilliseconds(300);

    readonly Thread _owner;
    readonly BlockingCollection<Operation> _queue = new();
    readonly Mpi _mpi;
    int _disposed;

    public int Rank { get; }
    public int WorldSize { get; }
    public int LocalRank { get; }
    public string Backend { get; }

    /// <summary>The full MPI_Get_library_version text.</summary>
    public string LibraryVersion { get; }

    /// <summary>The MPI thread-support level MPI_Init_thread granted (see <see cref="Mpi.ThreadFunneled"/>).</summary>
    public int ThreadLevel { get; }

    sealed record Operation(Action<Mpi> Run, TaskCompletionSource Done);

    MpiCommunicator(Mpi mpi, int localRank)
    {
        _mpi = mpi;
        var started = new TaskCompletionSource<(int Rank, int Size, int Level, string Version)>(TaskCreationOptions.RunContinuationsAsynchronously);
        _owner = new Thread(() => OwnerLoop(started)) { IsBackground = true, Name = "mpi" };
        _owner.Start();
        (Rank, WorldSize, ThreadLevel, LibraryVersion) = started.Task.GetAwaiter().GetResult();
        LocalRank = localRank;
        var firstLine = LibraryVersion.Split('\n', 2)[0].Replace('\t', ' ').Trim().TrimEnd(',');
        Backend = $"mpi ({string.Join(' ', firstLine.Split(' ', StringSplitOptions.RemoveEmptyEntries))})";
    }

    /// <summary>Loads libmpi (see <see cref="Mpi.Load"/>) and initializes MPI on a new owner thread.
    /// <paramref name="env"/> defaults to this process's environment.</summary>
    public static MpiCommunicator Start(IReadOnlyDictionary<string, string>? env = null)
    {
        env ??= EnvVars.Snapshot();
        return new MpiCommunicator(Mpi.Load(env), LocalRankFrom(env));
    }

    /// <summary>This rank's index on its node, from whichever launcher set it; 0 when none did.</summary>
    public static int LocalRankFrom(IReadOnlyDictionary<string, string> env)
    {
        foreach (var name in (string[])[EnvVars.OmpiLocalRank, EnvVars.MpichLocalRank, EnvVars.SlurmLocalId, EnvVars.LocalRank])
            if (env.TryGetValue(name, out var text) && int.TryParse(text, out var value)) return value;
        return 0;
    }

    void OwnerLoop(TaskCompletionSource<(int, int, int, string)> started)
    {
        try
        {
            var level = _mpi.InitThread(Mpi.ThreadFunneled);
            if (level < Mpi.ThreadFunneled)
                throw new CommunicatorException($"MPI_Init_thread granted thread level {level}; this communicator needs MPI_THREAD_FUNNELED (1)");
            _mpi.SetErrorsReturn();
            started.SetResult((_mpi.CommRank(), _mpi.CommSize(), level, _mpi.LibraryVersion()));
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
                op.Run(_mpi);
                op.Done.SetResult();
            }
            catch (Exception e)
            {
                op.Done.SetException(e);
            }
        }
    }

    Task Submit(Action<Mpi> run)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            _queue.Add(new Operation(run, done));
        }
        catch (InvalidOperationException)
        {
            throw new ObjectDisposedException(nameof(MpiCommunicator), "MPI has been finalized (the communicator was disposed)");
        }
        return done.Task;
    }

    void Wait(Task task)
    {
        if (Thread.CurrentThread == _owner)
            throw new InvalidOperationException("a synchronous collective was called on the MPI thread itself; it would wait for itself");
        task.GetAwaiter().GetResult();
    }

    public void AllReduceSum(Tensor tensor) => Wait(AllReduceSumAsync(tensor));

    /// <summary>The tensor must stay alive and untouched until the task completes.</summary>
    public Task AllReduceSumAsync(Tensor tensor)
    {
        var (data, count, datatype, elementSize) = Describe(tensor, "AllReduceSum");
        if (count == 0) return Task.CompletedTask;
        return Submit(mpi =>
        {
            for (long start = 0; start < count; start += MaxChunk)
                mpi.AllreduceSumInPlace((byte*)data + start * elementSize, (int)Math.Min(MaxChunk, count - start), datatype);
        });
    }

    /// <summary>Diagnostics for the allreduce bench: runs <paramref name="action"/> on the MPI owner thread with the data
    /// pointer, element count and MPI datatype of <paramref name="tensor"/>, and waits for it. The action calls
    /// <see cref="Mpi"/> directly (no queue hand-off per call) and must make the same collectives on every rank.</summary>
    internal void RunOnOwnerThread(Tensor tensor, Action<Mpi, nint, int, nint> action)
    {
        var (data, count, datatype, _) = Describe(tensor, nameof(RunOnOwnerThread));
        if (count > MaxChunk) throw new ArgumentException($"at most {MaxChunk} elements (one MPI call), got {count}", nameof(tensor));
        Wait(Submit(mpi => action(mpi, data, (int)count, datatype)));
    }

    public void Broadcast(Tensor tensor, int root = 0)
    {
        CheckRoot(root);
        var (data, count, datatype, elementSize) = Describe(tensor, "Broadcast");
        if (count == 0) return;
        Wait(Submit(mpi =>
        {
            for (long start = 0; start < count; start += MaxChunk)
                mpi.Bcast((byte*)data + start * elementSize, (int)Math.Min(MaxChunk, count - start), datatype, root);
        }));
    }

    public void Broadcast(byte[] buffer, int root = 0)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        CheckRoot(root);
        if (buffer.Length == 0) return;
        Wait(Submit(mpi =>
        {
            fixed (byte* p = buffer) mpi.Bcast(p, buffer.Length, mpi.Abi.Byte, root);
        }));
    }

    public void Barrier() => Wait(Submit(mpi => mpi.Barrier()));

    /// <summary>MPI_Reduce_scatter_block: each rank sends its blocks once; <paramref name="input"/> is left as it was.</summary>
    public void ReduceScatterSum(Tensor input, Tensor output) => Wait(ReduceScatterSumAsync(input, output));

    public Task ReduceScatterSumAsync(Tensor input, Tensor output)
    {
        Partition.CheckReduceScatter(this, input, output);
        var (send, _, datatype, _) = Describe(input, "ReduceScatterSum");
        var (receive, block, _, _) = Describe(output, "ReduceScatterSum");
        if (block == 0) return Task.CompletedTask;
        if (block > MaxChunk) throw new CommunicatorException($"ReduceScatterSum: blocks of {block} elements exceed one MPI call's {MaxChunk}");
        return Submit(mpi => mpi.ReduceScatterBlockSum((void*)send, (void*)receive, (int)block, datatype));
    }

    /// <summary>MPI_Allgather of one block per rank.</summary>
    public void AllGather(Tensor input, Tensor output)
    {
        Partition.CheckAllGather(this, input, output);
        var (send, block, datatype, _) = Describe(input, "AllGather");
        var (receive, _, _, _) = Describe(output, "AllGather");
        if (block == 0) return;
        if (block > MaxChunk) throw new CommunicatorException($"AllGather: blocks of {block} elements exceed one MPI call's {MaxChunk}");
        Wait(Submit(mpi => mpi.Allgather((void*)send, (void*)receive, (int)block, datatype)));
    }

    /// <summary>Calls MPI_Abort from this thread (see the class remarks), so it works while the owner thread is blocked.
    /// Falls back to exiting this process if MPI is already finalized or MPI_Abort returns.</summary>
    public void Abort(int exitCode)
    {
        Console.Error.WriteLine($"rank {Rank} of {WorldSize}: aborting the job with exit code {exitCode}");
        Console.Error.Flush();
        Console.Out.Flush();
        // MPICH's Hydra kills every rank as soon as the abort reaches it and drops output it has not forwarded yet
        // (seen: the failing rank's last lines lost in about one run in three); a moment lets the error get out.
        Thread.Sleep(AbortGrace);
        try
        {
            if (Volatile.Read(ref _disposed) == 0) _mpi.Abort(exitCode);
        }
        catch (CommunicatorException e)
        {
            Console.Error.WriteLine($"rank {Rank}: {e.Message}");
        }
        Environment.Exit(exitCode);
    }

    /// <summary>Runs MPI_Finalize on the owner thread after every submitted operation, then ends that thread.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        var finalized = Submit(mpi => mpi.FinalizeMpi());
        _queue.CompleteAdding();
        try
        {
            if (Thread.CurrentThread != _owner) finalized.GetAwaiter().GetResult();
        }
        finally
        {
            if (Thread.CurrentThread != _owner) _owner.Join();
            _queue.Dispose();
        }
    }

    void CheckRoot(int root)
    {
        if (root < 0 || root >= WorldSize)
            throw new ArgumentOutOfRangeException(nameof(root), root, $"root must be a rank in 0..{WorldSize - 1}");
    }

    /// <summary>The data pointer, element count, MPI datatype and element size of a contiguous CPU tensor.</summary>
    (nint Data, long Count, nint Datatype, int ElementSize) Describe(Tensor tensor, string call)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.device_type != TorchSharp.DeviceType.CPU)
            throw new CommunicatorException($"{call}: MPI needs a CPU tensor, got one on {tensor.device}; copy it to the CPU (or use the NCCL communicator)");
        if (!tensor.is_contiguous())
            throw new CommunicatorException($"{call}: the tensor (shape [{string.Join(", ", tensor.shape)}]) is not contiguous; reduce a contiguous buffer (tensor.contiguous()) and copy back");
        var (datatype, elementSize) = tensor.dtype switch
        {
            ScalarType.Float32 => (_mpi.Abi.Float, 4),
            ScalarType.Float64 => (_mpi.Abi.Double, 8),
            ScalarType.Int64 => (_mpi.Abi.Int64, 8),
            ScalarType.BFloat16 => throw new CommunicatorException(
                $"{call}: MPI has no bfloat16 type; convert the tensor to float32 for the collective and back (as the gradient reducer does)"),
            var other => throw new CommunicatorException($"{call}: dtype {other} is not supported over MPI (float32, float64, int64)"),
        };
        long count = tensor.numel();
        if (count == 0) return (0, 0, datatype, elementSize);
        // TorchSharp exposes no data_ptr(); the byte span of a one-element view starts at the tensor's first element
        // (storage offset included) and, the tensor being contiguous, the rest follow it.
        using var flat = tensor.view(-1);
        using var first = flat.narrow(0, 0, 1);
        var data = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(first.bytes));
        return (data, count, datatype, elementSize);
    }
}
