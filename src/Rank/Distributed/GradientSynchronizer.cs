using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using TorchSharp;
using Qwen3Tts.Model.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Distributed;

/// <summary>Seconds one optimizer step spent on gradient sync. <see cref="ExposedSeconds"/> is what the step waited
/// for (all of <c>SynchronizeAll</c>; in overlap mode the time blocked in <c>WaitAll</c>, copy-back included);
/// <see cref="PackSeconds"/> flattening buckets before launch; <see cref="InFlightSeconds"/> the summed launch →
/// completion time of the async reduces (how much communication there was to hide).</summary>
public sealed record SyncTimings(double ExposedSeconds, double PackSeconds, double InFlightSeconds, int Buckets, long Bytes)
{
    public static readonly SyncTimings None = new(0, 0, 0, 0, 0);
}

/// <summary>Averages the master gradients across ranks, bucket by bucket (see <see cref="BucketAssignment"/>): the
/// buckets are contiguous views of one flat fp32 gradient buffer; each micro-step's gradients are added into their
/// bucket and dropped (a parameter without a gradient on this rank contributes zeros, so every rank reduces identical
/// buffers, as Horovod does); each bucket is summed across ranks and divided by the world size, and every master's
/// <c>.grad</c> becomes a view of its slice (DDP's gradient_as_bucket_view: the bucket is the only fp32 gradient).
/// Those views hold until the next step's first gradient reaches the bucket, which zeroes it: zero the grads (the
/// optimizer's ZeroGrad) after each step. Buckets go out in index order on every rank. With one rank every call
/// returns at once and nothing is copied.
///
/// Three ways to use it, all once per optimizer step and never on accumulation micro-steps:
/// (a) after the window's last backward and <c>AccumulateGradsToMaster</c>, <see cref="SynchronizeAll"/>;
/// (b) after backward: <see cref="Launch"/> right after the last backward, which packs and starts each bucket's
///     reduce in turn, then <see cref="WaitAll"/> before clipping;
/// (c) overlapped with backward (what DDP does): run the window's last forward and backward inside
///     <see cref="ObserveLastMicroStep"/>, then <see cref="WaitAll"/>. The model reads every parameter through
///     <see cref="ParameterUse"/>, so this synchronizer counts each parameter's reads in forward and is handed each
///     read's gradient in backward. A parameter is final when all its reads have reported: its gradient (earlier
///     micro-steps' <c>.grad</c>, packed when the step began, plus this step's read gradients, summed in fp32) is
///     then complete in its bucket, and a bucket whose parameters are all final goes out at once, provided every
///     lower-numbered bucket has (so every rank launches in index order). Parameters never read this step are final
///     from the first gradient on; buckets still waiting when backward returns (a read whose gradient never came)
///     go out in <see cref="WaitAll"/>.
/// In bf16 mode pass the compute parameters: packing adds a compute gradient that has not reached its master yet
/// (master + compute, in fp32, exactly what <c>AccumulateGradsToMaster</c> would produce) and drops it, so calling
/// <c>AccumulateGradsToMaster</c> before or after <see cref="Launch"/> gives the same result. In mode (c) the taps
/// sit on the compute parameters and their bf16 read gradients are added into the fp32 bucket; autograd's own bf16
/// <c>.grad</c> of that step is redundant and <see cref="WaitAll"/> drops it (so <c>AccumulateGradsToMaster</c> may be
/// skipped on that micro-step, and is harmless if called).
///
/// With ZeRO (<paramref name="zeroStage"/> 1 or 2) each bucket is padded to N equal blocks and reduce-scattered instead:
/// rank r receives block r of every bucket, averaged, in <see cref="ShardGradient"/> (its <see cref="Partition"/>), and
/// no rank keeps the whole reduced gradient. The buckets are then also where micro-steps accumulate: <see cref="Accumulate"/>
/// adds each micro-step's gradients (master or compute <c>.grad</c>, in fp32) into them and drops those, so no fp32
/// master gradient exists; a bucket is zeroed once reduced. Stage 1 reduces once per optimizer step as above; stage 2
/// on every micro-step (<see cref="ReducesEveryMicroStep"/>), each adding into the shard.
/// <see cref="ClearShardGradient"/> starts the next step.
///
/// Callbacks come from autograd, on the thread that called backward (CPU) or an autograd device thread (CUDA); the
/// overlap state is guarded by one lock. An error inside a callback cannot be thrown through native autograd (it
/// would end the process), so it is kept and rethrown by <see cref="WaitAll"/>.</summary>
public sealed class GradientSynchronizer : IDisposable, IParameterUseObserver
{
    readonly ICommunicator comm;
    readonly Parameter[] masters;
    readonly Parameter[]? compute;
    readonly string[] names;
    readonly Bucket[] buckets;
    readonly Stopwatch clock = new();
    int launched;
    double packSeconds;

