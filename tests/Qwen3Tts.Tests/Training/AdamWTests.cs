using Qwen3Tts.Rank.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using AdamW = Qwen3Tts.Rank.Training.AdamW;

namespace Qwen3Tts.Tests.Training;

public class AdamWTests
{
    /// <summary>A small two-layer model whose weights are a function of the seed alone (a local generator: the
    /// global one is shared with tests running in parallel).</summary>
    static Sequential SmallModel(int seed)
    {
        var model = nn.Sequential(("fc1", nn.Linear(6, 5)), ("norm", nn.LayerNorm(5)), ("fc2", nn.Linear(5, 3)));
        using var generator = new Generator((ulong)seed);
        using var noGrad = no_grad();
        foreach (var p in model.parameters()) p.copy_(randn(p.shape, generator: generator));
        return model;
    }

    static List<(string Name, Parameter Parameter)> Named(nn.Module module) =>
        module.named_parameters().Select(p => (p.name, p.parameter)).ToList();

    /// <summary>Random grads for step k, the same for every copy of the model; null where <paramref name="skip"/> names the parameter.</summary>
    static void SetGrads(IReadOnlyList<(string Name, Parameter Parameter)> parameters, int step, string? skip = null)
    {
        using var generator = new Generator((ulong)(1000 + step));
        foreach (var (name, p) in parameters)
            p.grad = name == skip ? null : randn(p.shape, generator: generator);
    }

    static void AssertClose(Tensor expected, Tensor actual, double rtol, string what)
    {
        var e = expected.to(ScalarType.Float64);
        var a = actual.to(ScalarType.Float64);
        double worst = ((e - a).abs() / (e.abs() + 1e-12)).max().item<double>();
        Assert.True(worst <= rtol, $"{what}: worst relative difference {worst:E3} > {rtol:E1}");
    }

    [Fact]
    public void Five_steps_equal_TorchSharp_AdamW_with_the_same_hyperparameters()
    {
        using var scope = NewDisposeScope();
        var ours = SmallModel(7);
        var theirs = SmallModel(7);
        var initial = Named(ours).Select(p => p.Parameter.detach().clone()).ToList();
        var options = new AdamWOptions(Lr: 1e-2, Beta1: 0.8, Beta2: 0.95, Eps: 1e-7, WeightDecay: 0.05);
        using var adamw = new AdamW(Named(ours), options);
        using var reference = optim.AdamW(theirs.parameters(), options.Lr, options.Beta1, options.Beta2, options.Eps, options.WeightDecay);

        for (int step = 0; step < 5; step++)
        {
            // At step 2 one parameter has no grad: both must skip it, including its bias-correction step count.
            string? skip = step == 2 ? "fc1.bias" : null;
            SetGrads(Named(ours), step, skip);
            SetGrads(Named(theirs), step, skip);
            adamw.Step(options.Lr);
            reference.step();
        }

        var mine = Named(ours);
        var expected = Named(theirs);
        for (int i = 0; i < mine.Count; i++)
        {
            AssertClose(expected[i].Parameter, mine[i].Parameter, 1e-6, mine[i].Name);
            Assert.False(mine[i].Parameter.Same(initial[i]), $"{mine[i].Name} did not move");
        }
        Assert.Equal(5, adamw.StepCount);
        Assert.Equal(4, adamw.StateTensors()["step.fc1.bias"].item<long>());
        Assert.Equal(5, adamw.StateTensors()["step.fc1.weight"].item<long>());
    }

