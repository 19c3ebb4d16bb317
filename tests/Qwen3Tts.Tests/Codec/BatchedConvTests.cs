using Qwen3Tts.Model.Codec;
using Qwen3Tts.Model.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Codec;

/// <summary>Batched float32 convolutions against float64, the independent evidence: libtorch-cpu's oneDNN gets some
/// channel counts wrong for batches on AVX-512 CPUs (see <see cref="BatchedConv"/>), and these are the shapes it got
/// wrong. On other CPUs the same assertions hold trivially; on AVX-512 they fail without the row-by-row route.</summary>
public class BatchedConvTests
{
    [Theory]
    [InlineData(2, 24, 32, 7)] // the tiny decoder's first conv (latent 24 -> 32)
    [InlineData(3, 40, 8, 3)]
    [InlineData(4, 100, 64, 7)]
    [InlineData(2, 32, 32, 7)] // a multiple of 16: the batched kernel itself
    [InlineData(2, 8, 24, 7)]
    public void Batched_float32_conv_matches_float64(int batch, int inChannels, int outChannels, int kernel)
    {
        using var noGrad = no_grad();
        manual_seed(batch * 1000 + inChannels);
        using var conv32 = new MimiConv1d(inChannels, outChannels, kernel);
        using var conv64 = new MimiConv1d(inChannels, outChannels, kernel, dtype: ScalarType.Float64);
        conv64.load_state_dict(conv32.state_dict().ToDictionary(p => p.Key, p => p.Value.to(ScalarType.Float64)));
        var x = randn(batch, inChannels, 50, dtype: ScalarType.Float64);

        var expected = conv64.forward(x);
        var actual = conv32.forward(x.to(ScalarType.Float32)).to(ScalarType.Float64);

        double peak = expected.abs().max().item<double>();
        double diff = (actual - expected).abs().max().item<double>();
        Assert.True(diff <= 1e-5 * peak * Math.Sqrt(inChannels * kernel), $"max |float32 - float64| {diff:E2}, peak {peak:E2}");
    }

    [Fact]
    public void Only_the_faulty_shapes_run_row_by_row()
    {
        using var odd = zeros(2, 24, 10);
        using var oddAlone = zeros(1, 24, 10);
        using var released = zeros(2, 1024, 10);
        using var narrow = zeros(2, 12, 10);
        using var odd64 = zeros(2, 24, 10, dtype: ScalarType.Float64);
        Assert.True(BatchedConv.RunsRowByRow(odd, groups: 1));
        Assert.False(BatchedConv.RunsRowByRow(odd, groups: 24)); // depthwise convs take another kernel
        Assert.False(BatchedConv.RunsRowByRow(oddAlone, groups: 1));
        Assert.False(BatchedConv.RunsRowByRow(released, groups: 1));
        Assert.False(BatchedConv.RunsRowByRow(narrow, groups: 1));
        Assert.False(BatchedConv.RunsRowByRow(odd64, groups: 1));
    }
}
