using Qwen3Tts.Model.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>Mimi's causal Conv1d: the input is padded on the left by (effective kernel - stride), and on the right by
/// just enough to complete a last, partial frame, so the output has ceil(length / stride) frames and frame t sees
/// only samples before (t + 1) * stride. The pad values are zeros ("constant") or the edge sample ("replicate",
/// the downsample conv). State-dict name: <c>conv.weight</c>, <c>conv.bias</c>. With constant padding this is also
/// the speech tokenizer decoder's Qwen3TTSTokenizerV2CausalConvNet (which adds <c>groups</c> for the
/// ConvNeXt blocks' depthwise conv).</summary>
public sealed class MimiConv1d : nn.Module<Tensor, Tensor>
{
    readonly Conv1d conv;
    readonly long stride, effectiveKernel, groups;
    readonly bool replicate;

    public MimiConv1d(long inChannels, long outChannels, long kernelSize, long stride = 1, long dilation = 1, bool bias = true,
        string padMode = "constant", long groups = 1, Device? device = null, ScalarType? dtype = null) : base(nameof(MimiConv1d))
    {
        conv = nn.Conv1d(inChannels, outChannels, kernelSize, stride: stride, dilation: dilation, groups: groups, bias: bias, device: device, dtype: dtype);
        this.stride = stride;
        this.groups = groups;
        effectiveKernel = (kernelSize - 1) * dilation + 1;
        replicate = padMode switch
        {
            "constant" => false,
            "replicate" => true,
            _ => throw new ArgumentException($"pad mode '{padMode}' is not 'constant' or 'replicate'"),
        };
        RegisterComponents();
    }

    /// <summary>Left padding: the effective kernel minus the stride (Mimi's padding_total, all of it on the left).</summary>
    public long LeftPadding => effectiveKernel - stride;

    /// <summary>Right padding for an input of <paramref name="length"/>: as Mimi's _get_extra_padding_for_conv1d,
    /// frames = ceil((length - kernel + padding_total) / stride + 1) - 1, ideal = frames * stride + kernel - padding_total,
    /// extra = ideal - length (in exact integers; it reduces to (-length) mod stride).</summary>
    public long ExtraPadding(long length) => ExtraPadding(length, effectiveKernel, stride);

    public static long ExtraPadding(long length, long effectiveKernel, long stride)
    {
        long paddingTotal = effectiveKernel - stride;
        long frames = CeilDiv(length - effectiveKernel + paddingTotal + stride, stride) - 1;
        long ideal = frames * stride + effectiveKernel - paddingTotal;
        return ideal - length;
    }

    /// <summary>Output frames for an input of <paramref name="length"/>.</summary>
    public long OutputLength(long length) => (length + LeftPadding + ExtraPadding(length) - effectiveKernel) / stride + 1;

    /// <param name="x">[B, C_in, L]</param>
    /// <returns>[B, C_out, ceil(L / stride)]</returns>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long left = LeftPadding, right = ExtraPadding(x.shape[^1]);
        var padded = left == 0 && right == 0 ? x
            : nn.functional.pad(x, new[] { left, right }, replicate ? PaddingModes.Replicate : PaddingModes.Constant);
        return BatchedConv.Forward(conv, padded, groups).MoveToOuterDisposeScope();
    }

    static long CeilDiv(long a, long b) => a >= 0 ? (a + b - 1) / b : -(-a / b);
}
