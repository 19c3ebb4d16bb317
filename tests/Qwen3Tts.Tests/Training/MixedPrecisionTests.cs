using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Rank.Training;
using TorchSharp;
using static TorchSharp.torch;
using AdamW = Qwen3Tts.Rank.Training.AdamW;

namespace Qwen3Tts.Tests.Training;

public class MixedPrecisionTests
{
    const string NormWeight = "talker.model.norm.weight"; // the final RMSNorm scale: all ones at init

    static Qwen3TtsModel TinyModel(ulong seed = 5)
    {
        var model = new Qwen3TtsModel(Presets.Config("tiny"));
        ModelInit.Initialize(model, seed, std: 0.02);
        return model;
    }

    /// <summary>Forward and backward through the compute talker on a fixed input with a fixed random readout.</summary>
    static void Backward(TrainableModel m, Tensor x, Tensor readout)
    {
        using var scope = NewDisposeScope();
        var hidden = m.ComputeTalker.forward(x.to(m.ComputeTalker.Model.CodecEmbedding.weight!.dtype), null, null);
        (hidden.to(ScalarType.Float32) * readout).sum().backward();
        m.AccumulateGradsToMaster();
    }

    static Tensor Master(TrainableModel m, string name) => m.MasterParameters.Single(p => p.Name == name).Parameter;
    static Tensor Compute(TrainableModel m, string name) => m.ComputeParameters.Single(p => p.Name == name).Parameter;

    /// <summary>Where each parameter's data starts, and the bytes after its end (the next one's start when laid end to end).</summary>
    /// <summary>Each tensor (the parameters, or those gradients that exist) starts where the ones before it in the list end,
    /// counted from the first.</summary>
    static void AssertLaidEndToEnd(IReadOnlyList<(string Name, TorchSharp.Modules.Parameter Parameter)> parameters, int elementSize, bool grads = false)
    {
        long? start = null, at = 0;
        int checkedCount = 0;
        foreach (var (name, p) in parameters)
        {
            if ((grads ? p.grad : p) is { } t)
            {
                long pointer = Qwen3Tts.Rank.Distributed.NcclCommunicator.DataPointer(t);
                start ??= pointer - at * elementSize;
                Assert.True(start + at * elementSize == pointer, $"{name} is not where the tensors before it end");
                checkedCount++;
            }
            at += p.numel();
        }
        Assert.True(checkedCount > 1, "nothing laid out to check");
    }

    /// <summary>The trainable masters and the bf16 compute weights each live in one buffer, the parameters views of it in
    /// order; the model is unchanged by the move, the cast over the flat buffers gives the bits of a per-parameter cast, and
    /// masters released and restored (ZeRO) are laid end to end again.</summary>
    [Fact]
    public void Masters_and_compute_weights_are_views_of_one_flat_buffer_each()
    {
        using var scope = NewDisposeScope();
        using var reference = TinyModel();
        var before = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        using var model = TinyModel();
        using var m = new TrainableModel(model, MixedPrecision.Bf16);
        AssertLaidEndToEnd(m.MasterParameters, 4);
        AssertLaidEndToEnd(m.ComputeParameters, 2);
        foreach (var (name, p) in model.named_parameters())
            Assert.True(before[name].Same(p), $"{name} changed when it moved into the flat buffer");
        foreach (var (name, p) in m.ComputeParameters)
            Assert.True(before[name].to(ScalarType.BFloat16).Same(p), $"{name}: the flat cast differs from the parameter's own");
        // The fp32 master gradients too: bf16 gradients cast into the slices of a third buffer, as a per-parameter cast would.
        using (var g = new Generator(3))
            Backward(m, randn(1, 6, 64, generator: g), randn(1, 6, 64, generator: g));
        AssertLaidEndToEnd(m.MasterParameters, 4, grads: true);
        // The module still trains through the views: a step on one master shows in its compute copy only.
        using (no_grad()) Master(m, NormWeight).add_(1.0);
        m.CopyMasterToCompute();
        Assert.True(full(Compute(m, NormWeight).shape, 2.0, ScalarType.BFloat16).Same(Compute(m, NormWeight)));

        m.ReleaseMasters();
        Assert.All(m.MasterParameters, p => Assert.Equal(0, p.Parameter.numel()));
        m.RestoreMasters();
        AssertLaidEndToEnd(m.MasterParameters, 4);
        Assert.All(m.MasterParameters, p => Assert.Equal(Compute(m, p.Name).shape, p.Parameter.shape));
    }

