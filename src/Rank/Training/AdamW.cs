using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Training;

/// <summary>AdamW hyperparameters. Defaults are the fine-tuning recipe's; unlike TorchSharp's own AdamW
/// (weight_decay 0) the default decay is torch.optim.AdamW's 0.01. <see cref="Lr"/> is the peak learning rate
/// a schedule scales; <see cref="AdamW.Step(double)"/> takes the rate of each step explicitly.</summary>
public sealed record AdamWOptions(double Lr = 2e-5, double Beta1 = 0.9, double Beta2 = 0.999, double Eps = 1e-8, double WeightDecay = 0.01)
{
    public void Validate()
    {
        if (!(Lr >= 0)) throw new ArgumentOutOfRangeException(nameof(Lr), Lr, "learning rate must be >= 0");
        if (!(Beta1 >= 0 && Beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(Beta1), Beta1, "beta1 must be in [0, 1)");
        if (!(Beta2 >= 0 && Beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(Beta2), Beta2, "beta2 must be in [0, 1)");
        if (!(Eps >= 0)) throw new ArgumentOutOfRangeException(nameof(Eps), Eps, "eps must be >= 0");
        if (!(WeightDecay >= 0)) throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "weight decay must be >= 0");
    }
}

/// <summary>torch.optim.AdamW (single-tensor path, amsgrad off) over a named list of fp32 parameters, with its
/// state explicit so a checkpoint can hold it bit-exactly. Per parameter with a gradient, in torch's op order:
/// <code>
///   p ← p · (1 − lr·wd)                      (decoupled decay; skipped for names in the no-decay set)
///   m ← β1·m + (1 − β1)·g
///   v ← β2·v + (1 − β2)·g²
///   p ← p − lr/(1 − β1^t) · m / (sqrt(v)/sqrt(1 − β2^t) + eps)
/// </code>
/// A parameter whose <c>.grad</c> is null is skipped entirely, its step count t included, as torch does; so
/// t is per parameter and is part of the state ("step.{name}"). Each moment lives in one flat buffer (<see cref="FlatBuffer"/>),
/// stepped parameter by parameter on its views: the bits of torch's per-tensor loop, over contiguous memory.</summary>
public sealed class AdamW : ITrainingOptimizer
{
    readonly Entry[] entries;
    readonly Tensor expAvg, expAvgSq; // each moment in one flat buffer, the entries' moments views of it
    readonly Device device;
    bool disposed;

    sealed record Entry(string Name, Parameter Parameter, bool Decay, Tensor ExpAvg, Tensor ExpAvgSq, Tensor StepTensor)
    {
        public long Step;
    }

