using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Layers;

/// <summary>Root-mean-square norm, computed in fp32 whatever the input dtype, then cast back
/// before the (learned) scale, as Qwen3TTSRMSNorm does.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly double eps;

    public RmsNorm(long size, double eps, Device? device = null, ScalarType? dtype = null) : base(nameof(RmsNorm))
    {
        weight = new Parameter(ones(size, dtype: dtype, device: device));
        this.eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var variance = x32.pow(2).mean(new long[] { -1 }, keepdim: true);
        var normed = (x32 * rsqrt(variance + eps)).to(x.dtype);
        return (ParameterUse.Of(weight) * normed).MoveToOuterDisposeScope();
    }
}