    // Mode (c) state, guarded by `gate`.
    readonly object gate = new();
    readonly Dictionary<Parameter, int> indexOf = new(ReferenceEqualityComparer.Instance);
    readonly int[] bucketOf, slotOf;
    readonly int[] uses, pending, bucketPending;
    bool overlapping, backwardStarted;
    Exception? callbackError;
    readonly List<BucketLaunch> launches = [];

    // Stages 0 and 1: every bucket a view of one flat gradient buffer (stage 2 allocates its buckets per micro-step).
    readonly Tensor? flat;

    // ZeRO state: this rank's reduced gradient, and whether it holds a sum to add to (stage 2's later micro-steps).
    readonly int zeroStage;
    readonly Tensor? shardGradient;
    Tensor? received;
    bool shardHolds, addToShard;

    sealed class Bucket(int[] parameters, long[] offsets, long length)
    {
        public int[] Parameters { get; } = parameters;
        public long[] Offsets { get; } = offsets;
        /// <summary>Elements of the packed (with ZeRO, padded) bucket.</summary>
        public long Length { get; } = length;
        /// <summary>The packed gradients; with ZeRO-2 allocated at the bucket's first gradient and freed once reduced.</summary>
        public Tensor? Flat { get; set; }
        /// <summary>Stage 0: the bucket holds the last reduce's averaged gradient, which the masters' .grad are views of;
        /// the next step's first gradient zeroes it.</summary>
        public bool HoldsReduced { get; set; }
        /// <summary>ZeRO: this rank's block of the bucket in the shard gradient, and in the buffer a stage-2 reduce receives into.</summary>
        public Tensor? Shard { get; set; }
        public Tensor? Received { get; set; }
        public Task? InFlight { get; set; }
        public double LaunchedAt { get; set; }
        public double CompletedAt { get; set; }
    }

