using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>Conv1d made causal by zero padding on the left: an output sample never sees a later input sample.
/// Left padding is the effective kernel (dilation · (k − 1) + 1) minus the stride; a little extra right padding
/// makes the last window complete, so T inputs give ceil(T / stride) outputs (T with stride 1).
/// The reference's Qwen3TTSTokenizerV2CausalConvNet; the weights sit under <c>conv.</c>.</summary>
public sealed class CausalConvNet : nn.Module<Tensor, Tensor>
{
    readonly Conv1d conv;
    readonly long stride, effectiveKernel, leftPad;

    public CausalConvNet(long inChannels, long outChannels, long kernelSize, long dilation = 1, long stride = 1, long groups = 1,
        Device? device = null, ScalarType? dtype = null) : base(nameof(CausalConvNet))
    {
        conv = nn.Conv1d(inChannels, outChannels, kernelSize, stride: stride, dilation: dilation, groups: groups, device: device, dtype: dtype);
        this.stride = stride;
        effectiveKernel = (kernelSize - 1) * dilation + 1;
        leftPad = effectiveKernel - stride;
        RegisterComponents();
    }

    /// <summary>Right padding that completes the last stride window (0 for stride 1).</summary>
    public long ExtraPadding(long length)
    {
        double frames = (double)(length - effectiveKernel + leftPad) / stride + 1;
        long ideal = ((long)Math.Ceiling(frames) - 1) * stride + (effectiveKernel - leftPad);
        return ideal - length;
    }

    /// <param name="x">[B, C_in, T]</param>
    /// <returns>[B, C_out, ceil(T / stride)]</returns>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var padded = nn.functional.pad(x, new[] { leftPad, ExtraPadding(x.shape[^1]) }, PaddingModes.Constant, 0);
        return conv.forward(padded).MoveToOuterDisposeScope();
    }
}

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
