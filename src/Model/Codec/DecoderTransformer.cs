using Qwen3Tts.Model.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>The speech tokenizer decoder's self-attention: plain multi-head attention (no q/k norm, unlike the
/// talker), RoPE, scaling head_dim^-0.5, under a causal sliding-window mask.</summary>
public sealed class DecoderAttention : nn.Module<Tensor, Tensor, Tensor, Tensor, Tensor>
{
    readonly Linear q_proj, k_proj, v_proj, o_proj;
    readonly int heads, kvHeads, headDim;

    public DecoderAttention(int hidden, int heads, int kvHeads, int headDim, bool bias, Device? device = null, ScalarType? dtype = null)
        : base(nameof(DecoderAttention))
    {
        this.heads = heads;
        this.kvHeads = kvHeads;
        this.headDim = headDim;
        q_proj = nn.Linear(hidden, heads * headDim, hasBias: bias, device: device, dtype: dtype);
        k_proj = nn.Linear(hidden, kvHeads * headDim, hasBias: bias, device: device, dtype: dtype);
        v_proj = nn.Linear(hidden, kvHeads * headDim, hasBias: bias, device: device, dtype: dtype);
        o_proj = nn.Linear(heads * headDim, hidden, hasBias: bias, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <param name="x">[B, T, hidden]</param>
    /// <param name="cos">[B, T, head_dim]</param>
    /// <param name="sin">[B, T, head_dim]</param>
    /// <param name="mask">bool [1, 1, T, T], true where query i may attend to key j</param>
    public override Tensor forward(Tensor x, Tensor cos, Tensor sin, Tensor mask)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        // [B, T, H*D] -> [B, T, H, D] -> [B, H, T, D]
        var q = Rotary.Apply(q_proj.forward(x).view(b, t, heads, headDim).transpose(1, 2), cos, sin);
        var k = Rotary.Apply(k_proj.forward(x).view(b, t, kvHeads, headDim).transpose(1, 2), cos, sin);
        var v = v_proj.forward(x).view(b, t, kvHeads, headDim).transpose(1, 2);
        if (heads != kvHeads)
        {
            k = k.repeat_interleave(heads / kvHeads, dim: 1);
            v = v.repeat_interleave(heads / kvHeads, dim: 1);
        }
        var attended = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: mask);
        // [B, H, T, D] -> [B, T, H*D]
        return o_proj.forward(attended.transpose(1, 2).reshape(b, t, heads * headDim)).MoveToOuterDisposeScope();
    }

    /// <summary>bool [1, 1, T, T]: query i sees key j when i − window &lt; j ≤ i, i.e. itself and the
    /// window − 1 frames before it. This is what the reference computes: transformers'
    /// create_sliding_window_causal_mask (kv_idx &gt; q_idx − sliding_window, and causal) under eager or SDPA
    /// attention.</summary>
    public static Tensor SlidingWindowMask(long length, long window, Device? device = null)
    {
        using var scope = NewDisposeScope();
        var i = arange(length, device: device).unsqueeze(1);
        var j = arange(length, device: device).unsqueeze(0);
        return ((j <= i) & (j > i - window)).view(1, 1, length, length).MoveToOuterDisposeScope();
    }
}

/// <summary>LayerScale (Touvron et al. 2021): a learned per-channel factor on a residual branch.</summary>
public sealed class LayerScale : nn.Module<Tensor, Tensor>
{
    readonly Parameter scale;

    public LayerScale(long channels, double initialScale, Device? device = null, ScalarType? dtype = null) : base(nameof(LayerScale))
    {
        scale = new Parameter(full(channels, initialScale, dtype: dtype, device: device));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => scale * x;
}

/// <summary>Pre-norm block with layer-scaled residual branches: h = x + s₁·attn(norm(x)); h + s₂·mlp(norm(h)).</summary>
public sealed class DecoderTransformerLayer : nn.Module<Tensor, Tensor, Tensor, Tensor, Tensor>
{
    readonly DecoderAttention self_attn;
    readonly Mlp mlp;
    readonly RmsNorm input_layernorm, post_attention_layernorm;
    readonly LayerScale self_attn_layer_scale, mlp_layer_scale;

    public DecoderTransformerLayer(DecoderConfig c, Device? device = null, ScalarType? dtype = null) : base(nameof(DecoderTransformerLayer))
    {
        self_attn = new DecoderAttention(c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.AttentionBias, device, dtype);
        mlp = new Mlp(c.HiddenSize, c.IntermediateSize, device, dtype);
        input_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, device, dtype);
        post_attention_layernorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, device, dtype);
        self_attn_layer_scale = new LayerScale(c.HiddenSize, c.LayerScaleInitialScale, device, dtype);
        mlp_layer_scale = new LayerScale(c.HiddenSize, c.LayerScaleInitialScale, device, dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor cos, Tensor sin, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var h = x + self_attn_layer_scale.forward(self_attn.forward(input_layernorm.forward(x), cos, sin, mask));
        return (h + mlp_layer_scale.forward(mlp.forward(post_attention_layernorm.forward(h)))).MoveToOuterDisposeScope();
    }
}

/// <summary>The decoder's pre-transformer (Qwen3TTSTokenizerV2DecoderTransformerModel): latent_dim → hidden
/// (input_proj), sliding-window layers with RoPE at positions 0..T−1, final RMSNorm, hidden → latent_dim
/// (output_proj).</summary>
public sealed class DecoderTransformerModel : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<DecoderTransformerLayer> layers;
    readonly RmsNorm norm;
    readonly Linear input_proj, output_proj;
    readonly float[] invFreq;
    readonly int slidingWindow;

    public DecoderTransformerModel(DecoderConfig c, Device? device = null, ScalarType? dtype = null) : base(nameof(DecoderTransformerModel))
    {
        layers = new ModuleList<DecoderTransformerLayer>(Enumerable.Range(0, c.NumHiddenLayers)
            .Select(_ => new DecoderTransformerLayer(c, device, dtype)).ToArray());
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, device, dtype);
        input_proj = nn.Linear(c.LatentDim, c.HiddenSize, device: device, dtype: dtype);
        output_proj = nn.Linear(c.HiddenSize, c.LatentDim, device: device, dtype: dtype);
        invFreq = Rotary.InverseFrequencies(c.HeadDim, c.RopeTheta);
        slidingWindow = c.SlidingWindow;
        RegisterComponents();
    }

    /// <param name="x">[B, T, latent_dim]</param>
    /// <returns>[B, T, latent_dim]</returns>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var h = input_proj.forward(x);
        var positions = arange(t, device: x.device).unsqueeze(0).expand(b, t);
        var (cos, sin) = Rotary.Standard(positions, invFreq, h.dtype);
        var mask = DecoderAttention.SlidingWindowMask(t, slidingWindow, x.device);
        foreach (var layer in layers) h = layer.forward(h, cos, sin, mask);
        return output_proj.forward(norm.forward(h)).MoveToOuterDisposeScope();
    }
}
