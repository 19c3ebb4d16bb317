using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Model;

/// <summary>The ECAPA-TDNN speaker encoder: checkpoint names and shapes, the pieces' arithmetic on hand-set weights,
/// and whole-model properties (output shape, batch independence, any length).</summary>
public class SpeakerEncoderTests
{
    static SpeakerEncoderConfig Tiny => Presets.Config("tiny").SpeakerEncoder;

    /// <summary>Names and shapes written out from the reference's constructor, for channels c, kernels k, dilations d.</summary>
    static Dictionary<string, long[]> ExpectedStateDict(SpeakerEncoderConfig cfg)
    {
        var c = cfg.EncChannels;
        var k = cfg.EncKernelSizes;
        int last = c.Count - 1, scale = cfg.EncRes2NetScale;
        var expected = new Dictionary<string, long[]>
        {
            ["blocks.0.conv.weight"] = new long[] { c[0], cfg.MelDim, k[0] },
            ["blocks.0.conv.bias"] = new long[] { c[0] },
        };
        for (int b = 1; b < last; b++)
        {
            expected[$"blocks.{b}.tdnn1.conv.weight"] = new long[] { c[b], c[b - 1], 1 };
            expected[$"blocks.{b}.tdnn1.conv.bias"] = new long[] { c[b] };
            for (int r = 0; r < scale - 1; r++)
            {
                expected[$"blocks.{b}.res2net_block.blocks.{r}.conv.weight"] = new long[] { c[b] / scale, c[b] / scale, k[b] };
                expected[$"blocks.{b}.res2net_block.blocks.{r}.conv.bias"] = new long[] { c[b] / scale };
            }
            expected[$"blocks.{b}.tdnn2.conv.weight"] = new long[] { c[b], c[b], 1 };
            expected[$"blocks.{b}.tdnn2.conv.bias"] = new long[] { c[b] };
            expected[$"blocks.{b}.se_block.conv1.weight"] = new long[] { cfg.EncSeChannels, c[b], 1 };
            expected[$"blocks.{b}.se_block.conv1.bias"] = new long[] { cfg.EncSeChannels };
            expected[$"blocks.{b}.se_block.conv2.weight"] = new long[] { c[b], cfg.EncSeChannels, 1 };
            expected[$"blocks.{b}.se_block.conv2.bias"] = new long[] { c[b] };
        }
        expected["mfa.conv.weight"] = new long[] { c[last], c[last], k[last] };
        expected["mfa.conv.bias"] = new long[] { c[last] };
        expected["asp.tdnn.conv.weight"] = new long[] { cfg.EncAttentionChannels, 3L * c[last], 1 };
        expected["asp.tdnn.conv.bias"] = new long[] { cfg.EncAttentionChannels };
        expected["asp.conv.weight"] = new long[] { c[last], cfg.EncAttentionChannels, 1 };
        expected["asp.conv.bias"] = new long[] { c[last] };
        expected["fc.weight"] = new long[] { cfg.EncDim, 2L * c[last], 1 };
        expected["fc.bias"] = new long[] { cfg.EncDim };
        return expected;
    }

