using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>SnakeBeta activation (BigVGAN; Ziyin et al. 2020), per channel c:
/// y = x + sin²(x · e^alpha_c) / (e^beta_c + 1e-9). alpha and beta are stored as logs, both zero at init
/// (frequency and magnitude one).</summary>
public sealed class SnakeBeta : nn.Module<Tensor, Tensor>
{
    const double NoDivByZero = 1e-9;
    readonly Parameter alpha, beta;

    public SnakeBeta(long channels, Device? device = null, ScalarType? dtype = null) : base(nameof(SnakeBeta))
    {
        alpha = new Parameter(zeros(channels, dtype: dtype, device: device));
        beta = new Parameter(zeros(channels, dtype: dtype, device: device));
        RegisterComponents();
    }

    /// <param name="x">[B, C, T]</param>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var a = alpha.view(1, -1, 1).exp(); // [1, C, 1]
        var b = beta.view(1, -1, 1).exp();
        return (x + (x * a).sin().pow(2) / (b + NoDivByZero)).MoveToOuterDisposeScope();
    }
}
