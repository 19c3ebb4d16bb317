using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using TorchSharp;
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

/// <summary>Averages the master gradients across ranks, bucket by bucket (see <see cref="BucketAssignment"/>): each
/// bucket's gradients are flattened into one contiguous fp32 buffer (a parameter without a gradient on this rank
/// contributes zeros, so every rank reduces identical buffers, as Horovod does), summed across ranks, divided by the
/// world size and copied back into every master's <c>.grad</c> (a null one is created). Buckets go out in index order
/// on every rank. With one rank every call returns at once and nothing is copied.
///
/// Two ways to use it, both once per optimizer step and never on accumulation micro-steps:
/// (a) after the window's last backward and <c>AccumulateGradsToMaster</c>, <see cref="SynchronizeAll"/>;
/// (b) overlapped: <see cref="Launch"/> right after the last backward, which packs and starts each bucket's
///     reduce in turn, so bucket i is on the wire while bucket i+1 is being packed (and, in bf16 mode, while the
///     remaining compute gradients are folded into the buffers); then <see cref="WaitAll"/> before clipping.
/// In bf16 mode pass the compute parameters: packing adds a compute gradient that has not reached its master yet
/// (master + compute, in fp32, exactly what <c>AccumulateGradsToMaster</c> would produce) and drops it, so calling
/// <c>AccumulateGradsToMaster</c> before or after <see cref="Launch"/> gives the same result.
///
/// Why launch after backward and not from inside it: TorchSharp 0.107 has no tensor or AccumulateGrad hooks, and
/// its custom autograd functions (<c>torch.autograd.SingleTensorFunction&lt;T&gt;</c>) only fire where the model's
/// forward routes a tensor through them. The model calls its leaf modules with <c>.forward(x)</c>, which bypasses
/// TorchSharp's module hooks, and <c>nn.Linear</c>/<c>nn.Embedding</c> read their Parameter fields directly (a
/// Parameter is always a leaf, so a tapped non-leaf cannot stand in for it). A per-use tap therefore needs the
/// model to read weights through it; until then the reduce overlaps packing, not backward.</summary>
public sealed class GradientSynchronizer : IDisposable
{
    readonly ICommunicator comm;
    readonly Parameter[] masters;
    readonly Parameter[]? compute;
    readonly string[] names;
    readonly Bucket[] buckets;
    readonly Stopwatch clock = new();
    int launched;
    double packSeconds;

    sealed class Bucket(int[] parameters, long[] offsets, Tensor flat)
    {
        public int[] Parameters { get; } = parameters;
        public long[] Offsets { get; } = offsets;
        public Tensor Flat { get; } = flat;
        public Task? InFlight { get; set; }
        public double LaunchedAt { get; set; }
        public double CompletedAt { get; set; }
    }

    /// <param name="masters">the fp32 master parameters in registration order (TrainableModel.MasterParameters).</param>
    /// <param name="computeParameters">bf16 mode: the compute parameters in the same order (TrainableModel.ComputeParameters); null or the masters themselves in fp32 mode.</param>
    /// <param name="capBytes">--bucket_size_mb in bytes; the first bucket is capped at min(1 MB, cap).</param>
    public GradientSynchronizer(IReadOnlyList<(string Name, Parameter Parameter)> masters, ICommunicator comm,
        long? capBytes = null, IReadOnlyList<(string Name, Parameter Parameter)>? computeParameters = null)
    {
        this.comm = comm;
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

        long cap = capBytes ?? BucketAssignment.CapBytes(BucketAssignment.DefaultCapMb);
        long first = Math.Min(cap, BucketAssignment.CapBytes(BucketAssignment.FirstBucketCapMb));
        Assignment = BucketAssignment.Assign(this.masters.Select((p, i) => new BucketParameter(names[i], p.numel(), 4)).ToArray(), cap, first);
        if (comm.WorldSize == 1)
        {
            buckets = [];
            return;
        }
        buckets = Assignment.Select(indices =>
        {
            var offsets = new long[indices.Length];
            long n = 0;
            for (int k = 0; k < indices.Length; k++) (offsets[k], n) = (n, n + this.masters[indices[k]].numel());
            var flat = zeros(n, ScalarType.Float32, this.masters[indices[0]].device).DetachFromDisposeScope();
            return new Bucket(indices, offsets, flat);
        }).ToArray();
    }

    /// <summary>Buckets of indices into the masters, bucket 0 reduced first.</summary>
    public IReadOnlyList<int[]> Assignment { get; }

    /// <summary>The last step's sync timings (reset by each <see cref="SynchronizeAll"/> / <see cref="Launch"/>).</summary>
    public SyncTimings LastStep { get; private set; } = SyncTimings.None;

    /// <summary>Mode (a): reduce every bucket now, in index order, blocking.</summary>
    public void SynchronizeAll()
    {
        if (buckets.Length == 0) return;
        clock.Restart();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        double pack = 0;
        foreach (var bucket in buckets)
        {
            double t0 = clock.Elapsed.TotalSeconds;
            Pack(bucket);
            pack += clock.Elapsed.TotalSeconds - t0;
            comm.AllReduceSum(bucket.Flat);
            Unpack(bucket);
        }
        double total = clock.Elapsed.TotalSeconds;
        LastStep = new SyncTimings(total - pack, pack, total - pack, buckets.Length, TotalBytes);
    }

