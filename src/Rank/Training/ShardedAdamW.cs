using Qwen3Tts.Model.Layers;
using Qwen3Tts.Rank.Distributed;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Training;

/// <summary>ZeRO's sharded AdamW (stages 1 and 2): the same update as <see cref="AdamW"/>, but each rank keeps the fp32 master
/// values and the two moments of only the elements of its <see cref="ZeroPartition"/> (12 bytes per element), and the
/// gradient it steps with is its block of the reduce-scattered gradient (<see cref="GradientSynchronizer.ShardGradient"/>).
/// Per step: clip by the global norm (each rank's Σg² over its shard, one scalar all-reduce), then on the shard
/// <code>
///   w ← w · (1 − lr·wd);  m ← lerp(m, g, 1 − β1);  v ← β2·v + (1 − β2)·g²
///   w ← w − lr/(1 − β1^t) · m / (sqrt(v)/sqrt(1 − β2^t) + eps)
/// </code>
/// and the updated slices are all-gathered bucket by bucket into every rank's compute weights: the fp32 masters
/// themselves in fp32 mode, the bf16 copy (rounded to nearest even, as TrainableModel.CopyMasterToCompute does) in bf16
/// mode, where the whole fp32 masters are released once <see cref="Start"/> has taken the slice, and made whole again
/// on rank 0 only for a checkpoint or synthesis (<see cref="WholeMasters"/>). Every parameter steps on every step, as
/// with data-parallel AdamW, where the reduce gives each one a gradient (zero if no rank used it); the step count t is
/// still kept per parameter so state moves between this optimizer and <see cref="AdamW"/> either way.</summary>
public sealed class ShardedAdamW : ITrainingOptimizer
{
    readonly (string Name, Parameter Parameter)[] parameters;
    readonly Parameter[] targets;
    readonly TrainableModel trainable;
    readonly GradientSynchronizer sync;
    readonly ICommunicator comm;
    readonly ZeroPartition partition;
    readonly IReadOnlyList<int[]> buckets;
    readonly long[][] bucketOffsets;
    readonly Tensor masterShard, expAvg, expAvgSq, gather;
    readonly long[] steps;
    readonly long chunk;
    readonly int[] bucketOf, slotOf;
    readonly long[] numels;
    readonly Dictionary<string, int> indexOf = new(StringComparer.Ordinal);
    readonly Device device;
    bool disposed;

    /// <param name="trainable">the model: its fp32 masters (as given to the synchronizer) are stepped, its compute weights written.</param>
    /// <param name="sync">a ZeRO synchronizer over the masters: its partition and shard gradient are used.</param>
    /// <param name="comm">the communicator for tensors on the masters' device.</param>
    /// <param name="gatherCapBytes">the all-gather buffer (--bucket_size_mb).</param>
    public ShardedAdamW(TrainableModel trainable, GradientSynchronizer sync, ICommunicator comm, AdamWOptions? options = null, long gatherCapBytes = 25L << 20)
    {
        Options = options ?? new AdamWOptions();
        Options.Validate();
        this.trainable = trainable;
        parameters = trainable.MasterParameters.ToArray();
        targets = trainable.ComputeParameters.Select(p => p.Parameter).ToArray();
        this.sync = sync;
        this.comm = comm;
        partition = sync.Partition ?? throw new ArgumentException("the synchronizer does not shard gradients (zero stage 0, or one rank): use AdamW", nameof(sync));
        foreach (var (name, p) in this.parameters)
            if (p.dtype != ScalarType.Float32)
                throw new ArgumentException($"parameter '{name}' is {p.dtype}; the optimizer steps fp32 master weights", nameof(parameters));
        device = sync.Device;
        buckets = sync.Assignment;
        bucketOffsets = buckets.Select(indices =>
        {
            var offsets = new long[indices.Length];
            long at = 0;
            for (int k = 0; k < indices.Length; k++) (offsets[k], at) = (at, at + this.parameters[indices[k]].Parameter.numel());
            return offsets;
        }).ToArray();
        bucketOf = new int[parameters.Length];
        slotOf = new int[parameters.Length];
        for (int b = 0; b < buckets.Count; b++)
            for (int k = 0; k < buckets[b].Length; k++) (bucketOf[buckets[b][k]], slotOf[buckets[b][k]]) = (b, k);
        for (int i = 0; i < parameters.Length; i++) indexOf[parameters[i].Name] = i;
        numels = targets.Select(p => p.numel()).ToArray(); // the masters may be released later: their sizes are the compute weights'
        masterShard = zeros(partition.ShardNumel, ScalarType.Float32, device).DetachFromDisposeScope();
        expAvg = zeros(partition.ShardNumel, ScalarType.Float32, device).DetachFromDisposeScope();
        expAvgSq = zeros(partition.ShardNumel, ScalarType.Float32, device).DetachFromDisposeScope();
        // One padded bucket's worth: where each bucket's shards meet (all-gather), one bucket at a time.
        // All-gathers go in chunks of at most one bucket cap (every rank's piece of it), however large a bucket: the text
        // embedding alone is a 0.6-1.2 GB bucket, and a buffer that size would cost what ZeRO saves.
        chunk = Math.Max(1, gatherCapBytes / 4 / partition.WorldSize);
        gather = zeros(Math.Min(chunk, partition.BlockNumels.DefaultIfEmpty(0).Max()) * partition.WorldSize, ScalarType.Float32, device).DetachFromDisposeScope();
        steps = new long[this.parameters.Length];
    }