    /// <param name="parameters">The parameters to train, named by their state-dict names; all fp32 (they are the masters).</param>
    /// <param name="noDecay">Names to exclude from weight decay; null decays every parameter, as the reference does.</param>
    public AdamW(IEnumerable<(string Name, Parameter Parameter)> parameters, AdamWOptions? options = null, Func<string, bool>? noDecay = null)
    {
        Options = options ?? new AdamWOptions();
        Options.Validate();
        var list = parameters.ToList();
        var duplicate = list.GroupBy(p => p.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ArgumentException($"parameter '{duplicate.Key}' is listed {duplicate.Count()} times; each name must be unique", nameof(parameters));
        foreach (var (name, p) in list)
            if (p.dtype != ScalarType.Float32)
                throw new ArgumentException($"parameter '{name}' is {p.dtype}; the optimizer steps fp32 master weights (with --mixed_precision bf16, pass the fp32 masters, not the bf16 compute copy)", nameof(parameters));

        device = list.Count > 0 ? list[0].Parameter.device : CPU;
        foreach (var (name, p) in list)
            if (p.device_type != device.type || p.device_index != device.index)
                throw new ArgumentException($"parameter '{name}' is on {p.device} but '{list[0].Name}' on {device}; the optimizer steps parameters on one device", nameof(parameters));

        // State is created here, once, and lives as long as the optimizer (FlatBuffer detaches it from any scope the caller
        // is in). The moments are zeros of the parameters' shapes on their device, as torch's, laid end to end in one buffer
        // each. The step count stays a CPU scalar (torch's non-capturable AdamW keeps it on the CPU too); it is only read on the host.
        var shapes = list.Select(p => p.Parameter.shape).ToArray();
        (expAvg, var expAvgs) = FlatBuffer.Zeros(shapes, ScalarType.Float32, device);
        (expAvgSq, var expAvgSqs) = FlatBuffer.Zeros(shapes, ScalarType.Float32, device);
        entries = new Entry[list.Count];
        for (int i = 0; i < list.Count; i++)
        {
            var (name, p) = list[i];
            entries[i] = new Entry(name, p, noDecay is null || !noDecay(name), expAvgs[i], expAvgSqs[i],
                zeros(Array.Empty<long>(), dtype: ScalarType.Int64).DetachFromDisposeScope());
        }
    }

    public AdamWOptions Options { get; }

    /// <summary>Optimizer steps taken (calls to <see cref="Step(double)"/>); what an lr schedule is evaluated at.</summary>
    public long StepCount { get; private set; }

    public IReadOnlyList<string> Names => entries.Select(e => e.Name).ToList();

    /// <summary>The parameters' device, where the moments live.</summary>
    public Device Device => device;

    /// <summary>Whether weight decay applies to the named parameter.</summary>
    public bool Decays(string name) =>
        (entries.FirstOrDefault(e => e.Name == name) ?? throw new KeyNotFoundException($"the optimizer has no parameter '{name}'")).Decay;

    /// <summary>The model's state and this optimizer's own tensors: all here, nothing to gather.</summary>
    public CheckpointTensors CheckpointTensors(IEnumerable<(string Name, Tensor Tensor)> modelState) => new(modelState.ToList(), StateTensors());

    public void ServeCheckpoint() { }

    public void EndCheckpoint() { }

    /// <summary>Nothing to take: the state is whole from the start.</summary>
    public void Start() { }

    /// <summary>The masters are always whole here.</summary>
    public IDisposable WholeMasters() => NoScope.Instance;

    sealed class NoScope : IDisposable
    {
        public static readonly NoScope Instance = new();
        public void Dispose() { }
    }

    /// <summary>Clips the gradients of the optimizer's parameters by their global L2 norm (<see cref="GradClip"/>).</summary>
    public double ClipGradNorm(double maxNorm) => GradClip.ClipGradNorm(entries.Select(e => (Tensor)e.Parameter), maxNorm);

    /// <summary>One update at the options' peak rate.</summary>
    public void Step() => Step(Options.Lr);

    /// <summary>One update of every parameter that has a gradient, in place and without autograd.</summary>
    public void Step(double lr)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (!(lr >= 0)) throw new ArgumentOutOfRangeException(nameof(lr), lr, "learning rate must be >= 0");
        var (beta1, beta2, eps, wd) = (Options.Beta1, Options.Beta2, Options.Eps, Options.WeightDecay);
        using var noGrad = no_grad();
        // lerp_'s weight as a 0-dim tensor on the parameters' device (a CPU one would not mix with CUDA moments).
        using var weight1 = tensor(1 - beta1, dtype: ScalarType.Float32, device: device);
        foreach (var e in entries)
        {
            // One scope per parameter: the grad handle and denom are released before the next parameter's are made.
            using var scope = NewDisposeScope();
            var grad = e.Parameter.grad;
            if (grad is null) continue;
            e.Step++;
            if (e.Decay && wd != 0) e.Parameter.mul_(1 - lr * wd);
            double biasCorrection1 = 1 - Math.Pow(beta1, e.Step);
            double biasCorrection2 = 1 - Math.Pow(beta2, e.Step);
            // Written as torch's single-tensor AdamW: lerp for the first moment, in-place ops on one temporary.
            e.ExpAvg.lerp_(grad, weight1);
            e.ExpAvgSq.mul_(beta2).addcmul_(grad, grad, value: 1 - beta2);
            var denom = e.ExpAvgSq.sqrt().div_(Math.Sqrt(biasCorrection2)).add_(eps);
            e.Parameter.addcdiv_(e.ExpAvg, denom, value: -(lr / biasCorrection1));
        }
        StepCount++;
    }

