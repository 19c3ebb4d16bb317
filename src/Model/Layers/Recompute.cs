using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Layers;

/// <summary>Which decoder layers recompute their activations in backward (--gradient_checkpointing).</summary>
public enum GradientCheckpointing
{
    Off,
    /// <summary>The talker's layers (the long sequences: most of the activation memory).</summary>
    Talker,
    /// <summary>The talker's and the code predictor's layers.</summary>
    All,
}

/// <summary>Gradient checkpointing of one decoder layer, as torch.utils.checkpoint's reentrant variant (TorchSharp has no
/// checkpoint()): forward runs the layer without recording and keeps only its input; backward runs it again with
/// recording from that input and backpropagates the incoming gradient through it, which accumulates the layer's
/// parameter gradients as the plain step does and hands the input's gradient on. The layer has no randomness, so the
/// recomputed activations are the forward's bit for bit. Memory: one hidden state per layer instead of every layer's
/// saved tensors; cost: one more forward of each layer.
///
/// With a <see cref="ParameterUse"/> observer (overlapped gradient sync) the reads are counted in the first forward and
/// tapped in the recompute, which runs with the observer captured at forward time on whatever thread backward uses.</summary>
public static class Recompute
{
    public static Tensor Layer(DecoderLayer layer, Tensor x, Tensor cos, Tensor sin, Tensor? mask)
    {
        // The caller's scope disposes its handles of cos, sin and the mask when forward returns: backward keeps its own.
        var inputs = new Inputs(layer, cos.alias().DetachFromDisposeScope(), sin.alias().DetachFromDisposeScope(),
            mask?.alias().DetachFromDisposeScope(), ParameterUse.Observer);
        return RecomputedLayer.apply(x, inputs);
    }

    sealed record Inputs(DecoderLayer Layer, Tensor Cos, Tensor Sin, Tensor? Mask, IParameterUseObserver? Observer)
    {
        public void Release()
        {
            Cos.Dispose();
            Sin.Dispose();
            Mask?.Dispose();
        }
    }

    sealed class RecomputedLayer : autograd.SingleTensorFunction<RecomputedLayer>
    {
        const string Key = "layer";

        public override string Name => "RecomputedDecoderLayer";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (x, inputs) = ((Tensor)vars[0], (Inputs)vars[1]);
            ctx.save_for_backward([x]);
            ctx.save_data(Key, inputs);
            using var noGrad = no_grad();
            using var counting = ParameterUse.CountReads();
            return inputs.Layer.forward(x, inputs.Cos, inputs.Sin, inputs.Mask);
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        {
            var inputs = (Inputs)ctx.get_data(Key);
            var saved = ctx.get_saved_variables()[0];
            using var grad = enable_grad();
            var input = saved.detach().requires_grad_(true);
            using (ParameterUse.Recomputing(inputs.Observer))
            using (var output = inputs.Layer.forward(input, inputs.Cos, inputs.Sin, inputs.Mask))
                output.backward([grad_output]);
            inputs.Release();
            // One gradient per argument of apply; the second is the non-tensor Inputs.
            return [input.grad!, null!];
        }
    }
}