    /// <param name="masters">the fp32 master parameters in registration order (TrainableModel.MasterParameters).</param>
    /// <param name="computeParameters">bf16 mode: the compute parameters in the same order (TrainableModel.ComputeParameters); null or the masters themselves in fp32 mode.</param>
    /// <param name="capBytes">--bucket_size_mb in bytes; the first bucket is capped at min(1 MB, cap).</param>
    /// <param name="zeroStage">0: all-reduce; 1 or 2: reduce-scatter into <see cref="ShardGradient"/> (see the remarks).</param>
    public GradientSynchronizer(IReadOnlyList<(string Name, Parameter Parameter)> masters, ICommunicator comm,
        long? capBytes = null, IReadOnlyList<(string Name, Parameter Parameter)>? computeParameters = null, int zeroStage = 0)
    {
        if (zeroStage is < 0 or > 2) throw new ArgumentOutOfRangeException(nameof(zeroStage), zeroStage, "--zero_stage must be 0, 1 or 2");
        this.comm = comm;
        this.zeroStage = zeroStage;
        this.masters = masters.Select(p => p.Parameter).ToArray();
        names = masters.Select(p => p.Name).ToArray();
        for (int i = 0; i < this.masters.Length; i++)
            if (this.masters[i].dtype != ScalarType.Float32)
                throw new ArgumentException($"gradient sync reduces fp32 master gradients, but '{names[i]}' is {this.masters[i].dtype}; pass TrainableModel.MasterParameters", nameof(masters));
        if (computeParameters is not null && !ReferenceEquals(computeParameters, masters))
        {
            if (computeParameters.Count != masters.Count || computeParameters.Where((c, i) => c.Name != names[i]).Any())
                throw new ArgumentException("compute parameters must match the masters name for name (TrainableModel.ComputeParameters)", nameof(computeParameters));
            compute = computeParameters.Select(p => p.Parameter).ToArray();
        }

        Device = this.masters.Length > 0 ? this.masters[0].device : CPU;
        for (int i = 0; i < this.masters.Length; i++)
            if (this.masters[i].device_type != Device.type || this.masters[i].device_index != Device.index)
                throw new ArgumentException($"gradient sync packs every master gradient into buckets on one device, but '{names[i]}' is on {this.masters[i].device} and '{names[0]}' on {Device}; move the model to one device", nameof(masters));

        long cap = capBytes ?? BucketAssignment.CapBytes(BucketAssignment.DefaultCapMb);
        long first = Math.Min(cap, BucketAssignment.CapBytes(BucketAssignment.FirstBucketCapMb));
        Assignment = BucketAssignment.Assign(this.masters.Select((p, i) => new BucketParameter(names[i], p.numel(), 4)).ToArray(), cap, first);
        var tapped = compute ?? this.masters;
        for (int i = 0; i < tapped.Length; i++) indexOf[tapped[i]] = i;
        bucketOf = new int[tapped.Length];
        slotOf = new int[tapped.Length];
        for (int b = 0; b < Assignment.Count; b++)
            for (int k = 0; k < Assignment[b].Length; k++) (bucketOf[Assignment[b][k]], slotOf[Assignment[b][k]]) = (b, k);
        uses = new int[tapped.Length];
        pending = new int[tapped.Length];
        bucketPending = new int[Assignment.Count];
        if (comm.WorldSize == 1)
        {
            buckets = [];
            return;
        }
        if (zeroStage > 0)
        {
            Partition = new ZeroPartition(this.masters.Select(p => p.numel()).ToArray(), Assignment, comm.WorldSize, comm.Rank);
            shardGradient = zeros(Partition.ShardNumel, ScalarType.Float32, Device).DetachFromDisposeScope();
        }
        buckets = Assignment.Select(indices =>
        {
            var offsets = new long[indices.Length];
            long n = 0;
            for (int k = 0; k < indices.Length; k++) (offsets[k], n) = (n, n + this.masters[indices[k]].numel());
            // Reduce-scatter pads the bucket to N equal blocks; the padding stays zero.
            return new Bucket(indices, offsets, zeroStage > 0 ? Distributed.Partition.Padded(n, comm.WorldSize) : n);
        }).ToArray();
        if (zeroStage < 2)
        {
            // One flat fp32 buffer on the parameters' device (packing, the NCCL reduce and unpacking never leave it; MPI
            // stages through the host), every bucket a contiguous view of it, in bucket order.
            flat = zeros(buckets.Sum(b => b.Length), ScalarType.Float32, Device).DetachFromDisposeScope();
            long at = 0;
            foreach (var bucket in buckets) (bucket.Flat, at) = (flat.narrow(0, at, bucket.Length).DetachFromDisposeScope(), at + bucket.Length);
        }
        // The views a reduce-scatter writes into live as long as the buckets: an async reduce may outlast any scope.
        for (int b = 0; b < buckets.Length && shardGradient is not null; b++)
            buckets[b].Shard = shardGradient.narrow(0, Partition!.ShardOffsets[b], Partition.BlockNumels[b]).DetachFromDisposeScope();
    }

    /// <summary>With ZeRO and more than one rank: the elements this rank owns; else null.</summary>
    public ZeroPartition? Partition { get; }

    /// <summary>With ZeRO: this rank's block of every bucket's averaged gradient, laid out as <see cref="Partition"/>; valid
    /// after the step's last reduce, until <see cref="ClearShardGradient"/>.</summary>
    public Tensor ShardGradient => shardGradient ?? throw new InvalidOperationException("only a ZeRO synchronizer (zero stage 1 or 2, several ranks) holds a shard gradient");

    /// <summary>Stage 2 reduces after every micro-step's backward (the trainer then syncs on each), adding into the shard.</summary>
    public bool ReducesEveryMicroStep => zeroStage == 2 && buckets.Length > 0;

    /// <summary>ZeRO: the next reduce overwrites the shard gradient (the optimizer calls this with its zero_grad).</summary>
    public void ClearShardGradient() => shardHolds = false;