    [Fact]
    public void An_update_below_bf16_resolution_is_kept_in_the_fp32_master_and_accumulates()
    {
        using var scope = NewDisposeScope();
        const double lr = 1e-6;
        // What pure bf16 training would do: 1 − 1e-6 rounds back to 1 (bf16 spacing just below 1 is 2^-8).
        var pure = ones(4, dtype: ScalarType.BFloat16);
        for (int i = 0; i < 5; i++) pure.add_(-lr);
        Assert.True(pure.Same(ones(4, dtype: ScalarType.BFloat16)), "a bf16 weight of 1 absorbed an update of 1e-6");

        using var m = new TrainableModel(TinyModel(), MixedPrecision.Bf16);
        using var g = new Generator(11);
        var x = randn(1, 6, 64, generator: g);
        var readout = randn(1, 6, 64, generator: g);
        // Only the norm scale trains, so the forward (and the grad) stays the same while the rounded copy stays at 1.
        using var adamw = new AdamW(m.MasterParameters.Where(p => p.Name == NormWeight), new AdamWOptions(WeightDecay: 0));
        Tensor? sign = null;
        for (int step = 1; step <= 5; step++)
        {
            Backward(m, x, readout);
            var grad = Master(m, NormWeight).grad!;
            Assert.Equal(ScalarType.Float32, grad.dtype);
            sign ??= grad.sign().where(grad.abs() > 1e-3, zeros_like(grad)).detach().clone();
            adamw.Step(lr);
            adamw.ZeroGrad();
            m.CopyMasterToCompute();

            // Constant grads give m̂/sqrt(v̂) = sign(g): each step moves the master by lr. fp32 spacing just below 1
            // is 6e-8, so each step may round by an ulp or two: allow a quarter of one step's lr, no more.
            var moved = ones(64) - Master(m, NormWeight);
            var expected = sign * (step * lr);
            var mask = sign != 0;
            double worst = (moved - expected).abs().masked_select(mask).max().item<float>();
            Assert.True(worst < 0.25 * lr, $"step {step}: the master moved {worst:E2} away from 1 − {step}·lr·sign(g)");
            Assert.True(Compute(m, NormWeight).Same(ones(64, dtype: ScalarType.BFloat16)), "the bf16 copy should still round to 1");
        }
        Assert.True(sign!.ne(0).sum().item<long>() > 32, "too few elements had a usable gradient for the test to mean anything");
    }

    [Fact]
    public void Accumulated_updates_show_in_the_bf16_copy_once_they_pass_half_a_bf16_step()
    {
        using var scope = NewDisposeScope();
        const double lr = 2e-4; // 1 − 2^-9 = 0.998047 is the rounding boundary: crossed after 10 steps (0.998), not 9 (0.9982)
        using var m = new TrainableModel(TinyModel(), MixedPrecision.Bf16);
        using var g = new Generator(12);
        var x = randn(1, 6, 64, generator: g);
        var readout = randn(1, 6, 64, generator: g);
        using var adamw = new AdamW(m.MasterParameters.Where(p => p.Name == NormWeight), new AdamWOptions(WeightDecay: 0));
        Tensor? down = null;
        for (int step = 1; step <= 10; step++)
        {
            Backward(m, x, readout);
            var grad = Master(m, NormWeight).grad!;
            down ??= (grad > 1e-3).detach().clone(); // elements whose weight moves down from 1
            adamw.Step(lr);
            adamw.ZeroGrad();
            m.CopyMasterToCompute();
            var copy = Compute(m, NormWeight).to(ScalarType.Float32).masked_select(down);
            float expected = step < 10 ? 1f : 1f - 1f / 256;
            Assert.True(copy.eq(expected).all().item<bool>(), $"step {step}: bf16 copy should be {expected}, got {copy.min().item<float>()}..{copy.max().item<float>()}");
        }
        Assert.True(down!.sum().item<long>() > 16);
    }

    [Fact]
    public void The_bf16_talker_forward_is_close_to_the_fp32_forward()
    {
        using var scope = NewDisposeScope();
        using var m = new TrainableModel(TinyModel(), MixedPrecision.Bf16);
        using var g = new Generator(13);
        var x = randn(2, 9, 64, generator: g);
        using var noGrad = no_grad();
        var fp32 = m.Master.Talker.forward(x, null, null);
        var bf16 = m.ComputeTalker.forward(x.to(ScalarType.BFloat16), null, null);
        Assert.Equal(ScalarType.BFloat16, bf16.dtype);
        // Hidden states are RMS-normed (about unit scale) and dominated by the residual input; the codebook-0 logits
        // depend on every weight. bf16 keeps 8 significant bits (relative step 2^-8 ≈ 0.4%) and two layers compound a
        // few roundings. Measured on this seed: 0.36% (hidden) and 0.43% (logits) relative L2, 0.016 max abs on hidden.
        // Allowed: 1.5%, 2% and 0.08. A compute talker left with its own random weights is off by 31%, 370% and 1.1.
        double relative = RelativeError(bf16, fp32);
        double logits = RelativeError(m.ComputeTalker.CodecHead.forward(bf16), m.Master.Talker.CodecHead.forward(fp32));
        double worst = (bf16.to(ScalarType.Float32) - fp32).abs().max().item<float>();
        Assert.True(relative < 0.015 && logits < 0.02 && worst < 0.08, $"relative L2 error: hidden {relative:F4}, logits {logits:F4}; max abs hidden error {worst:F4}");
        Assert.True(relative > 0, "bf16 and fp32 agree exactly: the compute talker is not running in bf16");
    }

