using Qwen3Tts.Model.Codec;
using static Qwen3Tts.Tests.Codec.DecoderTensors;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Codec;

/// <summary>The decoder's causal conv (<see cref="MimiConv1d"/> with zero padding, shared with the encoder) and causal
/// transposed conv: lengths, left padding, trimming, depthwise groups, by hand.</summary>
public class DecoderCausalConvTests
{
    [Fact]
    public void Causal_conv_pads_the_past_with_zeros()
    {
        using var conv = new MimiConv1d(1, 1, kernelSize: 3);
        Set(conv, "conv.weight", 1, 2, 3); // y[t] = 1·x[t−2] + 2·x[t−1] + 3·x[t] + 0.5
        Set(conv, "conv.bias", 0.5f);
        var y = Row(conv.forward(Signal([1, 2, 3, 4])), 0);
        Assert.Equal([3.5f, 8.5f, 14.5f, 20.5f], y);
    }

    [Fact]
    public void Dilated_causal_conv_reaches_back_dilation_times_kernel_minus_one()
    {
        using var conv = new MimiConv1d(1, 1, kernelSize: 2, dilation: 3);
        Set(conv, "conv.weight", 10, 1); // y[t] = 10·x[t−3] + x[t]
        Set(conv, "conv.bias", 0);
        var y = Row(conv.forward(Signal([1, 2, 3, 4, 5])), 0);
        Assert.Equal([1f, 2, 3, 14, 25], y);
    }

    [Fact]
    public void Depthwise_causal_conv_keeps_channels_apart()
    {
        using var conv = new MimiConv1d(2, 2, kernelSize: 2, groups: 2); // the ConvNeXt dwconv's form
        Set(conv, "conv.weight", 1, 1, 0, 2); // channel 0: x[t−1] + x[t]; channel 1: 2·x[t]
        Set(conv, "conv.bias", 0, 0);
        var y = conv.forward(Signal([1, 2, 3], [10, 20, 30]));
        Assert.Equal([1f, 3, 5], Row(y, 0));
        Assert.Equal([20f, 40, 60], Row(y, 1));
    }

    [Theory]
    [InlineData(7, 1, 1, 10, 10)]
    [InlineData(7, 9, 1, 10, 10)]
    [InlineData(3, 1, 1, 1, 1)]
    [InlineData(4, 1, 2, 9, 5)]   // strided: ceil(T / stride) after the extra right padding
    [InlineData(4, 1, 2, 10, 5)]
    public void Causal_conv_output_length(int kernel, int dilation, int stride, int length, int expected)
    {
        using var conv = new MimiConv1d(2, 3, kernel, dilation: dilation, stride: stride);
        Assert.Equal(new long[] { 1, 3, expected }, conv.forward(randn(1, 2, length)).shape);
    }

    [Fact]
    public void Causal_conv_output_never_depends_on_later_input()
    {
        using var conv = new MimiConv1d(3, 2, kernelSize: 7, dilation: 3);
        var x = randn(1, 3, 40);
        var changed = x.clone();
        changed[.., .., 25..] = randn(1, 3, 15);
        var a = conv.forward(x);
        var b = conv.forward(changed);
        Assert.True(a[.., .., ..25].equal(b[.., .., ..25]).all().item<bool>());
        Assert.False(a[.., .., 25..].allclose(b[.., .., 25..]));
    }

    [Fact]
    public void Transposed_conv_keeps_T_times_stride_samples_and_cuts_the_tail()
    {
        // Kernel 4, stride 2 (a decoder block with rate 2): out[2i + j] += x[i]·w[j]. Untrimmed length (3 − 1)·2 + 4 = 8:
        // [1, 10, 100+2, 1000+20, 200+3, 2000+30, 300, 3000]; the causal version drops the last kernel − stride = 2.
        using var up = new CausalTransConvNet(1, 1, kernelSize: 4, stride: 2);
        Set(up, "conv.weight", 1, 10, 100, 1000);
        Set(up, "conv.bias", 0);
        var y = Row(up.forward(Signal([1, 2, 3])), 0);
        Assert.Equal([1f, 10, 102, 1020, 203, 2030], y);
    }

    [Theory]
    [InlineData(2, 2, 5)]   // the upsample stages: kernel = stride, nothing trimmed
    [InlineData(16, 8, 5)]  // decoder blocks: kernel 2r, stride r
    [InlineData(10, 5, 1)]
    [InlineData(6, 3, 7)]
    public void Transposed_conv_length_is_T_times_stride(int kernel, int stride, int length)
    {
        using var up = new CausalTransConvNet(3, 2, kernel, stride);
        Assert.Equal(new long[] { 1, 2, length * stride }, up.forward(randn(1, 3, length)).shape);
    }

    [Fact]
    public void Transposed_conv_output_block_i_depends_only_on_inputs_up_to_i()
    {
        using var up = new CausalTransConvNet(2, 2, kernelSize: 10, stride: 5);
        var x = randn(1, 2, 6);
        var changed = x.clone();
        changed[.., .., 4..] = randn(1, 2, 2);
        var a = up.forward(x);
        var b = up.forward(changed);
        Assert.True(a[.., .., ..20].equal(b[.., .., ..20]).all().item<bool>()); // samples of input frames 0..3
        Assert.False(a[.., .., 20..].allclose(b[.., .., 20..]));
    }
}