    /// <summary>After a micro-step that does not reduce, with several ranks: adds its gradients (master or compute
    /// <c>.grad</c>) into the buckets in fp32 and drops them, and returns true; no fp32 master gradient is made. With one
    /// rank returns false: the caller folds them into the masters (TrainableModel.AccumulateGradsToMaster).</summary>
    public bool Accumulate()
    {
        if (buckets.Length == 0) return false;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var bucket in buckets) Pack(bucket);
        return true;
    }

    /// <summary>The masters' device, where the buckets live.</summary>
    public Device Device { get; }

    /// <summary>The flat fp32 bucket buffers in bucket order (none with one rank). For tests.</summary>
    internal IReadOnlyList<Tensor> BucketBuffers => buckets.Select(b => b.Flat!).ToArray();

    /// <summary>False with one rank: every call returns at once and nothing is tapped or copied.</summary>
    public bool ReducesAcrossRanks => buckets.Length > 0;

    /// <summary>Buckets of indices into the masters, bucket 0 reduced first.</summary>
    public IReadOnlyList<int[]> Assignment { get; }

    /// <summary>The last step's sync timings (reset by each <see cref="SynchronizeAll"/> / <see cref="Launch"/>).</summary>
    public SyncTimings LastStep { get; private set; } = SyncTimings.None;

    /// <summary>Each bucket launch of the last step, in launch order: bucket index, seconds since the step's sync began
    /// and whether it went out from inside backward (mode (c)). For tests and tracing.</summary>
    public IReadOnlyList<BucketLaunch> LastLaunches
    {
        get { lock (gate) return launches.ToArray(); }
    }

    /// <summary>Mode (a): reduce every bucket now, in index order, blocking.</summary>
    public void SynchronizeAll()
    {
        if (buckets.Length == 0) return;
        BeginReduce();
        clock.Restart();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        double pack = 0;
        foreach (var bucket in buckets)
        {
            double t0 = clock.Elapsed.TotalSeconds;
            Pack(bucket);
            pack += clock.Elapsed.TotalSeconds - t0;
            if (shardGradient is null) comm.AllReduceSum(Filled(bucket));
            else comm.ReduceScatterSum(Filled(bucket), ShardTarget(bucket));
            Unpack(bucket);
        }
        shardHolds = shardGradient is not null;
        double total = clock.Elapsed.TotalSeconds;
        LastStep = new SyncTimings(total - pack, pack, total - pack, buckets.Length, TotalBytes);
    }

    /// <summary>Mode (b): packs and starts every bucket's reduce in index order; returns once all are launched.
    /// Call once per optimizer step, after the last micro-batch's backward; then <see cref="WaitAll"/>.</summary>
    public void Launch()
    {
        if (buckets.Length == 0) return;
        if (launched != 0 || overlapping) throw new InvalidOperationException("Launch called twice (or inside ObserveLastMicroStep) without WaitAll: gradient sync runs once per optimizer step");
        BeginReduce();
        clock.Restart();
        packSeconds = 0;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        lock (gate) launches.Clear();
        foreach (var bucket in buckets)
        {
            double t0 = clock.Elapsed.TotalSeconds;
            Pack(bucket);
            packSeconds += clock.Elapsed.TotalSeconds - t0;
            LaunchNext(duringBackward: false);
        }
    }

    /// <summary>Starts bucket number <see cref="launched"/>'s reduce (caller holds the order).</summary>
    void LaunchNext(bool duringBackward)
    {
        var bucket = buckets[launched];
        bucket.LaunchedAt = clock.Elapsed.TotalSeconds;
        lock (gate) launches.Add(new BucketLaunch(launched, bucket.LaunchedAt, duringBackward));
        // With ZeRO the bucket's part of the shard is final as soon as its reduce completes: it is unpacked right there (on
        // the communicator's thread), so a ZeRO-2 bucket is freed while backward is still producing the next ones.
        bucket.InFlight = Reduce(bucket).ContinueWith(t =>
        {
            bucket.CompletedAt = clock.Elapsed.TotalSeconds;
            t.GetAwaiter().GetResult();
            if (shardGradient is not null) Unpack(bucket);
        }, TaskContinuationOptions.ExecuteSynchronously);
        launched++;
    }

    /// <summary>Mode (c): call before the window's last forward; run that forward and its backward inside the returned
    /// scope (it makes this synchronizer the <see cref="ParameterUse"/> observer of this thread), then
    /// <see cref="WaitAll"/>. Packs what earlier micro-steps accumulated (master and compute <c>.grad</c>) now, so the
    /// buckets need only this step's read gradients added. With one rank it returns an empty scope and the model
    /// runs untapped.</summary>
    public IDisposable ObserveLastMicroStep()
    {
        if (buckets.Length == 0) return NoScope.Instance;
        if (launched != 0 || overlapping) throw new InvalidOperationException("ObserveLastMicroStep called twice without WaitAll: gradient sync runs once per optimizer step");
        BeginReduce();
        clock.Restart();
        using (var scope = NewDisposeScope())
        using (no_grad())
            foreach (var bucket in buckets) Pack(bucket);
        packSeconds = clock.Elapsed.TotalSeconds;
        lock (gate)
        {
            Array.Clear(uses);
            launches.Clear();
            overlapping = true;
            backwardStarted = false;
            callbackError = null;
        }
        return ParameterUse.Observe(this);
    }

    void IParameterUseObserver.Used(Parameter parameter)
    {
        lock (gate)
        {
            if (!overlapping) return; // an observer scope that outlived its step: nothing to count
            if (backwardStarted)
                throw new InvalidOperationException("forward read a parameter after backward began in the overlapped micro-step; run one forward, then one backward, inside ObserveLastMicroStep");
            uses[IndexOf(parameter)]++;
        }
    }

    /// <summary>Adds the read's gradient into its bucket and takes it: autograd's own copy in .grad would only be dropped
    /// (bf16) or overwritten (fp32) by <see cref="WaitAll"/>, so it is never made.</summary>
    bool IParameterUseObserver.GradientReady(Parameter parameter, Tensor grad)
    {
        lock (gate)
        {
            if (!overlapping || callbackError is not null) return false;
            try
            {
                OnGradient(parameter, grad);
                return true;
            }
            catch (Exception e)
            {
                callbackError = e; // rethrown by WaitAll: an exception must not cross native autograd
                return false;
            }
        }
    }

    void OnGradient(Parameter parameter, Tensor grad)
    {
        if (!backwardStarted)
        {
            // Forward is over: the read counts are final. Parameters read 0 times are complete already.
            backwardStarted = true;
            Array.Copy(uses, pending, uses.Length);
            Array.Clear(bucketPending);
            for (int i = 0; i < pending.Length; i++)
                if (pending[i] > 0) bucketPending[bucketOf[i]]++;
        }
        int index = IndexOf(parameter);
        if (pending[index] == 0)
            throw new InvalidOperationException($"'{names[index]}' reported more gradients than forward read it ({uses[index]}); a read bypassed ParameterUse.Observe's counting");
        double t0 = clock.Elapsed.TotalSeconds;
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            int b = bucketOf[index];
            var view = Filled(buckets[b]).narrow(0, buckets[b].Offsets[slotOf[index]], grad.numel());
            view.add_(grad.reshape(-1), Scalars.One); // a bf16 read gradient adds into the fp32 bucket in fp32 (Scalars: why)
        }
        packSeconds += clock.Elapsed.TotalSeconds - t0;
        if (--pending[index] == 0) bucketPending[bucketOf[index]]--;
        while (launched < buckets.Length && bucketPending[launched] == 0) LaunchNext(duringBackward: true);
    }

    int IndexOf(Parameter parameter) =>
        indexOf.TryGetValue(parameter, out int index) ? index : throw new InvalidOperationException(
            $"a parameter of shape [{string.Join(", ", parameter.shape)}] that this synchronizer does not reduce was read through ParameterUse; " +
            "construct the synchronizer with the parameters the forward reads (TrainableModel.ComputeParameters in bf16 mode)");

    sealed class NoScope : IDisposable
    {
        public static readonly NoScope Instance = new();
        public void Dispose() { }
    }

    /// <summary>Waits for every launched reduce (in index order) and writes the averaged gradients back. The time spent
    /// here is the step's exposed communication.</summary>
    public void WaitAll()
    {
        if (buckets.Length == 0) return;
        double t0 = clock.Elapsed.TotalSeconds;
        Exception? error = null;
        bool wasOverlapping;
        lock (gate)
        {
            wasOverlapping = overlapping;
            if (overlapping)
            {
                // Whatever backward did not complete (a rank without a batch, a read whose gradient never came) goes
                // out now, still in index order: the missing gradients count as zero.
                while (launched < buckets.Length) LaunchNext(duringBackward: false);
                overlapping = false;
                error = callbackError;
                callbackError = null;
            }
        }
        if (launched != buckets.Length) throw new InvalidOperationException($"WaitAll without Launch or ObserveLastMicroStep: {launched} of {buckets.Length} buckets were started");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        double inFlight = 0;
        try
        {
            foreach (var bucket in buckets)
            {
                bucket.InFlight!.GetAwaiter().GetResult();
                inFlight += bucket.CompletedAt - bucket.LaunchedAt;
                if (shardGradient is null) Unpack(bucket);
            }
        }
        finally
        {
            foreach (var bucket in buckets) bucket.InFlight = null;
            launched = 0;
        }
        if (wasOverlapping && compute is not null)
            foreach (var c in compute) c.grad = null; // its content is in the reduced master gradient already
        if (shardGradient is not null)
        {
            shardHolds = true;
            foreach (var m in masters) m.grad = null; // fp32 overlap: autograd's copy of what the taps reduced
        }
        if (error is not null)
            throw new InvalidOperationException($"gradient sync failed inside backward: {error.Message}", error);
        LastStep = new SyncTimings(clock.Elapsed.TotalSeconds - t0, packSeconds, inFlight, buckets.Length, TotalBytes);
    }

    long TotalBytes => buckets.Sum(b => b.Length * 4);

    /// <summary>The bucket's buffer for this step's gradients: allocated (zero) if this step has not touched it yet
    /// (ZeRO-2), or zeroed if it still holds the last step's reduced gradient (stage 0).</summary>
    Tensor Filled(Bucket bucket)
    {
        if (bucket.HoldsReduced)
        {
            foreach (int i in bucket.Parameters)
                if (masters[i].grad is { } grad && SharesBucket(grad, bucket))
                    throw new InvalidOperationException($"'{names[i]}' still holds the last step's reduced gradient (a view of its bucket) when the next " +
                        "step's gradients arrive; call the optimizer's ZeroGrad after each step");
            bucket.Flat!.zero_();
            bucket.HoldsReduced = false;
        }
        return bucket.Flat ??= zeros(bucket.Length, ScalarType.Float32, Device).DetachFromDisposeScope();
    }

    /// <summary>Whether a gradient is one of the views <see cref="Unpack"/> made of this bucket.</summary>
    static bool SharesBucket(Tensor grad, Bucket bucket)
    {
        if (grad.device_type == DeviceType.META || grad.numel() == 0) return false;
        long start = NcclCommunicator.DataPointer(bucket.Flat!), at = NcclCommunicator.DataPointer(grad);
        return at >= start && at < start + bucket.Length * 4;
    }

    /// <summary>Every sync starts here: with ZeRO, whether this reduce adds to the shard gradient (stage 2's later micro-steps).</summary>
    void BeginReduce()
    {
        addToShard = shardGradient is not null && shardHolds;
        if (!addToShard || received is not null) return;
        received = zeros(shardGradient!.numel(), ScalarType.Float32, Device).DetachFromDisposeScope();
        for (int b = 0; b < buckets.Length; b++)
            buckets[b].Received = received.narrow(0, Partition!.ShardOffsets[b], Partition.BlockNumels[b]).DetachFromDisposeScope();
    }

    /// <summary>This bucket's all-reduce, or with ZeRO its reduce-scatter into this rank's block, started.</summary>
    Task Reduce(Bucket bucket)
    {
        if (shardGradient is null) return comm.AllReduceSumAsync(Filled(bucket)); // zeroed if no gradient of this step reached it
        return comm.ReduceScatterSumAsync(Filled(bucket), ShardTarget(bucket));
    }

    /// <summary>Where this rank's block of a reduce-scatter lands: the shard itself, or the buffer added into it (stage 2's later micro-steps).</summary>
    Tensor ShardTarget(Bucket bucket) => addToShard ? bucket.Received! : bucket.Shard!;

    /// <summary>Adds the parameters' gradients (master and compute <c>.grad</c>, in fp32) to what earlier micro-steps
    /// accumulated in the bucket and drops them: the bucket is the only place a gradient is kept until it is reduced.</summary>
    void Pack(Bucket bucket)
    {
        for (int k = 0; k < bucket.Parameters.Length; k++)
        {
            int i = bucket.Parameters[k];
            var grad = masters[i].grad;
            var computeGrad = compute?[i].grad;
            if (grad is null && computeGrad is null) continue; // nothing to add: a bucket stays as it is (ZeRO-2: unallocated)
            var view = Filled(bucket).narrow(0, bucket.Offsets[k], compute?[i].numel() ?? masters[i].numel()); // released masters (ZeRO, bf16) hold no elements
            if (grad is not null) view.add_(grad.reshape(-1), Scalars.One);
            if (computeGrad is not null) view.add_(computeGrad.reshape(-1), Scalars.One);
            masters[i].grad = null;
            if (compute is not null) compute[i].grad = null;
        }
    }

    void Unpack(Bucket bucket)
    {
        using var worldSize = comm.WorldSize.ToScalar(); // held for the call (see Scalars)
        if (shardGradient is not null)
        {
            if (!addToShard) bucket.Shard!.div_(worldSize);
            else bucket.Shard!.add_(bucket.Received!.div_(worldSize), Scalars.One);
            // The next accumulation starts from zero (a ring reduce-scatter also leaves its input unspecified); ZeRO-2 frees it.
            if (zeroStage == 2)
            {
                bucket.Flat!.Dispose();
                bucket.Flat = null;
            }
            else bucket.Flat!.zero_();
            return;
        }
        // Stage 0: the averaged bucket is the masters' gradient; each .grad becomes a view of it (DDP's
        // gradient_as_bucket_view), so no second whole fp32 gradient exists. The scope disposes the view's handle and .grad
        // keeps its own reference (a detached handle would keep the bucket referenced after zero_grad until the GC ran).
        var flat = bucket.Flat!;
        flat.div_(worldSize);
        for (int k = 0; k < bucket.Parameters.Length; k++)
        {
            int i = bucket.Parameters[k];
            var master = masters[i];
            master.grad = flat.narrow(0, bucket.Offsets[k], master.numel()).view(master.shape);
        }
        bucket.HoldsReduced = true;
    }

    /// <summary>Copies root's master weights into every rank's (call once after building the model, then
    /// TrainableModel.CopyMasterToCompute in bf16 mode).</summary>
    public void BroadcastParameters(int root = 0)
    {
        if (comm.WorldSize == 1) return;
        using var noGrad = no_grad();
        foreach (var p in masters) comm.Broadcast(p, root);
    }

    /// <summary>An exact fingerprint of this rank's master weights: wrapping sums of the fp32 bit patterns, plain and
    /// weighted by position (a changed bit, or two elements swapped within a parameter, changes it), plus fp64 Σp
    /// and Σp² for the error message. Computed on the CPU in a fixed order, so equal weights give equal numbers on
    /// every rank whatever the thread count.</summary>
    public ParameterChecksum Checksum() => ParameterChecksum.Of(masters);

    /// <summary>Compares every rank's <see cref="Checksum"/> (a collective: every rank calls it) and throws on all
    /// ranks alike when any rank differs from rank 0, naming the rank, the first parameter that differs and how far
    /// apart the sums are.</summary>
    /// <param name="computeCopy">check the compute parameters instead (ZeRO in bf16, where no rank holds whole masters).</param>
    public void VerifyParametersInSync(bool computeCopy = false)
    {
        if (comm.WorldSize == 1) return;
        var masters = computeCopy ? compute ?? this.masters : this.masters;
        int w = comm.WorldSize, r = comm.Rank, n = masters.Length;
        var mine = masters.Select(p => ParameterChecksum.Of([p])).ToArray();
        // An all-gather by sum: each rank fills its own row ([w, n, 2] and [w, 2], row-major), zeros elsewhere.
        var bits = new long[w * n * 2];
        var sums = new double[w * 2];
        var total = ParameterChecksum.Of(masters);
        for (int i = 0; i < n; i++)
        {
            bits[(r * n + i) * 2] = mine[i].Bits;
            bits[(r * n + i) * 2 + 1] = mine[i].WeightedBits;
        }
        sums[r * 2] = total.Sum;
        sums[r * 2 + 1] = total.SumSquares;
        var b = comm.SumAcrossRanks(bits);
        var s = comm.SumAcrossRanks(sums);
        for (int rank = 1; rank < w; rank++)
            for (int i = 0; i < n; i++)
            {
                long Row(int q, int c) => b[(q * n + i) * 2 + c];
                if (Row(rank, 0) == Row(0, 0) && Row(rank, 1) == Row(0, 1)) continue;
                string F(double v, string format) => v.ToString(format, CultureInfo.InvariantCulture);
                throw new CommunicatorException(
                    $"parameters diverged across ranks: rank {rank}'s '{names[i]}' differs from rank 0's (first of the talker's parameters to differ); " +
                    $"over all parameters Σp differs by {F(s[rank * 2] - s[0], "E3")} ({F(s[rank * 2], "R")} vs {F(s[0], "R")}) and Σp² by {F(s[rank * 2 + 1] - s[1], "E3")}. " +
                    "Every rank must start from the broadcast weights and apply identical averaged gradients; a nondeterministic op or a missed sync makes them drift");
            }
    }

    /// <summary>The window's label-token counts summed over ranks (one all-reduce of two numbers; call before the first
    /// backward of the window). Token-weighted loss scaling across ranks: scale each micro-batch's mean loss by
    /// tokens_micro · world_size / global_tokens, so that the averaged gradient is the mean over every token of every
    /// rank even when ranks hold different token counts.</summary>
    public static (long Talker, long Sub) GlobalTokenCounts(ICommunicator comm, long talker, long sub)
    {
        if (comm.WorldSize == 1) return (talker, sub);
        var c = comm.SumAcrossRanks([talker, sub]);
        return (c[0], c[1]);
    }

    public void Dispose()
    {
        flat?.Dispose();
        foreach (var b in buckets)
        {
            b.Flat?.Dispose();
            b.Shard?.Dispose();
            b.Received?.Dispose();
        }
        shardGradient?.Dispose();
        received?.Dispose();
    }
}