    static void AssertStateDict(SpeakerEncoderConfig cfg, SpeakerEncoder encoder)
    {
        var expected = ExpectedStateDict(cfg);
        var actual = encoder.state_dict();
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, shape) in expected)
            Assert.True(shape.SequenceEqual(actual[name].shape), $"{name}: expected [{string.Join(", ", shape)}], got [{string.Join(", ", actual[name].shape)}]");
    }

    [Fact]
    public void Tiny_state_dict_names_and_shapes_match_the_reference()
    {
        var cfg = Tiny;
        Assert.Equal(new[] { 32, 32, 32, 32, 96 }, cfg.EncChannels);
        using var encoder = new SpeakerEncoder(cfg);
        AssertStateDict(cfg, encoder);
        // 2 (first TDNN) + 3 blocks x (2 + 7 x 2 + 2 + 4) + 2 (mfa) + 4 (asp) + 2 (fc)
        Assert.Equal(76, encoder.state_dict().Count);
        Assert.Equal(new long[] { 4, 4, 3 }, encoder.state_dict()["blocks.1.res2net_block.blocks.6.conv.weight"].shape);
        Assert.Equal(new long[] { 64, 192, 1 }, encoder.state_dict()["fc.weight"].shape);
    }

    [Fact]
    public void Released_1_7B_state_dict_names_and_shapes_match_the_reference()
    {
        var cfg = Presets.Config("1.7b").SpeakerEncoder;
        Assert.Equal(2048, cfg.EncDim);
        using var encoder = new SpeakerEncoder(cfg);
        AssertStateDict(cfg, encoder);
        var sd = encoder.state_dict();
        Assert.Equal(new long[] { 2048, 3072, 1 }, sd["fc.weight"].shape);
        Assert.Equal(new long[] { 64, 64, 3 }, sd["blocks.1.res2net_block.blocks.0.conv.weight"].shape);
        Assert.Equal(new long[] { 512, 128, 5 }, sd["blocks.0.conv.weight"].shape);
        Assert.Equal(new long[] { 128, 4608, 1 }, sd["asp.tdnn.conv.weight"].shape);
        // By hand: first TDNN 512*128*5+512 = 328,192; each SE-Res2Net block 262,656 + 7*(64*64*3+64) + 262,656
        // + 65,664 + 66,048 = 743,488; mfa 1536^2+1536 = 2,360,832; asp 589,952 + 198,144; fc 2048*3072+2048 = 6,293,504.
        Assert.Equal(12_001_088L, encoder.parameters().Sum(p => p.numel()));
    }

    [Fact]
    public void Inconsistent_channel_lists_are_refused_with_the_reason()
    {
        var e = Assert.Throws<ArgumentException>(() => new SpeakerEncoder(Tiny with { EncChannels = new[] { 32, 32, 32, 32, 64 } }));
        Assert.Contains("96", e.Message);
        e = Assert.Throws<ArgumentException>(() => new SpeakerEncoder(Tiny with { EncChannels = new[] { 16, 32, 32, 32, 96 } }));
        Assert.Contains("enc_channels[1]", e.Message);
    }

    [Fact]
    public void Tiny_forward_maps_frames_by_mels_to_one_embedding_per_clip()
    {
        using var scope = NewDisposeScope();
        using var encoder = new SpeakerEncoder(Tiny);
        var mels = randn(3, 40, 128);
        Assert.Equal(new long[] { 3, 64 }, encoder.forward(mels).shape);
        Assert.Equal(new long[] { 2, 64 }, encoder.Embed(rand(2, 24000) * 0.2 - 0.1).shape);
    }

    [Fact]
    public void Clips_batched_together_encode_as_they_do_alone()
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        using var encoder = new SpeakerEncoder(Tiny);
        encoder.eval();
        var mels = randn(2, 57, 128);
        var both = encoder.forward(mels);
        Close.Assert(encoder.forward(mels[0..1])[0], both[0], "row 0 of a batch against alone");
        Close.Assert(encoder.forward(mels[1..2])[0], both[1], "row 1 of a batch against alone");
        Close.AssertDiffer(both[0], both[1], "the two rows");

        var wavs = rand(2, 9000) * 0.4 - 0.2;
        var embedded = encoder.Embed(wavs);
        Close.Assert(encoder.Embed(wavs[1..2])[0], embedded[1], "a waveform embedded in a batch against alone");
    }

    [Fact]
    public void Clips_of_any_length_pool_to_the_same_width()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        using var encoder = new SpeakerEncoder(Tiny);
        var brief = encoder.forward(randn(1, 9, 128));   // the dilation-4 Res2Net convs reflect 4 frames each side: 9 is plenty
        var lengthy = encoder.forward(randn(1, 301, 128));
        Assert.Equal(new long[] { 1, 64 }, brief.shape);
        Assert.Equal(new long[] { 1, 64 }, lengthy.shape);
        Assert.False(brief.allclose(lengthy));
        Assert.True(isfinite(lengthy).all().item<bool>());
    }

    [Fact]
    public void Too_few_frames_for_the_widest_reflect_pad_are_refused_with_the_reason()
    {
        // The widest conv is k=3, d=4: 4 frames of reflect padding each side, so 5 frames is the minimum.
        using var scope = NewDisposeScope();
        using var encoder = new SpeakerEncoder(Tiny);
        Assert.Equal(new long[] { 1, 64 }, encoder.forward(randn(1, 5, 128)).shape);
        var e = Assert.Throws<ArgumentException>(() => encoder.forward(randn(1, 4, 128)));
        Assert.Contains("at least 5 frames", e.Message);
        Assert.Throws<ArgumentException>(() => encoder.forward(randn(1, 20, 80)));
    }

    static void Set(nn.Module module, string name, Tensor value)
    {
        var p = module.named_parameters().Single(x => x.name == name).parameter;
        using (no_grad()) p.copy_(value.reshape(p.shape));
    }

    [Fact]
    public void Same_reflect_padding_of_a_dilated_conv_matches_hand_arithmetic()
    {
        // k=3, d=2: total pad d*(k-1) = 4, 2 each side. [1 2 3 4 5] reflects to [3 2 | 1 2 3 4 5 | 4 3].
        // y[t] = 1*p[t] + 10*p[t+2] + 100*p[t+4] - 400, then ReLU:
        //   t=0: 3 + 10 + 300 = 313 -> 0;  t=1: 2 + 20 + 400 = 422 -> 22;  t=2: 1 + 30 + 500 = 531 -> 131;
        //   t=3: 2 + 40 + 400 = 442 -> 42; t=4: 3 + 50 + 300 = 353 -> 0.
        using var scope = NewDisposeScope();
        using var block = new TimeDelayNetBlock(1, 1, kernelSize: 3, dilation: 2);
        Set(block, "conv.weight", tensor(new float[] { 1, 10, 100 }));
        Set(block, "conv.bias", tensor(new float[] { -400 }));
        var y = block.forward(tensor(new float[] { 1, 2, 3, 4, 5 }).reshape(1, 1, 5));
        Assert.Equal(new float[] { 0, 22, 131, 42, 0 }, y.data<float>().ToArray());
    }

    [Fact]
    public void Same_padding_of_an_even_kernel_puts_the_odd_sample_on_the_right_as_PyTorch_does()
    {
        // k=2, d=1: total pad 1 = left 0 + right 1. [1 2 3 4 5] -> [1 2 3 4 5 | 4]; y[t] = p[t] + 10 p[t+1].
        using var scope = NewDisposeScope();
        using var block = new TimeDelayNetBlock(1, 1, kernelSize: 2, dilation: 1);
        Set(block, "conv.weight", tensor(new float[] { 1, 10 }));
        Set(block, "conv.bias", tensor(new float[] { 0 }));
        var y = block.forward(tensor(new float[] { 1, 2, 3, 4, 5 }).reshape(1, 1, 5));
        Assert.Equal(new float[] { 21, 32, 43, 54, 45 }, y.data<float>().ToArray());
    }

    [Fact]
    public void Res2Net_passes_chunk_0_through_and_feeds_each_output_into_the_next_chunk()
    {
        // 4 channels, scale 4: chunks of one channel. Each TDNN is the identity (centre tap 1, bias 0) under ReLU, so
        // with positive input: out0 = x0, out1 = x1, out2 = x2 + out1, out3 = x3 + out2 (cumulative sums from chunk 1).
        using var scope = NewDisposeScope();
        using var block = new Res2NetBlock(4, 4, scale: 4, kernelSize: 3, dilation: 1);
        for (int r = 0; r < 3; r++)
        {
            Set(block, $"blocks.{r}.conv.weight", tensor(new float[] { 0, 1, 0 }));
            Set(block, $"blocks.{r}.conv.bias", tensor(new float[] { 0 }));
        }
        var x = tensor(new float[] { 1, 2, 10, 20, 100, 200, 1000, 2000 }).reshape(1, 4, 2); // channel c, time t
        var y = block.forward(x).data<float>().ToArray();
        Assert.Equal(new float[] { 1, 2, 10, 20, 110, 220, 1110, 2220 }, y);
    }

    [Fact]
    public void Squeeze_excitation_gates_channels_by_their_mean_over_time()
    {
        // conv1 = conv2 = identity, biases 0: gate_c = sigmoid(relu(mean_t x_c)).
        using var scope = NewDisposeScope();
        using var se = new SqueezeExcitationBlock(2, 2, 2);
        Set(se, "conv1.weight", eye(2));
        Set(se, "conv1.bias", zeros(2));
        Set(se, "conv2.weight", eye(2));
        Set(se, "conv2.bias", zeros(2));
        var x = tensor(new float[] { 1, 3, -2, -4 }).reshape(1, 2, 2); // channel 0 mean 2, channel 1 mean -3
        var y = se.forward(x).data<float>().ToArray();
        double g0 = 1 / (1 + Math.Exp(-2)), g1 = 0.5; // relu(-3) = 0
        Assert.Equal(new[] { 1 * g0, 3 * g0, -2 * g1, -4 * g1 }, y.Select(v => (double)v), new Tolerance(1e-6));
    }

    [Fact]
    public void Pooling_with_flat_attention_is_the_plain_mean_and_population_std_over_time()
    {
        // With asp.conv zeroed every frame scores 0, so softmax weights are 1/T: mean and sqrt(mean of squared
        // deviations), clamped at 1e-12 under the root so a constant channel's std is 1e-6, not 0.
        using var scope = NewDisposeScope();
        using var asp = new AttentiveStatisticsPooling(2, 3);
        Set(asp, "conv.weight", zeros(2, 3, 1));
        Set(asp, "conv.bias", zeros(2));
        var x = tensor(new float[] { 1, 2, 3, 6, 5, 5, 5, 5 }).reshape(1, 2, 4);
        var y = asp.forward(x);
        Assert.Equal(new long[] { 1, 4, 1 }, y.shape); // [mean0, mean1, std0, std1]
        var v = y.data<float>().ToArray();
        double std0 = Math.Sqrt((4 + 1 + 0 + 9) / 4.0); // mean 3
        Assert.Equal(new[] { 3.0, 5.0, std0 }, v.Take(3).Select(f => (double)f), new Tolerance(1e-6));
        Assert.Equal(1e-6, v[3], 1e-12);
    }

    [Fact]
    public void Attention_weights_frames_by_their_score()
    {
        // One channel; tdnn reads only x (not its global mean or std), so a frame's score is 2 * tanh(relu(x_t)).
        // x = [0, 0, 0, 1]: scores [0, 0, 0, s], s = 2 tanh 1, so the last frame has weight w = e^s / (3 + e^s) and the
        // others (1 - w) / 3. Weighted mean = w; weighted variance = (1 - w) w^2 + w (1 - w)^2 = w (1 - w).
        using var scope = NewDisposeScope();
        using var asp = new AttentiveStatisticsPooling(1, 1);
        Set(asp, "tdnn.conv.weight", tensor(new float[] { 1, 0, 0 }));
        Set(asp, "tdnn.conv.bias", zeros(1));
        Set(asp, "conv.weight", tensor(new float[] { 2 }));
        Set(asp, "conv.bias", zeros(1));
        var y = asp.forward(tensor(new float[] { 0, 0, 0, 1 }).reshape(1, 1, 4)).data<float>().ToArray();
        double s = 2 * Math.Tanh(1), w = Math.Exp(s) / (3 + Math.Exp(s)); // w = 0.6046
        Assert.Equal(w, y[0], 1e-6);
        Assert.Equal(Math.Sqrt(w * (1 - w)), y[1], 1e-6);
    }

    sealed class Tolerance(double eps) : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) <= eps;
        public int GetHashCode(double v) => 0;
    }
}
