using Qwen3Tts.Rank.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Training;

public class GradClipTests
{
    /// <summary>Grads (3, 4) and (12): global L2 norm sqrt(9 + 16 + 144) = 13; a third parameter has none.</summary>
    static Parameter[] Params(ScalarType gradType = ScalarType.Float32)
    {
        var a = new Parameter(zeros(2)) { grad = tensor(new[] { 3f, 4f }).to(gradType) };
        var b = new Parameter(zeros(1)) { grad = tensor(new[] { 12f }).to(gradType) };
        var none = new Parameter(zeros(5));
        return new[] { a, b, none };
    }

    [Fact]
    public void Returns_the_global_norm_and_leaves_grads_below_the_max_untouched()
    {
        using var scope = NewDisposeScope();
        var ps = Params();
        Assert.Equal(13.0, GradClip.ClipGradNorm(ps, maxNorm: 20), 5);
        Assert.Equal(new[] { 3f, 4f }, ps[0].grad!.data<float>().ToArray());
        Assert.Equal(new[] { 12f }, ps[1].grad!.data<float>().ToArray());
        Assert.Null(ps[2].grad);
    }

    [Fact]
    public void Clipping_scales_to_the_max_norm_by_torchs_factor()
    {
        using var scope = NewDisposeScope();
        var ps = Params();
        double norm = GradClip.ClipGradNorm(ps, maxNorm: 6.5);
        Assert.Equal(13.0, norm, 5); // the norm before clipping
        double factor = 6.5 / (13 + 1e-6);
        Assert.Equal(3 * factor, ps[0].grad![0].item<float>(), 5);
        Assert.Equal(12 * factor, ps[1].grad![0].item<float>(), 5);
        Assert.Equal(6.5, GradClip.ClipGradNorm(ps, maxNorm: 100), 4);
    }

    [Fact]
    public void Bf16_grads_are_normed_in_fp32()
    {
        using var scope = NewDisposeScope();
        // 256 grads of 1 in bf16: a bf16 sum of squares would stall at 256 anyway, but 300 of them needs fp32 (bf16 spacing at 256 is 2).
        var p = new Parameter(zeros(301)) { grad = ones(301, dtype: ScalarType.BFloat16) };
        Assert.Equal(Math.Sqrt(301), GradClip.ClipGradNorm(new[] { p }, 1000), 4);
        Assert.Equal(13.0, GradClip.ClipGradNorm(Params(ScalarType.BFloat16), 20), 5);
    }
}