    /// <summary>The flat buffers change no bit: parameters that are views of one buffer (TrainableModel's masters), stepped
    /// with moments that are views of one buffer each, end bit-identical to standalone tensors stepped by torch's
    /// single-tensor AdamW written out here, with a skipped parameter and the no-decay set; odd sizes put every
    /// parameter at another alignment, so a vectorized loop whose tail depended on where a view starts would show.</summary>
    [Fact]
    public void Flat_parameters_and_moments_step_bit_identically_to_standalone_tensors()
    {
        using var scope = NewDisposeScope();
        var model = nn.Sequential(("fc1", nn.Linear(37, 29)), ("norm", nn.LayerNorm(29)), ("fc2", nn.Linear(29, 3)));
        using (var generator = new Generator(3))
        using (no_grad())
            foreach (var p in model.parameters()) p.copy_(randn(p.shape, generator: generator));
        var flat = Named(model);
        var standalone = flat.Select(p => (p.Name, Value: p.Parameter.detach().clone(), M: zeros_like(p.Parameter), V: zeros_like(p.Parameter), Step: new long[1])).ToList();
        using var buffer = FlatBuffer.Adopt(flat.Select(p => (Tensor)p.Parameter).ToArray());
        var options = new AdamWOptions(Lr: 1e-2, Beta1: 0.8, Beta2: 0.95, Eps: 1e-7, WeightDecay: 0.05);
        using var adamw = new AdamW(flat, options, noDecay: name => name.StartsWith("norm.", StringComparison.Ordinal));

        for (int step = 0; step < 4; step++)
        {
            string? skip = step == 1 ? "fc2.bias" : null;
            SetGrads(flat, step, skip);
            adamw.Step(options.Lr);
            using var noGrad = no_grad();
            using var weight1 = tensor(1 - options.Beta1, dtype: ScalarType.Float32);
            for (int i = 0; i < flat.Count; i++)
            {
                var (name, value, m, v, count) = standalone[i];
                var grad = flat[i].Parameter.grad;
                if (grad is null) continue;
                count[0]++;
                if (!name.StartsWith("norm.", StringComparison.Ordinal)) value.mul_(1 - options.Lr * options.WeightDecay);
                m.lerp_(grad, weight1);
                v.mul_(options.Beta2).addcmul_(grad, grad, value: 1 - options.Beta2);
                var denom = v.sqrt().div_(Math.Sqrt(1 - Math.Pow(options.Beta2, count[0]))).add_(options.Eps);
                value.addcdiv_(m, denom, value: -(options.Lr / (1 - Math.Pow(options.Beta1, count[0]))));
            }
            adamw.ZeroGrad();
        }

        var state = adamw.StateTensors();
        for (int i = 0; i < flat.Count; i++)
        {
            var (name, value, m, v, _) = standalone[i];
            Assert.True(value.Same(flat[i].Parameter), $"{name}: the flat step differs from the standalone one");
            Assert.True(m.Same(state[$"exp_avg.{name}"]), $"exp_avg.{name}");
            Assert.True(v.Same(state[$"exp_avg_sq.{name}"]), $"exp_avg_sq.{name}");
        }
        // The moments are laid end to end in one buffer, in the parameters' order.
        for (int i = 1; i < flat.Count; i++)
            foreach (string key in new[] { "exp_avg", "exp_avg_sq" })
            {
                var (before, t) = (state[$"{key}.{flat[i - 1].Name}"], state[$"{key}.{flat[i].Name}"]);
                Assert.Equal(Qwen3Tts.Rank.Distributed.NcclCommunicator.DataPointer(before) + 4 * before.numel(), Qwen3Tts.Rank.Distributed.NcclCommunicator.DataPointer(t));
            }
    }

    [Fact]
    public void First_step_on_a_scalar_matches_the_hand_derivation()
    {
        // After one step m̂ = g and v̂ = g², so p1 = p0·(1 − lr·wd) − lr·g / (|g| + eps).
        const double p0 = 1.5, g = -0.3, lr = 0.1, wd = 0.01, eps = 1e-8;
        using var p = new Parameter(tensor(new[] { (float)p0 }));
        p.grad = tensor(new[] { (float)g });
        using var adamw = new AdamW(new[] { ("w", p) }, new AdamWOptions(Lr: lr, WeightDecay: wd, Eps: eps));
        adamw.Step(lr);
        double expected = p0 * (1 - lr * wd) - lr * g / (Math.Abs(g) + eps);
        Assert.Equal(1.5985, expected, 6);
        Assert.Equal(expected, p.item<float>(), 6);
        var state = adamw.StateTensors();
        Assert.Equal((1 - 0.9) * g, state["exp_avg.w"].item<float>(), 7);
        Assert.Equal((1 - 0.999) * g * g, state["exp_avg_sq.w"].item<float>(), 9);
    }

    [Fact]
    public void A_parameter_without_a_grad_is_untouched()
    {
        using var scope = NewDisposeScope();
        var a = new Parameter(ones(3));
        var b = new Parameter(full(3, 2.0f));
        using var adamw = new AdamW(new[] { ("a", a), ("b", b) }, new AdamWOptions(Lr: 0.1, WeightDecay: 0.1));
        a.grad = ones(3);
        adamw.Step(0.1);
        Assert.True(b.Same(full(3, 2.0f)), "b has no grad, yet it changed (weight decay must be skipped too)");
        Assert.False(a.Same(ones(3)));
        var state = adamw.StateTensors();
        Assert.Equal(0, state["step.b"].item<long>());
        Assert.Equal(0, state["exp_avg.b"].abs().sum().item<float>());
        Assert.Equal(1, state["step.a"].item<long>());
    }

    [Fact]
    public void Zero_grad_drops_the_grads()
    {
        using var p = new Parameter(ones(2));
        p.grad = ones(2);
        using var adamw = new AdamW(new[] { ("p", p) });
        adamw.ZeroGrad();
        Assert.Null(p.grad);
    }