/// <summary>One bucket's reduce going out: its index, seconds since the step's sync began, and whether backward was
/// still running.</summary>
public readonly record struct BucketLaunch(int Bucket, double AtSeconds, bool DuringBackward);

/// <summary>See <see cref="GradientSynchronizer.Checksum"/>.</summary>
public readonly record struct ParameterChecksum(long Bits, long WeightedBits, double Sum, double SumSquares)
{
    const int Chunk = 1 << 26;

    public static ParameterChecksum Of(IEnumerable<Tensor> parameters)
    {
        long bits = 0, weighted = 0;
        double sum = 0, squares = 0;
        long position = 0;
        using var scope = NewDisposeScope();
        foreach (var p in parameters)
        {
            // Read in place (a CPU fp32 parameter is not copied at all): a managed copy of every parameter would grow the
            // process by the model's size at each checkpoint until the GC returned it.
            using var cpuCopy = p.detach().to(ScalarType.Float32).cpu().contiguous();
            long n = cpuCopy.numel();
            nint data = n == 0 ? 0 : NcclCommunicator.DataPointer(cpuCopy);
            for (long start = 0; start < n; start += Chunk)
            {
                ReadOnlySpan<float> values;
                unsafe { values = new ReadOnlySpan<float>((float*)data + start, (int)Math.Min(Chunk, n - start)); }
                var raw = MemoryMarshal.Cast<float, int>(values);
                unchecked
                {
                    for (int j = 0; j < raw.Length; j++)
                    {
                        bits += raw[j];
                        weighted += raw[j] * (position + j + 1);
                        sum += values[j];
                        squares += (double)values[j] * values[j];
                    }
                }
                position += raw.Length;
            }
        }
        return new ParameterChecksum(bits, weighted, sum, squares);
    }
}
