using System.Diagnostics;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Layers;
using Qwen3Tts.Model.Sft;
using TorchSharp;
using TorchSharp.Modules;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Model;

/// <summary>The per-read gradient taps: with an observer every trainable parameter reports the gradients of its reads,
/// and they add up to its .grad; without one nothing changes.</summary>
public class ParameterUseTests(ITestOutputHelper output)
{
    static readonly Qwen3TtsConfig Config = Presets.Config("tiny");

    /// <summary>Keeps, per parameter, the count of reads and the sum of the reported gradients (fp64).</summary>
    sealed class Recorder : IParameterUseObserver
    {
        public readonly Dictionary<Parameter, int> Uses = new(ReferenceEqualityComparer.Instance);
        public readonly Dictionary<Parameter, int> Reports = new(ReferenceEqualityComparer.Instance);
        public readonly Dictionary<Parameter, Tensor> Sums = new(ReferenceEqualityComparer.Instance);

        public void Used(Parameter parameter)
        {
            lock (this) Uses[parameter] = Uses.GetValueOrDefault(parameter) + 1;
        }

        /// <summary>Takes every gradient (autograd then leaves .grad alone) when true.</summary>
        public bool Takes { get; init; }

        public bool GradientReady(Parameter parameter, Tensor grad)
        {
            lock (this)
            {
                Reports[parameter] = Reports.GetValueOrDefault(parameter) + 1;
                var g = grad.detach().to(ScalarType.Float64, copy: true).DetachFromDisposeScope();
                if (Sums.TryGetValue(parameter, out var sum)) { sum.add_(g); g.Dispose(); }
                else Sums[parameter] = g;
            }
            return Takes;
        }
    }

    static SftBatch Batch()
    {
        var rng = new Random(5);
        var samples = Enumerable.Range(0, 2).Select(s =>
        {
            var ids = new List<int> { Config.ImStartTokenId, Config.AssistantTokenId, 198 };
            ids.AddRange(Enumerable.Range(0, 6 + s).Select(_ => rng.Next(1000, 100000)));
            ids.AddRange(new[] { Config.ImEndTokenId, 198, Config.ImStartTokenId, Config.AssistantTokenId, 198 });
            var codes = new long[5 + s, 16];
            for (int f = 0; f < codes.GetLength(0); f++)
                for (int q = 0; q < 16; q++) codes[f, q] = rng.Next(2048);
            return new SftSample(ids, codes, zeros(20, 128));
        }).ToList();
        return SftCollate.Collate(samples, Config);
    }

    static Qwen3TtsModel NewModel()
    {
        var model = new Qwen3TtsModel(Config);
        ModelInit.Initialize(model, 3, 0.02);
        return model;
    }

    static Tensor Speakers() => randn(new long[] { 2, Config.Talker.HiddenSize }, generator: new Generator(9));

    [Fact]
    public void Every_trainable_parameter_reports_its_reads_and_they_sum_to_its_grad()
    {
        const LossAlignment alignment = LossAlignment.Fixed; // upstream needs text width = talker width, not the tiny config
        using var model = NewModel();
        using var batch = Batch();
        var recorder = new Recorder();
        using (ParameterUse.Observe(recorder))
        {
            using var scope = NewDisposeScope();
            SftObjective.Compute(model.Talker, batch, Speakers(), alignment).Loss.backward();
        }
        Assert.Null(ParameterUse.Observer);

        int checkedCount = 0;
        foreach (var (name, p) in model.Talker.named_parameters())
        {
            Assert.NotNull(p.grad);
            Assert.True(recorder.Reports.GetValueOrDefault(p) >= 1, $"{name} has a .grad but reported no gradient");
            Assert.Equal(recorder.Uses[p], recorder.Reports[p]);
            var expected = p.grad.to(ScalarType.Float64);
            double scale = Math.Max(1e-12, expected.abs().max().item<double>());
            double diff = (recorder.Sums[p] - expected).abs().max().item<double>();
            Assert.True(diff <= 1e-6 * scale, $"{name}: Σ reported gradients differs from .grad by {diff:E2} (largest {scale:E2})");
            checkedCount++;
        }
        var codec = model.Talker.Model.CodecEmbedding.get_parameter("weight")!;
        Assert.True(recorder.Uses[codec] >= 2, "the codec embedding is read by the talker input and the code predictor input");
        int trainable = model.Talker.parameters().Count();
        Assert.Equal(trainable, checkedCount);
        output.WriteLine($"{checkedCount} parameters, {recorder.Reports.Values.Sum()} reported reads");
    }