    /// <summary>Mode (b): packs and starts every bucket's reduce in index order; returns once all are launched.
    /// Call once per optimizer step, after the last micro-batch's backward; then <see cref="WaitAll"/>.</summary>
    public void Launch()
    {
        if (buckets.Length == 0) return;
        if (launched != 0) throw new InvalidOperationException("Launch called twice without WaitAll: gradient sync runs once per optimizer step");
        clock.Restart();
        packSeconds = 0;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var bucket in buckets)
        {
            double t0 = clock.Elapsed.TotalSeconds;
            Pack(bucket);
            packSeconds += clock.Elapsed.TotalSeconds - t0;
            bucket.LaunchedAt = clock.Elapsed.TotalSeconds;
            bucket.InFlight = comm.AllReduceSumAsync(bucket.Flat).ContinueWith(
                t => { bucket.CompletedAt = clock.Elapsed.TotalSeconds; t.GetAwaiter().GetResult(); }, TaskContinuationOptions.ExecuteSynchronously);
            launched++;
        }
    }

    /// <summary>Waits for every launched reduce (in index order) and writes the averaged gradients back. The time spent
    /// here is the step's exposed communication.</summary>
    public void WaitAll()
    {
        if (buckets.Length == 0) return;
        if (launched != buckets.Length) throw new InvalidOperationException($"WaitAll without Launch: {launched} of {buckets.Length} buckets were started");
        double t0 = clock.Elapsed.TotalSeconds;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        double inFlight = 0;
        try
        {
            foreach (var bucket in buckets)
            {
                bucket.InFlight!.GetAwaiter().GetResult();
                inFlight += bucket.CompletedAt - bucket.LaunchedAt;
                Unpack(bucket);
            }
        }
        finally
        {
            foreach (var bucket in buckets) bucket.InFlight = null;
            launched = 0;
        }
        LastStep = new SyncTimings(clock.Elapsed.TotalSeconds - t0, packSeconds, inFlight, buckets.Length, TotalBytes);
    }

    long TotalBytes => buckets.Sum(b => b.Flat.numel() * 4);

    void Pack(Bucket bucket)
    {
        for (int k = 0; k < bucket.Parameters.Length; k++)
        {
            int i = bucket.Parameters[k];
            var view = bucket.Flat.narrow(0, bucket.Offsets[k], masters[i].numel());
            var grad = masters[i].grad;
            if (grad is null) view.zero_();
            else view.copy_(grad.reshape(-1));
            if (compute?[i].grad is { } computeGrad)
            {
                view.add_(computeGrad.reshape(-1));
                compute[i].grad = null;
            }
        }
    }

    void Unpack(Bucket bucket)
    {
        bucket.Flat.div_(comm.WorldSize);
        for (int k = 0; k < bucket.Parameters.Length; k++)
        {
            int i = bucket.Parameters[k];
            var master = masters[i];
            var view = bucket.Flat.narrow(0, bucket.Offsets[k], master.numel()).view(master.shape);
            if (master.grad is { } grad) grad.copy_(view);
            else master.grad = view.clone().DetachFromDisposeScope();
        }
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
    public void VerifyParametersInSync()
    {
        if (comm.WorldSize == 1) return;
        int w = comm.WorldSize, r = comm.Rank, n = masters.Length;
        var mine = masters.Select(p => ParameterChecksum.Of([p])).ToArray();
        using var scope = NewDisposeScope();
        // An all-gather by sum: each rank fills its own row, zeros elsewhere.
        var bits = zeros(w, n, 2, ScalarType.Int64);
        var sums = zeros(w, 2, ScalarType.Float64);
        var total = ParameterChecksum.Of(masters);
        for (int i = 0; i < n; i++)
        {
            bits[r, i, 0] = mine[i].Bits;
            bits[r, i, 1] = mine[i].WeightedBits;
        }
        sums[r, 0] = total.Sum;
        sums[r, 1] = total.SumSquares;
        comm.AllReduceSum(bits);
        comm.AllReduceSum(sums);
        var b = bits.data<long>().ToArray();
        var s = sums.data<double>().ToArray();
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
        using var counts = tensor(new[] { talker, sub });
        comm.AllReduceSum(counts);
        var c = counts.data<long>();
        return (c[0], c[1]);
    }

    public void Dispose()
    {
        foreach (var b in buckets) b.Flat.Dispose();
    }
}

/// <summary>See <see cref="GradientSynchronizer.Checksum"/>.</summary>
public readonly record struct ParameterChecksum(long Bits, long WeightedBits, double Sum, double SumSquares)
{
    public static ParameterChecksum Of(IEnumerable<Tensor> parameters)
    {
        long bits = 0, weighted = 0;
        double sum = 0, squares = 0;
        long position = 0;
        using var scope = NewDisposeScope();
        foreach (var p in parameters)
        {
            using var cpuCopy = p.detach().to(ScalarType.Float32).cpu().contiguous();
            var values = cpuCopy.data<float>().ToArray();
            var raw = MemoryMarshal.Cast<float, int>(values.AsSpan());
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
        return new ParameterChecksum(bits, weighted, sum, squares);
    }
}