    static double RelativeError(Tensor actual, Tensor expected) =>
        ((actual.to(ScalarType.Float32) - expected).norm() / expected.norm()).item<float>();

    [Theory]
    [InlineData(MixedPrecision.Bf16)]
    [InlineData(MixedPrecision.Fp32)]
    public void Master_and_compute_parameters_share_names_and_order(MixedPrecision precision)
    {
        using var scope = NewDisposeScope();
        var model = TinyModel();
        using var m = new TrainableModel(model, precision);
        var talkerNames = model.Talker.named_parameters().Select(p => "talker." + p.name).ToList();
        Assert.Equal(talkerNames, m.MasterParameters.Select(p => p.Name));
        Assert.Equal(talkerNames, m.ComputeParameters.Select(p => p.Name));
        Assert.DoesNotContain(m.MasterParameters, p => p.Name.StartsWith("speaker_encoder."));
        var computeType = precision == MixedPrecision.Bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        for (int i = 0; i < talkerNames.Count; i++)
        {
            var (name, master) = m.MasterParameters[i];
            var compute = m.ComputeParameters[i].Parameter;
            Assert.Equal(ScalarType.Float32, master.dtype);
            Assert.Equal(computeType, compute.dtype);
            Assert.True(compute.Same(master.to(computeType)), $"{name}: compute copy is not the master rounded to {computeType}");
        }
        Assert.Equal(precision == MixedPrecision.Fp32, ReferenceEquals(m.ComputeTalker, model.Talker));
    }

    [Theory]
    [InlineData(MixedPrecision.Bf16)]
    [InlineData(MixedPrecision.Fp32)]
    public void The_speaker_encoder_is_frozen_gets_no_grads_and_no_optimizer_state(MixedPrecision precision)
    {
        using var scope = NewDisposeScope();
        using var m = new TrainableModel(TinyModel(), precision);
        using var g = new Generator(14);
        // Deliberately outside no_grad: freezing must not depend on the caller remembering it.
        var speaker = m.SpeakerEncoder!.forward(randn(1, 100, 128, generator: g));
        Assert.False(speaker.requires_grad);
        var x = randn(1, 6, 64, generator: g) + speaker.unsqueeze(1);
        var hidden = m.ComputeTalker.forward(x.to(m.ComputeParameters[0].Parameter.dtype), null, null);
        hidden.to(ScalarType.Float32).pow(2).sum().backward();
        m.AccumulateGradsToMaster();

        Assert.All(m.Master.named_parameters().Where(p => p.name.StartsWith("speaker_encoder.")), p =>
        {
            Assert.False(p.parameter.requires_grad, p.name);
            Assert.Null(p.parameter.grad);
        });
        Assert.NotNull(Master(m, NormWeight).grad);
        if (precision == MixedPrecision.Bf16) Assert.Null(Compute(m, NormWeight).grad); // moved to the master

        using var adamw = new AdamW(m.MasterParameters);
        adamw.Step(1e-3);
        Assert.DoesNotContain(adamw.StateTensors().Keys, k => k.Contains("speaker_encoder."));
        Assert.Equal(m.MasterParameters.Count * 3, adamw.StateTensors().Count);
        Assert.Equal(ScalarType.Float32, m.EmbedSpeakers(randn(1, 100, 128, generator: g)).dtype);
    }

    [Fact]
    public void Grads_from_several_micro_steps_accumulate_in_fp32()
    {
        using var scope = NewDisposeScope();
        using var m = new TrainableModel(TinyModel(), MixedPrecision.Bf16);
        using var g = new Generator(15);
        var x = randn(1, 6, 64, generator: g);
        var readout = randn(1, 6, 64, generator: g);
        Backward(m, x, readout);
        var once = Master(m, NormWeight).grad!.detach().clone();
        Backward(m, x, readout);
        Backward(m, x, readout);
        Assert.True(Master(m, NormWeight).grad!.allclose(once * 3, rtol: 1e-6, atol: 0), "three identical micro-steps should sum to 3× one");
    }

    [Fact]
    public void A_non_fp32_master_is_refused_by_name()
    {
        using var model = new Qwen3TtsModel(Presets.Config("tiny"), dtype: ScalarType.BFloat16);
        var error = Assert.Throws<ArgumentException>(() => new TrainableModel(model, MixedPrecision.Bf16));
        Assert.Contains("talker.", error.Message);
        Assert.Equal(MixedPrecision.Bf16, TrainableModel.ParsePrecision("bf16"));
        Assert.Throws<ArgumentException>(() => TrainableModel.ParsePrecision("fp16"));
    }
}