    /// <summary>An observer that takes the gradients (a reducer that keeps its own fp32 sum) leaves every .grad null
    /// while receiving the same gradients: no second whole copy is made.</summary>
    [Fact]
    public void Gradients_the_observer_takes_never_reach_grad()
    {
        using var model = NewModel();
        using var batch = Batch();
        var recorder = new Recorder { Takes = true };
        using (ParameterUse.Observe(recorder))
        {
            using var scope = NewDisposeScope();
            SftObjective.Compute(model.Talker, batch, Speakers(), LossAlignment.Fixed).Loss.backward();
        }
        foreach (var (name, p) in model.Talker.named_parameters())
        {
            Assert.True(p.grad is null, $"{name} got a .grad although its gradients were taken");
            Assert.Equal(recorder.Uses[p], recorder.Reports[p]);
        }
        // The same sums as autograd's .grad when nothing is taken.
        using var again = NewModel();
        using (var scope = NewDisposeScope()) SftObjective.Compute(again.Talker, batch, Speakers(), LossAlignment.Fixed).Loss.backward();
        foreach (var ((name, p), (_, q)) in model.Talker.named_parameters().Zip(again.Talker.named_parameters()))
        {
            var expected = q.grad!.to(ScalarType.Float64);
            double scale = Math.Max(1e-12, expected.abs().max().item<double>());
            Assert.True((recorder.Sums[p] - expected).abs().max().item<double>() <= 1e-6 * scale, name);
        }
    }

    [Fact]
    public void Without_an_observer_forward_is_bit_identical_and_nothing_is_tapped()
    {
        using var model = NewModel();
        using var batch = Batch();
        float[] Loss() { using var s = NewDisposeScope(); return SftObjective.Compute(model.Talker, batch, Speakers(), LossAlignment.Fixed).Loss.data<float>().ToArray(); }
        var plain = Loss();
        var recorder = new Recorder();
        float[] observed;
        using (ParameterUse.Observe(recorder)) observed = Loss();
        Assert.Equal(plain, observed); // the taps are identities: same value, bit for bit
        Assert.Equal(plain, Loss());
        Assert.NotEmpty(recorder.Uses);

        // Outside an observed scope, and under no_grad even inside one, the parameter itself is read.
        var p = model.Talker.CodecHead.weight!;
        Assert.Same(p, ParameterUse.Of(p));
        using (ParameterUse.Observe(recorder))
        using (no_grad())
            Assert.Same(p, ParameterUse.Of(p));
    }

    [Fact]
    public void Tap_overhead_on_the_tiny_model()
    {
        using var model = NewModel();
        using var batch = Batch();
        var recorder = new NullObserver();
        double Step(bool observed)
        {
            var clock = Stopwatch.StartNew();
            using var scope = NewDisposeScope();
            using var tap = observed ? ParameterUse.Observe(recorder) : null;
            SftObjective.Compute(model.Talker, batch, Speakers(), LossAlignment.Fixed).Loss.backward();
            return clock.Elapsed.TotalMilliseconds;
        }
        Step(false);
        Step(true);
        // Interleaved, medians: the tiny model's step is mostly per-op overhead, which is what a tap adds.
        var plain = new List<double>();
        var tapped = new List<double>();
        for (int i = 0; i < 15; i++)
        {
            plain.Add(Step(false));
            tapped.Add(Step(true));
        }
        double Median(List<double> v) => v.Order().ElementAt(v.Count / 2);
        double p = Median(plain), t = Median(tapped);
        output.WriteLine($"tiny model forward+backward (median of 15): {p:F2} ms plain, {t:F2} ms tapped ({(t / p - 1) * 100:F0}% overhead)");

        int stepReads = recorder.Reads / 16; // 16 observed steps above
        // The cost of one tap alone (forward apply + backward callback), which is what a step pays per read.
        var w = new Parameter(ones(4));
        double PerRead(bool observed)
        {
            const int n = 2000;
            using var scope = NewDisposeScope();
            using var tap = observed ? ParameterUse.Observe(recorder) : null;
            var clock = Stopwatch.StartNew();
            var sum = zeros(4);
            for (int i = 0; i < n; i++) sum = sum + ParameterUse.Of(w);
            sum.sum().backward();
            return clock.Elapsed.TotalMilliseconds * 1e3 / n;
        }
        PerRead(true);
        double untappedUs = PerRead(false), tappedUs = PerRead(true);
        int reads = stepReads;
        output.WriteLine($"one read: {untappedUs:F1} µs untapped, {tappedUs:F1} µs tapped; ≈{reads} reads a step ⇒ ≈{(tappedUs - untappedUs) * reads / 1e3:F2} ms a step");
    }

    sealed class NullObserver : IParameterUseObserver
    {
        public int Reads;
        public void Used(Parameter parameter) => Reads++;
        public bool GradientReady(Parameter parameter, Tensor grad) => false;
    }
}
