using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>x + conv1x1(snake(conv7_dilated(snake(x)))): a causal dilated residual unit at constant width.</summary>
public sealed class DecoderResidualUnit : nn.Module<Tensor, Tensor>
{
    readonly SnakeBeta act1, act2;
    readonly MimiConv1d conv1, conv2;

    public DecoderResidualUnit(long dim, long dilation, Device? device = null, ScalarType? dtype = null) : base(nameof(DecoderResidualUnit))
    {
        act1 = new SnakeBeta(dim, device, dtype);
        conv1 = new MimiConv1d(dim, dim, kernelSize: 7, dilation: dilation, device: device, dtype: dtype);
        act2 = new SnakeBeta(dim, device, dtype);
        conv2 = new MimiConv1d(dim, dim, kernelSize: 1, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return (x + conv2.forward(act2.forward(conv1.forward(act1.forward(x))))).MoveToOuterDisposeScope();
    }
}

/// <summary>One upsampling stage of the waveform decoder (BigVGAN-style): SnakeBeta, a causal transposed conv
/// (kernel 2r, stride r) that multiplies the rate by r and halves the width, then residual units with
/// dilations 1, 3, 9. Weights under <c>block.0</c> .. <c>block.4</c>.</summary>
public sealed class DecoderBlock : nn.Module<Tensor, Tensor>
{
    public static readonly IReadOnlyList<int> Dilations = new[] { 1, 3, 9 };

    readonly ModuleList<nn.Module<Tensor, Tensor>> block;

    public DecoderBlock(long inDim, long outDim, int upsampleRate, Device? device = null, ScalarType? dtype = null) : base(nameof(DecoderBlock))
    {
        block = new ModuleList<nn.Module<Tensor, Tensor>>(
            new SnakeBeta(inDim, device, dtype),
            new CausalTransConvNet(inDim, outDim, 2 * upsampleRate, upsampleRate, device, dtype));
        foreach (int dilation in Dilations) block.Add(new DecoderResidualUnit(outDim, dilation, device, dtype));
        RegisterComponents();
    }

    /// <param name="x">[B, in_dim, T]</param>
    /// <returns>[B, out_dim, T · rate]</returns>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x;
        foreach (var m in block) h = m.forward(h);
        return h.MoveToOuterDisposeScope();
    }
}