    [Fact]
    public void The_no_decay_predicate_turns_decay_off_for_matching_names()
    {
        using var scope = NewDisposeScope();
        var weight = new Parameter(full(2, 3.0f));
        var bias = new Parameter(full(2, 3.0f));
        const double lr = 0.1, wd = 0.5;
        using var adamw = new AdamW(new[] { ("fc.weight", weight), ("fc.bias", bias) }, new AdamWOptions(WeightDecay: wd), noDecay: n => n.EndsWith(".bias"));
        Assert.True(adamw.Decays("fc.weight"));
        Assert.False(adamw.Decays("fc.bias"));
        // A zero grad moves nothing but the decay: m = v = 0 gives a zero Adam update.
        weight.grad = zeros(2);
        bias.grad = zeros(2);
        adamw.Step(lr);
        Assert.Equal(3.0 * (1 - lr * wd), weight[0].item<float>(), 6);
        Assert.Equal(3.0f, bias[0].item<float>());
    }

    [Fact]
    public void Non_fp32_parameters_are_refused_by_name()
    {
        using var p = new Parameter(ones(2, dtype: ScalarType.BFloat16));
        var error = Assert.Throws<ArgumentException>(() => new AdamW(new[] { ("talker.x", p) }));
        Assert.Contains("'talker.x'", error.Message);
    }

    [Fact]
    public void Saved_state_resumes_bit_exactly()
    {
        using var scope = NewDisposeScope();
        var options = new AdamWOptions(Lr: 1e-2, WeightDecay: 0.01);

        // Uninterrupted: 6 steps.
        var straight = SmallModel(3);
        using (var adamw = new AdamW(Named(straight), options))
            for (int step = 0; step < 6; step++) { SetGrads(Named(straight), step, step == 1 ? "fc2.bias" : null); adamw.Step(options.Lr * (step + 1)); }

        // Interrupted after 3: save weights and state (cloned, as a file would hold them), rebuild, load, 3 more.
        var first = SmallModel(3);
        Dictionary<string, Tensor> saved;
        Dictionary<string, Tensor> weights;
        long savedSteps;
        using (var adamw = new AdamW(Named(first), options))
        {
            for (int step = 0; step < 3; step++) { SetGrads(Named(first), step, step == 1 ? "fc2.bias" : null); adamw.Step(options.Lr * (step + 1)); }
            saved = adamw.StateTensors().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
            weights = Named(first).ToDictionary(p => p.Name, p => p.Parameter.detach().clone());
            savedSteps = adamw.StepCount;
        }
        var resumed = SmallModel(99);
        using (no_grad())
            foreach (var (name, p) in Named(resumed)) p.copy_(weights[name]);
        using (var adamw = new AdamW(Named(resumed), options))
        {
            adamw.LoadState(saved, savedSteps);
            Assert.Equal(3, adamw.StepCount);
            for (int step = 3; step < 6; step++) { SetGrads(Named(resumed), step); adamw.Step(options.Lr * (step + 1)); }
        }

        var expected = Named(straight);
        var actual = Named(resumed);
        for (int i = 0; i < expected.Count; i++)
            Assert.True(expected[i].Parameter.Same(actual[i].Parameter), $"{expected[i].Name} differs after resuming");
    }

    [Fact]
    public void Loading_state_names_the_missing_or_misshaped_entry()
    {
        using var scope = NewDisposeScope();
        var model = SmallModel(1);
        using var adamw = new AdamW(Named(model));
        var state = adamw.StateTensors().ToDictionary(kv => kv.Key, kv => kv.Value.clone());

        var missing = new Dictionary<string, Tensor>(state);
        missing.Remove("exp_avg_sq.fc2.weight");
        Assert.Contains("'exp_avg_sq.fc2.weight'", Assert.Throws<ArgumentException>(() => adamw.LoadState(missing, 1)).Message);

        var misshaped = new Dictionary<string, Tensor>(state) { ["exp_avg.fc1.weight"] = zeros(6, 5) };
        var error = Assert.Throws<ArgumentException>(() => adamw.LoadState(misshaped, 1)).Message;
        Assert.Contains("'exp_avg.fc1.weight'", error);
        Assert.Contains("[6, 5]", error);

        var extra = new Dictionary<string, Tensor>(state) { ["exp_avg.speaker_encoder.fc.weight"] = zeros(2) };
        Assert.Contains("exp_avg.speaker_encoder.fc.weight", Assert.Throws<ArgumentException>(() => adamw.LoadState(extra, 1)).Message);
        Assert.Equal(0, adamw.StepCount); // nothing loaded on error
    }
}
