using static TorchSharp.torch;

namespace Qwen3Tts.Tests;

/// <summary>Equality up to float32 rounding, for two computations of the same values that differ in shape, batching,
/// chunking, sequence length or kernel. oneDNN picks its kernels (and so its summation order) by shape, CPU (AVX2 or
/// AVX-512) and thread count, and promises no bit equality across them. Each output here is a chain of a few dozen
/// layers, each reducing at most a few thousand float32 products (relative rounding about 1e-7 each), so honest
/// differences stay near 1e-6 of the output's peak; the bound is 1e-4 of the peak. What these tests guard against (a
/// mask that lets a later position leak in, a padded frame pooled, a lost chunk) moves outputs by a sizeable fraction
/// of the peak, far above it. Exact equality stays where the computation is the same.</summary>
static class Close
{
    public const double OfPeak = 1e-4;

    public static void Assert(Tensor expected, Tensor actual, string what)
    {
        Xunit.Assert.Equal(expected.shape, actual.shape);
        using var scope = NewDisposeScope();
        var e = expected.detach().to(ScalarType.Float64);
        double peak = e.abs().max().item<double>();
        Xunit.Assert.True(peak > 0, $"{what}: the expected values are all zero");
        double diff = (actual.detach().to(ScalarType.Float64) - e).abs().max().item<double>();
        Xunit.Assert.True(diff <= OfPeak * peak, $"{what}: max |difference| {diff:E2} > {OfPeak:E0} x peak {peak:E2}");
    }

    /// <summary>The two differ by far more than rounding: a check that <see cref="Assert"/> could fail on these values.</summary>
    public static void AssertDiffer(Tensor a, Tensor b, string what)
    {
        using var scope = NewDisposeScope();
        var x = a.detach().to(ScalarType.Float64);
        double peak = x.abs().max().item<double>();
        double diff = (b.detach().to(ScalarType.Float64) - x).abs().max().item<double>();
        Xunit.Assert.True(diff > 100 * OfPeak * peak, $"{what}: max |difference| {diff:E2} is within rounding of peak {peak:E2}");
    }
}
