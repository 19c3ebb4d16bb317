using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>ConvTranspose1d made causal by cutting its last (kernel − stride) samples: T inputs give T · stride
/// outputs, and output sample j depends only on inputs ≤ j / stride. The reference's
/// Qwen3TTSTokenizerV2CausalTransConvNet; the weights sit under <c>conv.</c> ([C_in, C_out, k]).</summary>
public sealed class CausalTransConvNet : nn.Module<Tensor, Tensor>
{
    readonly ConvTranspose1d conv;
    readonly long rightPad;

    public CausalTransConvNet(long inChannels, long outChannels, long kernelSize, long stride = 1, Device? device = null, ScalarType? dtype = null)
        : base(nameof(CausalTransConvNet))
    {
        conv = nn.ConvTranspose1d(inChannels, outChannels, kernelSize, stride: stride, device: device, dtype: dtype);
        rightPad = kernelSize - stride;
        RegisterComponents();
    }

    /// <param name="x">[B, C_in, T]</param>
    /// <returns>[B, C_out, (T − 1) · stride + kernel − (kernel − stride)] = [B, C_out, T · stride]</returns>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = conv.forward(x);
        if (rightPad > 0) y = y[TensorIndex.Ellipsis, TensorIndex.Slice(0, y.shape[^1] - rightPad)];
        return y.contiguous().MoveToOuterDisposeScope();
    }
}