    public AdamWOptions Options { get; }

    public long StepCount { get; private set; }

    /// <summary>Elements of the shard this rank steps (its moments hold twice this many floats).</summary>
    public long ShardNumel => partition.ShardNumel;

    /// <summary>Takes this rank's slice of the (final: loaded, resumed, broadcast) masters; in bf16 mode then releases the
    /// whole masters (TrainableModel.ReleaseMasters).</summary>
    public void Start()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var s in partition.Segments) masterShard.narrow(0, s.ShardOffset, s.Length).copy_(Flat(s.Parameter).narrow(0, s.ParameterOffset, s.Length));
        if (trainable.Precision == MixedPrecision.Bf16) trainable.ReleaseMasters();
    }

    /// <summary>A collective: with released masters, rank 0's are made whole from every rank's slice for the scope
    /// (a checkpoint, synthesis) and released again after it; otherwise nothing.</summary>
    public IDisposable WholeMasters()
    {
        if (!trainable.MastersReleased) return Scope.None;
        bool root = partition.Rank == 0;
        if (root) trainable.RestoreMasters();
        Gather(masterShard, root ? parameters.Select(p => (Tensor)p.Parameter).ToArray() : null);
        return new Scope(() => { if (root) trainable.ReleaseMasters(); });
    }

    /// <summary>Each bucket's slices of <paramref name="shard"/> from every rank, written into <paramref name="into"/>
    /// (whole parameters, any float dtype; null: this rank only sends).</summary>
    void Gather(Tensor shard, Tensor[]? into)
    {
        for (int b = 0; b < buckets.Count; b++)
            GatherBucket(shard, b, Enumerable.Range(0, buckets[b].Length).ToArray(), into is null ? null : k => into[buckets[b][k]]);
    }

    /// <summary>The slots <paramref name="slots"/> of bucket <paramref name="b"/> from every rank's block of
    /// <paramref name="shard"/>, one chunk at a time (chunks that hold none of them are skipped, alike on every rank),
    /// into the whole tensors <paramref name="into"/> gives per slot (null: this rank only sends).</summary>
    void GatherBucket(Tensor shard, int b, int[] slots, Func<int, Tensor>? into)
    {
        using var noGrad = no_grad();
        int world = partition.WorldSize;
        long block = partition.BlockNumels[b];
        long[] offsets = bucketOffsets[b];
        // Rank r's piece of a chunk is bucket elements [r·block + from, + c); slot k holds [offsets[k], + its numel).
        bool Overlaps(int k, long start, long c) => Math.Max(offsets[k], start) < Math.Min(offsets[k] + numels[buckets[b][k]], start + c);
        for (long from = 0; from < block; from += chunk)
        {
            long c = Math.Min(chunk, block - from);
            if (!Enumerable.Range(0, world).Any(r => slots.Any(k => Overlaps(k, r * block + from, c)))) continue;
            using var chunkScope = NewDisposeScope();
            var all = gather.narrow(0, 0, c * world);
            comm.AllGather(shard.narrow(0, partition.ShardOffsets[b] + from, c), all);
            if (into is null) continue;
            for (int r = 0; r < world; r++)
                foreach (int k in slots)
                {
                    long start = r * block + from, lo = Math.Max(offsets[k], start), hi = Math.Min(offsets[k] + numels[buckets[b][k]], start + c);
                    if (hi > lo) into(k).view(-1).narrow(0, lo - offsets[k], hi - lo).copy_(all.narrow(0, r * c + (lo - start), hi - lo));
                }
        }
    }

    sealed class Scope(Action dispose) : IDisposable
    {
        public static readonly Scope None = new(() => { });
        public void Dispose() => dispose();
    }

    public double ClipGradNorm(double maxNorm)
    {
        if (!(maxNorm > 0)) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "max_grad_norm must be > 0");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var grad = sync.ShardGradient;
        double local = grad.numel() == 0 ? 0 : linalg.vector_norm(grad, 2).item<float>();
        double total = Math.Sqrt(comm.SumAcrossRanks([local * local])[0]);
        double coefficient = maxNorm / (total + 1e-6);
        if (coefficient < 1) grad.mul_(coefficient);
        return total;
    }

    public void Step(double lr)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (!(lr >= 0)) throw new ArgumentOutOfRangeException(nameof(lr), lr, "learning rate must be >= 0");
        var (beta1, beta2, eps, wd) = (Options.Beta1, Options.Beta2, Options.Eps, Options.WeightDecay);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var grad = sync.ShardGradient;
        var w = masterShard;
        for (int i = 0; i < steps.Length; i++) steps[i]++;
        if (wd != 0) w.mul_(1 - lr * wd); // every trainable parameter decays, as AdamW's defaults (padding is zero and stays so)

        using var weight1 = tensor(1 - beta1, dtype: ScalarType.Float32, device: device);
        expAvg.lerp_(grad, weight1);
        expAvgSq.mul_(beta2).addcmul_(grad, grad, value: 1 - beta2);
        // The bias corrections depend on each parameter's t: one update over the whole shard when all agree (always,
        // unless resumed from an AdamW that skipped some parameter), else segment by segment.
        if (steps.All(t => t == steps[0]))
            Update(w, expAvg, expAvgSq, steps.Length == 0 ? 1 : steps[0], lr, beta1, beta2, eps);
        else
            foreach (var s in partition.Segments)
                Update(w.narrow(0, s.ShardOffset, s.Length), expAvg.narrow(0, s.ShardOffset, s.Length), expAvgSq.narrow(0, s.ShardOffset, s.Length),
                    steps[s.Parameter], lr, beta1, beta2, eps);

        // Every rank's compute weights from every rank's slice, one padded bucket at a time.
        Gather(masterShard, targets.Select(p => (Tensor)p).ToArray());
        StepCount++;
    }

    static void Update(Tensor w, Tensor m, Tensor v, long t, double lr, double beta1, double beta2, double eps)
    {
        double biasCorrection1 = 1 - Math.Pow(beta1, t);
        double biasCorrection2 = 1 - Math.Pow(beta2, t);
        var denom = v.sqrt().div_(Math.Sqrt(biasCorrection2)).add_(eps);
        w.addcdiv_(m, denom, value: -(lr / biasCorrection1));
    }

    Tensor Flat(int parameter) => parameters[parameter].Parameter.view(-1);

    /// <summary>Drops the masters' gradients and starts the next step's shard gradient afresh.</summary>
    public void ZeroGrad()
    {
        foreach (var (_, p) in parameters) p.grad = null;
        sync.ClearShardGradient();
    }

    /// <summary>Rank 0's checkpoint: the model's state with the talker's masters (when released) and AdamW's moments as
    /// meta-device placeholders, filled one parameter at a time as the file writer reaches them: rank 0 names the tensor
    /// (a broadcast), every rank joins its all-gather (the others in <see cref="ServeCheckpoint"/>), so rank 0 never holds
    /// more than one whole parameter and one chunk beyond its own state.</summary>
    public CheckpointTensors CheckpointTensors(IEnumerable<(string Name, Tensor Tensor)> modelState)
    {
        using var noGrad = no_grad();
        var meta = new Device("meta");
        Tensor Placeholder(int i) => zeros(targets[i].shape, ScalarType.Float32, meta);
        var weights = modelState.Select(kv => trainable.MastersReleased && indexOf.TryGetValue(kv.Name, out int i) ? (kv.Name, Placeholder(i)) : kv).ToList();
        var state = new Dictionary<string, Tensor>(parameters.Length * 3);
        for (int i = 0; i < parameters.Length; i++)
        {
            string name = parameters[i].Name;
            state[$"exp_avg.{name}"] = Placeholder(i);
            state[$"exp_avg_sq.{name}"] = Placeholder(i);
            state[$"step.{name}"] = tensor(steps[i], dtype: ScalarType.Int64);
        }
        return new CheckpointTensors(weights, state, Fill);
    }

    const int ExpAvg = 0, ExpAvgSq = 1, Masters = 2, End = -1;

    Tensor Fill(string key)
    {
        var (source, name) = key.StartsWith("exp_avg_sq.", StringComparison.Ordinal) ? (ExpAvgSq, key["exp_avg_sq.".Length..])
            : key.StartsWith("exp_avg.", StringComparison.Ordinal) ? (ExpAvg, key["exp_avg.".Length..]) : (Masters, key);
        int i = indexOf.TryGetValue(name, out int found) ? found : throw new InvalidOperationException($"the checkpoint asked for '{key}', which this optimizer does not hold");
        comm.Broadcast(Request(source, i), root: 0);
        var whole = zeros(targets[i].shape, ScalarType.Float32, device);
        GatherOne(Source(source), i, whole);
        return whole;
    }

    /// <summary>Every rank but 0, while rank 0 writes a checkpoint: joins each gather rank 0 asks for, until it is done.</summary>
    public void ServeCheckpoint()
    {
        while (true)
        {
            var request = new byte[8];
            comm.Broadcast(request, root: 0);
            int source = BitConverter.ToInt32(request, 0), i = BitConverter.ToInt32(request, 4);
            if (source == End) return;
            GatherOne(Source(source), i, null);
        }
    }

    /// <summary>Rank 0, once its checkpoint is written (or failed): releases the ranks in <see cref="ServeCheckpoint"/>.</summary>
    public void EndCheckpoint() => comm.Broadcast(Request(End, 0), root: 0);

    static byte[] Request(int source, int index) => [.. BitConverter.GetBytes(source), .. BitConverter.GetBytes(index)];

    Tensor Source(int source) => source switch
    {
        ExpAvg => expAvg,
        ExpAvgSq => expAvgSq,
        Masters => masterShard,
        _ => throw new InvalidOperationException($"checkpoint request for source {source}: ranks disagree on the protocol"),
    };

    /// <summary>Parameter <paramref name="i"/>'s elements of <paramref name="shard"/> from every rank into
    /// <paramref name="into"/> (null: this rank only sends).</summary>
    void GatherOne(Tensor shard, int i, Tensor? into) => GatherBucket(shard, bucketOf[i], [slotOf[i]], into is null ? null : _ => into);

    /// <summary>Takes this rank's segments of whole-parameter state (as <see cref="AdamW"/> or this class saved it, at
    /// any world size); checked like <see cref="AdamW.LoadState"/>, nothing changed unless all of it is valid.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state, long stepCount)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (stepCount < 0) throw new ArgumentOutOfRangeException(nameof(stepCount), stepCount, "step count must be >= 0");
        var expected = new HashSet<string>();
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var step = zeros(Array.Empty<long>(), ScalarType.Int64);
        for (int i = 0; i < parameters.Length; i++)
        {
            string name = parameters[i].Name;
            using var like = zeros(targets[i].shape, ScalarType.Float32, new Device("meta")); // the moments' shape and dtype, allocating nothing
            AdamW.Check(state, $"exp_avg.{name}", like, expected);
            AdamW.Check(state, $"exp_avg_sq.{name}", like, expected);
            AdamW.Check(state, $"step.{name}", step, expected);
        }
        AdamW.CheckNoUnknown(state, expected);
        expAvg.zero_();
        expAvgSq.zero_();
        foreach (var s in partition.Segments)
        {
            string name = parameters[s.Parameter].Name;
            expAvg.narrow(0, s.ShardOffset, s.Length).copy_(state[$"exp_avg.{name}"].view(-1).narrow(0, s.ParameterOffset, s.Length));
            expAvgSq.narrow(0, s.ShardOffset, s.Length).copy_(state[$"exp_avg_sq.{name}"].view(-1).narrow(0, s.ParameterOffset, s.Length));
        }
        for (int i = 0; i < parameters.Length; i++) steps[i] = state[$"step.{parameters[i].Name}"].item<long>();
        StepCount = stepCount;
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        masterShard.Dispose();
        expAvg.Dispose();
        expAvgSq.Dispose();
        gather.Dispose();
    }
}
