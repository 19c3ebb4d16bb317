using Qwen3Tts.Model.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>LayerScale (Touvron et al. 2021): a learnt per-channel factor on a residual branch (<c>scale</c>).</summary>
public sealed class MimiLayerScale : nn.Module<Tensor, Tensor>
{
    readonly Parameter scale;

    public MimiLayerScale(long channels, double initialScale, Device? device = null, ScalarType? dtype = null) : base(nameof(MimiLayerScale))
    {
        scale = new Parameter(full(channels, initialScale, dtype: dtype ?? ScalarType.Float32, device: device));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => scale * x;
}

/// <summary>fc1 → GELU (exact, erf) → fc2, no biases.</summary>
public sealed class MimiMlp : nn.Module<Tensor, Tensor>
{
    readonly Linear fc1, fc2;

    public MimiMlp(long hidden, long intermediate, Device? device = null, ScalarType? dtype = null) : base(nameof(MimiMlp))
    {
        fc1 = nn.Linear(hidden, intermediate, hasBias: false, device: device, dtype: dtype);
        fc2 = nn.Linear(intermediate, hidden, hasBias: false, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return fc2.forward(nn.functional.gelu(fc1.forward(x))).MoveToOuterDisposeScope();
    }
}

/// <summary>Mimi self-attention: grouped-query, standard RoPE (rotate-half) on q and k, scale head_dim^-0.5, no q/k norms.</summary>
public sealed class MimiAttention : nn.Module<Tensor, Tensor, Tensor, Tensor?, Tensor>
{
    readonly Linear q_proj, k_proj, v_proj, o_proj;
    readonly int heads, kvHeads, headDim;

    public MimiAttention(EncoderConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(MimiAttention))
    {
        heads = config.NumAttentionHeads;
        kvHeads = config.NumKeyValueHeads;
        headDim = config.HeadDim;
        int hidden = config.HiddenSize;
        bool bias = config.AttentionBias;
        q_proj = nn.Linear(hidden, heads * headDim, hasBias: bias, device: device, dtype: dtype);
        k_proj = nn.Linear(hidden, kvHeads * headDim, hasBias: bias, device: device, dtype: dtype);
        v_proj = nn.Linear(hidden, kvHeads * headDim, hasBias: bias, device: device, dtype: dtype);
        o_proj = nn.Linear(heads * headDim, hidden, hasBias: bias, device: device, dtype: dtype);
        RegisterComponents();
    }

    /// <param name="x">[B, T, hidden]</param>
    /// <param name="cos">[B, T, head_dim]</param>
    /// <param name="sin">[B, T, head_dim]</param>
    /// <param name="mask">bool [T, T], true where query i may attend key j; null means causal.</param>
    public override Tensor forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        // [B, T, H*D] -> [B, H, T, D]
        var q = Rotary.Apply(q_proj.forward(x).view(b, t, heads, headDim).transpose(1, 2), cos, sin);
        var k = Rotary.Apply(k_proj.forward(x).view(b, t, kvHeads, headDim).transpose(1, 2), cos, sin);
        var v = v_proj.forward(x).view(b, t, kvHeads, headDim).transpose(1, 2);
        if (heads != kvHeads)
        {
            // [B, kvH, T, D] -> [B, H, T, D]: each kv head serves heads/kvHeads consecutive query heads.
            k = k.repeat_interleave(heads / kvHeads, dim: 1);
            v = v.repeat_interleave(heads / kvHeads, dim: 1);
        }
        var attended = mask is null
            ? nn.functional.scaled_dot_product_attention(q, k, v, is_casual: t > 1)
            : nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: mask);
        // [B, H, T, D] -> [B, T, H*D]
        return o_proj.forward(attended.transpose(1, 2).reshape(b, t, heads * headDim)).MoveToOuterDisposeScope();
    }
}

/// <summary>Pre-norm block with LayerNorms (weight and bias) and layer scale on both residual branches:
/// h = x + s_attn * attn(LN1(x)); out = h + s_mlp * mlp(LN2(h)).</summary>
public sealed class MimiTransformerLayer : nn.Module<Tensor, Tensor, Tensor, Tensor?, Tensor>
{
    readonly MimiAttention self_attn;
    readonly MimiMlp mlp;
    readonly LayerNorm input_layernorm, post_attention_layernorm;
    readonly MimiLayerScale self_attn_layer_scale, mlp_layer_scale;

    public MimiTransformerLayer(EncoderConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(MimiTransformerLayer))
    {
        self_attn = new MimiAttention(config, device, dtype);
        mlp = new MimiMlp(config.HiddenSize, config.IntermediateSize, device, dtype);
        input_layernorm = nn.LayerNorm(config.HiddenSize, config.NormEps, device: device, dtype: dtype);
        post_attention_layernorm = nn.LayerNorm(config.HiddenSize, config.NormEps, device: device, dtype: dtype);
        self_attn_layer_scale = new MimiLayerScale(config.HiddenSize, config.LayerScaleInitialScale, device, dtype);
        mlp_layer_scale = new MimiLayerScale(config.HiddenSize, config.LayerScaleInitialScale, device, dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var h = x + self_attn_layer_scale.forward(self_attn.forward(input_layernorm.forward(x), cos, sin, mask));
        return (h + mlp_layer_scale.forward(mlp.forward(post_attention_layernorm.forward(h)))).MoveToOuterDisposeScope();
    }
}

/// <summary>The encoder transformer (transformers' MimiTransformerModel): a stack of layers, no final norm.
/// Attention is plain causal: with transformers' default (sdpa) and eager attention, Mimi builds its mask with
/// create_causal_mask and only the flash-attention path reads config.sliding_window (250 frames at 25 Hz = 10 s),
/// so longer clips see their whole past. <see cref="SlidingWindow"/> set to a value reproduces the windowed variant
/// (key j visible from query i when i - window &lt; j &lt;= i).</summary>
public sealed class MimiTransformerModel : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<MimiTransformerLayer> layers;
    readonly float[] invFreq;

    public MimiTransformerModel(EncoderConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(MimiTransformerModel))
    {
        layers = new ModuleList<MimiTransformerLayer>(Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new MimiTransformerLayer(config, device, dtype)).ToArray());
        invFreq = Rotary.InverseFrequencies(config.HeadDim, config.RopeTheta);
        RegisterComponents();
    }

    /// <summary>Null (the reference's sdpa/eager behaviour): full causal attention.</summary>
    public int? SlidingWindow { get; set; }

    /// <param name="x">[B, T, hidden]</param>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long t = x.shape[1];
        var positions = arange(t, dtype: ScalarType.Int64, device: x.device).unsqueeze(0); // [1, T]
        var (cos, sin) = Rotary.Standard(positions, invFreq, x.dtype);                   // [1, T, D]
        var mask = SlidingWindow is int window && window < t ? CausalMask(t, window, x.device) : null;
        var h = x;
        foreach (var layer in layers) h = layer.forward(h, cos, sin, mask);
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>bool [T, T]: key j visible from query i when i - window &lt; j &lt;= i.</summary>
    public static Tensor CausalMask(long t, long window, Device? device = null)
    {
        using var scope = NewDisposeScope();
        var i = arange(t, device: device).unsqueeze(1);
        var j = arange(t, device: device).unsqueeze(0);
        return ((j <= i) & (j > i - window)).MoveToOuterDisposeScope();
    }
}