    /// <summary>Drops every gradient (torch's zero_grad(set_to_none=True)): a parameter that gets none in the
    /// next backward is then skipped by the next step rather than decayed with a zero gradient.</summary>
    public void ZeroGrad()
    {
        foreach (var e in entries) e.Parameter.grad = null;
    }

    /// <summary>The optimizer's state tensors, by key: "exp_avg.{name}", "exp_avg_sq.{name}" (fp32, the parameter's
    /// shape and device) and "step.{name}" (int64 scalar on the CPU). They are the optimizer's own tensors, not
    /// copies: save them, do not dispose or modify them.</summary>
    public IReadOnlyDictionary<string, Tensor> StateTensors()
    {
        using var scope = NewDisposeScope(); // releases the handles in-place ops return, not the state
        var state = new Dictionary<string, Tensor>(entries.Length * 3);
        foreach (var e in entries)
        {
            e.StepTensor.fill_(e.Step);
            state[$"exp_avg.{e.Name}"] = e.ExpAvg;
            state[$"exp_avg_sq.{e.Name}"] = e.ExpAvgSq;
            state[$"step.{e.Name}"] = e.StepTensor;
        }
        return state;
    }

    /// <summary>Restores state saved from <see cref="StateTensors"/> into this optimizer's tensors (copied, so the
    /// caller keeps ownership of <paramref name="state"/>). Every key must be present with the saved shape and
    /// dtype, and no unknown key may be; nothing is changed unless all are valid.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state, long stepCount)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (stepCount < 0) throw new ArgumentOutOfRangeException(nameof(stepCount), stepCount, "step count must be >= 0");
        var expected = new HashSet<string>();
        foreach (var e in entries)
        {
            Check(state, $"exp_avg.{e.Name}", e.ExpAvg, expected);
            Check(state, $"exp_avg_sq.{e.Name}", e.ExpAvgSq, expected);
            Check(state, $"step.{e.Name}", e.StepTensor, expected);
        }
        CheckNoUnknown(state, expected);

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var e in entries)
        {
            e.ExpAvg.copy_(state[$"exp_avg.{e.Name}"]);
            e.ExpAvgSq.copy_(state[$"exp_avg_sq.{e.Name}"]);
            e.StepTensor.copy_(state[$"step.{e.Name}"]);
            e.Step = e.StepTensor.item<long>();
        }
        StepCount = stepCount;
    }

    internal static void Check(IReadOnlyDictionary<string, Tensor> state, string key, Tensor own, HashSet<string> expected)
    {
        expected.Add(key);
        if (!state.TryGetValue(key, out var saved))
            throw new ArgumentException($"optimizer state is missing '{key}'", nameof(state));
        if (!saved.shape.SequenceEqual(own.shape))
            throw new ArgumentException($"optimizer state '{key}' is shaped [{string.Join(", ", saved.shape)}], the parameter needs [{string.Join(", ", own.shape)}]", nameof(state));
        if (saved.dtype != own.dtype)
            throw new ArgumentException($"optimizer state '{key}' is {saved.dtype}, expected {own.dtype} (a lossless resume needs the saved dtype)", nameof(state));
    }

    internal static void CheckNoUnknown(IReadOnlyDictionary<string, Tensor> state, HashSet<string> expected)
    {
        var unknown = state.Keys.Where(k => !expected.Contains(k)).Take(5).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException($"optimizer state has entries for no parameter of this model: {string.Join(", ", unknown)}; " +
                "was it saved from a different model or a different set of trainable parameters?", nameof(state));
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        foreach (var e in entries)
        {
            e.ExpAvg.Dispose();
            e.ExpAvgSq.Dispose();
            e.StepTensor.Dispose();
        }
        expAvg.Dispose();
        expAvgSq.Dispose();
    }
}
