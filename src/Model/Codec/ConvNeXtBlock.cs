using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>ConvNeXt block over [B, C, T] (Liu et al. 2022), causal: x + gamma · pw2(gelu(pw1(LN(dwconv7(x))))).
/// The depthwise conv mixes time within each channel; the two pointwise Linears mix channels (4× wider inside);
/// gamma starts at 1e-6 so a fresh block is nearly the identity.</summary>
public sealed class ConvNeXtBlock : nn.Module<Tensor, Tensor>
{
    readonly MimiConv1d dwconv;
    readonly LayerNorm norm;
    readonly Linear pwconv1, pwconv2;
    readonly Parameter gamma;

    public ConvNeXtBlock(long dim, Device? device = null, ScalarType? dtype = null) : base(nameof(ConvNeXtBlock))
    {
        dwconv = new MimiConv1d(dim, dim, kernelSize: 7, groups: dim, device: device, dtype: dtype);
        norm = nn.LayerNorm(dim, eps: 1e-6, device: device, dtype: dtype);
        pwconv1 = nn.Linear(dim, 4 * dim, device: device, dtype: dtype);
        pwconv2 = nn.Linear(4 * dim, dim, device: device, dtype: dtype);
        gamma = new Parameter(full(dim, 1e-6, dtype: dtype, device: device));
        RegisterComponents();
    }

    /// <param name="x">[B, C, T]</param>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = dwconv.forward(x).permute(0, 2, 1); // [B, T, C]
        h = pwconv2.forward(nn.functional.gelu(pwconv1.forward(norm.forward(h))));
        h = (gamma * h).permute(0, 2, 1);           // [B, C, T]
        return (x + h).MoveToOuterDisposeScope();
    }
}
