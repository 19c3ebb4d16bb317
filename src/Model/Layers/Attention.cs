using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Layers;

/// <summary>Grouped-query self-attention with per-head RMSNorm on q and k (Qwen3), RoPE applied
/// after the norms. Scaling is head_dim^-0.5, SDPA's default.</summary>
public sealed class Attention : nn.Module<Tensor, Tensor, Tensor, Tensor?, Tensor>
{
    readonly Linear q_proj, k_proj, v_proj, o_proj;
    readonly RmsNorm q_norm, k_norm;
    readonly int heads, kvHeads, headDim;

    public Attention(int hidden, int heads, int kvHeads, int headDim, bool bias, double eps, Device? device = null, ScalarType? dtype = null)
        : base(nameof(Attention))
    {
        this.heads = heads;
        this.kvHeads = kvHeads;
        this.headDim = headDim;
        q_proj = nn.Linear(hidden, heads * headDim, hasBias: bias, device: device, dtype: dtype);
        k_proj = nn.Linear(hidden, kvHeads * headDim, hasBias: bias, device: device, dtype: dtype);
        v_proj = nn.Linear(hidden, kvHeads * headDim, hasBias: bias, device: device, dtype: dtype);
        o_proj = nn.Linear(heads * headDim, hidden, hasBias: bias, device: device, dtype: dtype);
        q_norm = new RmsNorm(headDim, eps, device, dtype);
        k_norm = new RmsNorm(headDim, eps, device, dtype);
        RegisterComponents();
    }

    /// <param name="x">[B, T, hidden]</param>
    /// <param name="cos">[B, T, head_dim]</param>
    /// <param name="sin">[B, T, head_dim]</param>
    /// <param name="mask">bool [B, 1, T, T], true where a query may attend; null means causal.</param>
    public override Tensor forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var (q, k, v) = Project(x, cos, sin);
        k = RepeatKv(k);
        v = RepeatKv(v);
        var attended = mask is null
            ? nn.functional.scaled_dot_product_attention(q, k, v, is_casual: t > 1)
            : nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: mask);
        // [B, H, T, D] -> [B, T, H*D]
        var merged = attended.transpose(1, 2).reshape(b, t, heads * headDim);
        return ParameterUse.Linear(o_proj, merged).MoveToOuterDisposeScope();
    }

    /// <summary>Causal attention of x's T new positions over the cached ones and themselves; their keys and values are
    /// appended to <paramref name="cache"/>. cos/sin [B, T, head_dim] are those of the new positions.</summary>
    public Tensor ForwardWithCache(Tensor x, Tensor cos, Tensor sin, LayerKvCache cache)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var (q, kNew, vNew) = Project(x, cos, sin);
        var (kAll, vAll) = cache.Append(kNew, vNew); // [B, kvH, past + T, D]
        var k = RepeatKv(kAll);
        var v = RepeatKv(vAll);
        long past = kAll.shape[2] - t;
        Tensor attended;
        if (past == 0) attended = nn.functional.scaled_dot_product_attention(q, k, v, is_casual: t > 1);
        else if (t == 1) attended = nn.functional.scaled_dot_product_attention(q, k, v); // one query sees every key
        else
        {
            // SDPA's is_causal aligns the triangle top-left; new query i sits at past + i and sees keys 0..past + i.
            var mask = ones(t, past + t, dtype: ScalarType.Bool, device: x.device).tril(past);
            attended = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: mask);
        }
        var merged = attended.transpose(1, 2).reshape(b, t, heads * headDim);
        return ParameterUse.Linear(o_proj, merged).MoveToOuterDisposeScope();
    }

    /// <summary>q [B, H, T, D] and k, v [B, kvH, T, D], with the per-head norms and RoPE applied to q and k.</summary>
    (Tensor Q, Tensor K, Tensor V) Project(Tensor x, Tensor cos, Tensor sin)
    {
        long b = x.shape[0], t = x.shape[1];
        // [B, T, H*D] -> [B, T, H, D] -> norm over D -> [B, H, T, D]
        var q = q_norm.forward(ParameterUse.Linear(q_proj, x).view(b, t, heads, headDim)).transpose(1, 2);
        var k = k_norm.forward(ParameterUse.Linear(k_proj, x).view(b, t, kvHeads, headDim)).transpose(1, 2);
        var v = ParameterUse.Linear(v_proj, x).view(b, t, kvHeads, headDim).transpose(1, 2);
        return (Rotary.Apply(q, cos, sin), Rotary.Apply(k, cos, sin), v);
    }

    // [B, kvH, T, D] -> [B, H, T, D]: each kv head serves heads/kvHeads query heads.
    Tensor RepeatKv(Tensor kv) => heads == kvHeads ? kv : kv.repeat_interleave(heads / kvHeads, dim: 1);
}

/// <summary>Pre-norm transformer block: x + attn(norm(x)), then h + mlp(norm(h)).</summary>
public sealed class DecoderLayer : nn.Module<Tensor, Tensor, Tensor, Tensor?, Tensor>
{
    readonly Attention self_attn;
    readonly Mlp mlp;
    readonly RmsNorm input_layernorm, post_attention_layernorm;

    public DecoderLayer(int hidden, int intermediate, int heads, int kvHeads, int headDim, bool bias, double eps, Device? device = null, ScalarType? dtype = null)
        : base(nameof(DecoderLayer))
    {
        self_attn = new Attention(hidden, heads, kvHeads, headDim, bias, eps, device, dtype);
        mlp = new Mlp(hidden, intermediate, device, dtype);
        input_layernorm = new RmsNorm(hidden, eps, device, dtype);
        post_attention_layernorm = new RmsNorm(hidden, eps, device, dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var h = x + self_attn.forward(input_layernorm.forward(x), cos, sin, mask);
        return (h + mlp.forward(post_attention_layernorm.forward(h))).MoveToOuterDisposeScope();
    }

    /// <summary>The block over new positions only, attending through <paramref name="cache"/> (see <see cref="Attention.ForwardWithCache"/>).</summary>
    public Tensor ForwardWithCache(Tensor x, Tensor cos, Tensor sin, LayerKvCache cache)
    {
        using var scope = NewDisposeScope();
        var h = x + self_attn.ForwardWithCache(input_layernorm.forward(x), cos, sin, cache);
        return (h + mlp.forward(post_attention_layernorm.forward(h))).MoveToOuterDisposeScope();
    }
}

public static class AttentionMask
{
    /// <summary>Causal mask combined with key padding: bool [B, 1, T, T], true = may attend.
    /// The diagonal is always allowed so a padded query row never attends to nothing (NaN);
    /// padded positions carry no loss, so what they compute does not matter.</summary>
    public static Tensor CausalWithPadding(Tensor keyValid)
    {
        using var scope = NewDisposeScope();
        long t = keyValid.shape[1];
        var causal = ones(t, t, dtype: ScalarType.Bool, device: keyValid.device).tril();
        var keys = keyValid.to(ScalarType.Bool).view(keyValid.shape[0], 1, 1, t);
        var eye = torch.eye(t, dtype: ScalarType.Bool, device: keyValid.device);
        return ((causal & keys) | eye).MoveToOuterDisposeScope();
    }
}
