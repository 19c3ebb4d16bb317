using Qwen3Tts.Model.Codec;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Codec;

/// <summary>The encoder transformer against a recomputation written from the equations: LayerNorm with bias, GQA
/// attention with rotate-half RoPE (angles computed here in double), a causal or sliding mask built by loops,
/// softmax, layer scale on both branches, and an erf GELU MLP.</summary>
public class MimiTransformerTests
{
    static readonly EncoderConfig Config = SpeechTokenizerConfig.Preset("tiny").Encoder with
    {
        HiddenSize = 16, NumAttentionHeads = 4, NumKeyValueHeads = 2, HeadDim = 6, IntermediateSize = 24, NumHiddenLayers = 2,
    };

    static MimiTransformerModel Randomized(int seed)
    {
        var model = new MimiTransformerModel(Config);
        var gen = new Generator((ulong)seed);
        using var noGrad = no_grad();
        foreach (var (name, p) in model.named_parameters())
        {
            var noise = randn(p.shape, generator: gen);
            if (name.EndsWith("layernorm.weight")) p.copy_(1 + 0.2 * noise);
            else p.copy_(0.4 * noise); // layer scales, LN biases and projections all non-trivial
        }
        return model;
    }

    static Tensor P(MimiTransformerModel m, string name) => m.named_parameters().Single(p => p.name == name).parameter;

    static Tensor LayerNorm(Tensor x, Tensor w, Tensor b, double eps)
    {
        var mean = x.mean(new long[] { -1 }, keepdim: true);
        var variance = (x - mean).pow(2).mean(new long[] { -1 }, keepdim: true);
        return (x - mean) / (variance + eps).sqrt() * w + b;
    }

    /// <summary>q [T, D] rotated at positions 0..T-1: pairs (i, i + D/2) turn by pos * theta^(-2i/D).</summary>
    static Tensor Rope(Tensor q, double theta)
    {
        long t = q.shape[0], d = q.shape[1], half = d / 2;
        var cos = new float[t, d];
        var sin = new float[t, d];
        for (int pos = 0; pos < t; pos++)
            for (int i = 0; i < half; i++)
            {
                double angle = pos * Math.Pow(theta, -2.0 * i / d);
                cos[pos, i] = cos[pos, i + half] = (float)Math.Cos(angle);
                sin[pos, i] = sin[pos, i + half] = (float)Math.Sin(angle);
            }
        var rotated = cat(new[] { -q[.., (int)half..], q[.., ..(int)half] }, 1);
        return q * tensor(cos) + rotated * tensor(sin);
    }

    static Tensor Reference(MimiTransformerModel m, Tensor x, int? window)
    {
        long t = x.shape[0];
        int heads = Config.NumAttentionHeads, kvHeads = Config.NumKeyValueHeads, hd = Config.HeadDim;
        var additive = new float[t, t];
        for (int i = 0; i < t; i++)
            for (int j = 0; j < t; j++)
                additive[i, j] = j <= i && (window is null || j > i - window) ? 0 : float.NegativeInfinity;
        var mask = tensor(additive);

        var h = x; // [T, hidden]
        for (int l = 0; l < Config.NumHiddenLayers; l++)
        {
            string p = $"layers.{l}.";
            var n1 = LayerNorm(h, P(m, p + "input_layernorm.weight"), P(m, p + "input_layernorm.bias"), Config.NormEps);
            var q = n1.matmul(P(m, p + "self_attn.q_proj.weight").t());
            var k = n1.matmul(P(m, p + "self_attn.k_proj.weight").t());
            var v = n1.matmul(P(m, p + "self_attn.v_proj.weight").t());
            var outs = new List<Tensor>();
            for (int head = 0; head < heads; head++)
            {
                int kvHead = head / (heads / kvHeads); // consecutive query heads share a kv head
                var qh = Rope(q[.., (head * hd)..((head + 1) * hd)], Config.RopeTheta);
                var kh = Rope(k[.., (kvHead * hd)..((kvHead + 1) * hd)], Config.RopeTheta);
                var vh = v[.., (kvHead * hd)..((kvHead + 1) * hd)];
                var scores = qh.matmul(kh.t()) / Math.Sqrt(hd) + mask;
                outs.Add(scores.softmax(-1).matmul(vh));
            }
            var attn = cat(outs, 1).matmul(P(m, p + "self_attn.o_proj.weight").t());
            h = h + P(m, p + "self_attn_layer_scale.scale") * attn;
            var n2 = LayerNorm(h, P(m, p + "post_attention_layernorm.weight"), P(m, p + "post_attention_layernorm.bias"), Config.NormEps);
            var a = n2.matmul(P(m, p + "mlp.fc1.weight").t());
            var gelu = 0.5 * a * (1 + (a / Math.Sqrt(2)).erf());
            h = h + P(m, p + "mlp_layer_scale.scale") * gelu.matmul(P(m, p + "mlp.fc2.weight").t());
        }
        return h;
    }

    [Theory]
    [InlineData(null)]
    [InlineData(3)]
    public void Forward_equals_the_formulas(int? window)
    {
        using var scope = NewDisposeScope();
        using var model = Randomized(5);
        model.SlidingWindow = window;
        var x = randn(new long[] { 2, 7, Config.HiddenSize }, generator: new Generator(9));
        using var noGrad = no_grad();
        var y = model.forward(x);
        for (int b = 0; b < 2; b++)
        {
            var expected = Reference(model, x[b], window);
            Assert.True(y[b].allclose(expected, rtol: 1e-4, atol: 1e-5), $"batch {b}: max diff {(y[b] - expected).abs().max().item<float>()}");
        }
    }

    [Fact]
    public void The_window_changes_only_rows_that_reach_past_it_and_no_window_means_full_causal()
    {
        using var scope = NewDisposeScope();
        using var model = Randomized(6);
        var x = randn(new long[] { 1, 7, Config.HiddenSize }, generator: new Generator(10));
        using var noGrad = no_grad();
        var full = model.forward(x);
        model.SlidingWindow = 3;
        var windowed = model.forward(x);
        // Rows 0..2 see at most 3 keys either way; with 2 layers row 3 onward can differ.
        Close.Assert(full[0, ..3], windowed[0, ..3], "rows 0..2, full against a window of 3");
        Close.AssertDiffer(full[0, 3..], windowed[0, 3..], "rows 3.., full against a window of 3");
        model.SlidingWindow = 7; // a window as long as the clip is no window
        Close.Assert(full, model.forward(x), "no window against a window as long as the clip");
    }

    [Fact]
    public void Parameter_names_are_the_checkpoint_segments()
    {
        using var model = new MimiTransformerModel(Config);
        var names = model.named_parameters().Select(p => p.name).Where(n => n.StartsWith("layers.0.")).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(new[]
        {
            "layers.0.input_layernorm.bias", "layers.0.input_layernorm.weight", "layers.0.mlp.fc1.weight", "layers.0.mlp.fc2.weight",
            "layers.0.mlp_layer_scale.scale", "layers.0.post_attention_layernorm.bias", "layers.0.post_attention_layernorm.weight",
            "layers.0.self_attn.k_proj.weight", "layers.0.self_attn.o_proj.weight", "layers.0.self_attn.q_proj.weight",
            "layers.0.self_attn.v_proj.weight", "layers.0.self_attn_layer_scale.scale",
        }, names);
        Assert.True(P(model, "layers.1.mlp_layer_scale.scale").eq(Config.LayerScaleInitialScale).all().item<bool>());
    }
}
