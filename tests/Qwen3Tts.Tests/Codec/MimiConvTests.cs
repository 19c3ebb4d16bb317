using Qwen3Tts.Model.Codec;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Codec;

/// <summary>Mimi's causal padding, derived by hand: left pad = effective kernel - stride, right pad completes the last
/// partial frame, so a stride-s conv emits ceil(L / s) frames and frame t reads samples [t*s - (k - s), t*s + s - 1].</summary>
public class MimiConvTests
{
    [Theory]
    // kernel, stride, dilation, length → left, extra right, frames
    [InlineData(8, 4, 1, 1, 4, 3, 1)]     // one sample: padded to 4 + 1 + 3 = 8, one window
    [InlineData(8, 4, 1, 4, 4, 0, 1)]
    [InlineData(8, 4, 1, 5, 4, 3, 2)]
    [InlineData(8, 4, 1, 7, 4, 1, 2)]
    [InlineData(16, 8, 1, 17, 8, 7, 3)]
    [InlineData(7, 1, 1, 10, 6, 0, 10)]   // stride 1: left only
    [InlineData(3, 1, 2, 10, 4, 0, 10)]   // dilation 2: effective kernel 5
    [InlineData(1, 1, 1, 9, 0, 0, 9)]
    [InlineData(4, 2, 1, 3, 2, 1, 2)]     // the downsample conv on an odd length
    public void Padding_and_frames(int kernel, int stride, int dilation, int length, int left, int right, int frames)
    {
        using var conv = new MimiConv1d(1, 1, kernel, stride, dilation);
        Assert.Equal(left, conv.LeftPadding);
        Assert.Equal(right, conv.ExtraPadding(length));
        Assert.Equal(frames, conv.OutputLength(length));
        using var scope = NewDisposeScope();
        Assert.Equal(new long[] { 1, 1, frames }, conv.forward(randn(1, 1, length)).shape);
    }

    /// <summary>A kernel that picks one tap shows which padded sample each output reads.</summary>
    [Theory]
    [InlineData("constant")]
    [InlineData("replicate")]
    public void Each_output_reads_the_padded_window_Mimi_builds(string mode)
    {
        using var scope = NewDisposeScope();
        var x = tensor(new float[] { 1, 2, 3, 4, 5 }).view(1, 1, 5);
        float pad0 = mode == "replicate" ? 1 : 0, padEnd = mode == "replicate" ? 5 : 0;

        // kernel 4, stride 2: left pad 2, right pad (-5) mod 2 = 1 → padded = [p, p, 1, 2, 3, 4, 5, q], 3 frames.
        using var first = new MimiConv1d(1, 1, 4, stride: 2, bias: false, padMode: mode);
        using var last = new MimiConv1d(1, 1, 4, stride: 2, bias: false, padMode: mode);
        using (no_grad())
        {
            first.named_parameters().Single().parameter.copy_(tensor(new float[] { 1, 0, 0, 0 }).view(1, 1, 4));
            last.named_parameters().Single().parameter.copy_(tensor(new float[] { 0, 0, 0, 1 }).view(1, 1, 4));
        }
        // Output t's window starts at padded[2t]: x[2t - 2]; its last tap is padded[2t + 3] = x[2t + 1].
        Assert.Equal(new[] { pad0, 1, 3 }, first.forward(x).data<float>().ToArray());
        Assert.Equal(new[] { 2, 4, padEnd }, last.forward(x).data<float>().ToArray());
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1919, 1)]
    [InlineData(1920, 1)]
    [InlineData(1921, 2)]
    [InlineData(3840, 2)]
    [InlineData(24000, 13)]   // 12.5 frames a second: a 1 s clip has a 13th, partial frame
    public void Frames_are_ceil_of_samples_over_1920(int samples, int frames)
    {
        var config = SpeechTokenizerConfig.Preset("tiny");
        using var encoder = new Qwen3TtsTokenizerV2Encoder(config.Encoder);
        // The conv chain's length arithmetic (Mimi's get_encoded_length) ...
        Assert.Equal(frames, encoder.EncodedLength(samples));
        // ... is what the modules output, and what the reference keeps: code[..., :ceil(mask.sum() / 1920)].
        using var scope = NewDisposeScope();
        var codes = encoder.Encode(randn(1, samples) * 0.1, 16);
        Assert.Equal(new long[] { 1, frames, 16 }, codes.shape);
        Assert.Equal(frames, (samples + 1919) / 1920);
    }

    [Fact]
    public void Released_encoder_chain_gives_ceil_samples_over_1920_for_every_length_up_to_ten_frames()
    {
        var config = SpeechTokenizerConfig.Preset("1.7b");
        using var encoder = new Qwen3TtsTokenizerV2Encoder(config.Encoder, new Device("meta"));
        for (int samples = 1; samples <= 10 * 1920; samples++)
            Assert.Equal((samples + 1919) / 1920, encoder.EncodedLength(samples));
    }
}
