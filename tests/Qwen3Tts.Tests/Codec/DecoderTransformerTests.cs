using System.Text.Json.Nodes;
using Qwen3Tts.Model.Codec;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Codec;

/// <summary>The decoder's pre-transformer against a plain double-precision recomputation written here from the
/// equations (RMSNorm, RoPE with rotate_half, softmax attention over the causal sliding window, SwiGLU, layer scales),
/// on tiny sizes where heads · head_dim differs from the width and two query heads share one key/value head.</summary>
public class DecoderTransformerTests
{
    [Fact]
    public void Sliding_window_mask_sees_itself_and_window_minus_one_before()
    {
        var mask = DecoderAttention.SlidingWindowMask(5, 2).reshape(5, 5);
        bool[,] expected =
        {
            { true, false, false, false, false },
            { true, true, false, false, false },
            { false, true, true, false, false },
            { false, false, true, true, false },
            { false, false, false, true, true },
        };
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++) Assert.Equal(expected[i, j], mask[i, j].item<bool>());
    }

    static DecoderConfig Config(int window)
    {
        JsonObject d = DecoderTestModels.TinyDecoderJson(window: window, layers: 2);
        d["hidden_size"] = 6;
        d["latent_dim"] = 5;
        d["intermediate_size"] = 7;
        d["num_attention_heads"] = 2;
        d["num_key_value_heads"] = 1;
        d["head_dim"] = 4;
        return DecoderTestModels.Parse(d);
    }

    [Theory]
    [InlineData(3)]   // the window cuts in (T = 7)
    [InlineData(72)]  // the released window: plain causal at this length
    public void Model_matches_the_equations(int window)
    {
        var c = Config(window);
        using var model = new DecoderTransformerModel(c);
        DecoderTestModels.Randomize(model, seed: 11);
        const int T = 7;
        var x = randn(1, T, c.LatentDim, generator: new TorchSharp.torch.Generator(5));
        var actual = model.forward(x).to(ScalarType.Float64).reshape(-1).data<double>().ToArray();

        var p = model.named_parameters().ToDictionary(e => e.name, e => e.parameter.to(ScalarType.Float64).reshape(-1).data<double>().ToArray());
        var input = x.to(ScalarType.Float64).reshape(-1).data<double>().ToArray();
        var h = new double[T][];
        for (int t = 0; t < T; t++)
            h[t] = Linear(p["input_proj.weight"], p["input_proj.bias"], input.AsSpan(t * c.LatentDim, c.LatentDim).ToArray(), c.HiddenSize);
        for (int l = 0; l < c.NumHiddenLayers; l++) h = Layer(c, p, $"layers.{l}.", h);
        for (int t = 0; t < T; t++)
        {
            var y = Linear(p["output_proj.weight"], p["output_proj.bias"], RmsNorm(h[t], p["norm.weight"], c.RmsNormEps), c.LatentDim);
            for (int i = 0; i < c.LatentDim; i++) Assert.Equal(y[i], actual[t * c.LatentDim + i], 4);
        }
    }

    [Fact]
    public void A_window_changes_the_result_once_the_sequence_is_longer_than_it()
    {
        // Same weights, windows 3 and 72: the first 3 frames agree (nothing is cut yet), later ones differ.
        using var narrow = new DecoderTransformerModel(Config(3));
        using var wide = new DecoderTransformerModel(Config(72));
        DecoderTestModels.Randomize(narrow, seed: 3);
        DecoderTestModels.Randomize(wide, seed: 3);
        var x = randn(1, 7, 5);
        var a = narrow.forward(x);
        var b = wide.forward(x);
        Close.Assert(b[.., ..3], a[.., ..3], "the first 3 frames under windows 3 and 72");
        Close.AssertDiffer(b[.., 3..], a[.., 3..], "frames 3.. under windows 3 and 72");
    }

    static double[][] Layer(DecoderConfig c, Dictionary<string, double[]> p, string pre, double[][] x)
    {
        int T = x.Length, H = c.NumAttentionHeads, KV = c.NumKeyValueHeads, D = c.HeadDim, W = c.SlidingWindow;
        var normed = x.Select(v => RmsNorm(v, p[pre + "input_layernorm.weight"], c.RmsNormEps)).ToArray();
        var q = normed.Select((v, t) => Rope(Linear(p[pre + "self_attn.q_proj.weight"], null, v, H * D), t, H, D, c.RopeTheta)).ToArray();
        var k = normed.Select((v, t) => Rope(Linear(p[pre + "self_attn.k_proj.weight"], null, v, KV * D), t, KV, D, c.RopeTheta)).ToArray();
        var v = normed.Select(v => Linear(p[pre + "self_attn.v_proj.weight"], null, v, KV * D)).ToArray();
        var result = new double[T][];
        for (int i = 0; i < T; i++)
        {
            var attended = new double[H * D];
            for (int head = 0; head < H; head++)
            {
                int kvHead = head / (H / KV);
                int first = Math.Max(0, i - W + 1); // keys i − W < j ≤ i
                var scores = new double[i - first + 1];
                for (int j = first; j <= i; j++)
                {
                    double s = 0;
                    for (int d = 0; d < D; d++) s += q[i][head * D + d] * k[j][kvHead * D + d];
                    scores[j - first] = s / Math.Sqrt(D);
                }
                double max = scores.Max(), sum = scores.Sum(s => Math.Exp(s - max));
                for (int j = first; j <= i; j++)
                {
                    double w = Math.Exp(scores[j - first] - max) / sum;
                    for (int d = 0; d < D; d++) attended[head * D + d] += w * v[j][kvHead * D + d];
                }
            }
            var o = Linear(p[pre + "self_attn.o_proj.weight"], null, attended, c.HiddenSize);
            var h = x[i].Select((xi, n) => xi + p[pre + "self_attn_layer_scale.scale"][n] * o[n]).ToArray();
            var m = RmsNorm(h, p[pre + "post_attention_layernorm.weight"], c.RmsNormEps);
            var gate = Linear(p[pre + "mlp.gate_proj.weight"], null, m, c.IntermediateSize);
            var up = Linear(p[pre + "mlp.up_proj.weight"], null, m, c.IntermediateSize);
            var act = gate.Select((g, n) => g / (1 + Math.Exp(-g)) * up[n]).ToArray();
            var down = Linear(p[pre + "mlp.down_proj.weight"], null, act, c.HiddenSize);
            result[i] = h.Select((hi, n) => hi + p[pre + "mlp_layer_scale.scale"][n] * down[n]).ToArray();
        }
        return result;
    }

    static double[] Linear(double[] w, double[]? b, double[] x, int outputs)
    {
        var y = new double[outputs];
        for (int o = 0; o < outputs; o++)
        {
            double s = b?[o] ?? 0;
            for (int i = 0; i < x.Length; i++) s += w[o * x.Length + i] * x[i];
            y[o] = s;
        }
        return y;
    }

    static double[] RmsNorm(double[] x, double[] w, double eps)
    {
        double r = 1 / Math.Sqrt(x.Sum(v => v * v) / x.Length + eps);
        return x.Select((v, i) => w[i] * v * r).ToArray();
    }

    /// <summary>Each head's vector rotated at position t: q·cos + rotate_half(q)·sin, angle t·θ^(−2i/D) for i and i + D/2.</summary>
    static double[] Rope(double[] x, int t, int heads, int D, double theta)
    {
        var y = new double[x.Length];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < D / 2; i++)
            {
                double angle = t * Math.Pow(theta, -2.0 * i / D), cos = Math.Cos(angle), sin = Math.Sin(angle);
                double a = x[h * D + i], b = x[h * D + i + D / 2];
                y[h * D + i] = a * cos - b * sin;
                y[h * D + i + D / 2] = b * cos + a * sin;
            }
        return y;
    }
}
