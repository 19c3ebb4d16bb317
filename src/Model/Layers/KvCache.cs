using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Layers;

/// <summary>Keys and values of one attention layer kept across decoding steps, as transformers' DynamicCache keeps
/// them: after k_norm and RoPE, before the grouped-query repeat ([B, kv_heads, T, head_dim]). The storage grows by
/// doubling, so a step writes its new rows in place instead of concatenating the whole history again.
/// Inference only: appending under autograd would make the buffer part of the graph.</summary>
public sealed class LayerKvCache : IDisposable
{
    const long InitialCapacity = 64;

    Tensor? keys, values; // [B, kvH, capacity, D]; rows [0, Length) are filled

    /// <summary>Positions cached so far.</summary>
    public long Length { get; private set; }

    /// <summary>Appends k, v [B, kvH, t, D] and returns views of all cached keys and values [B, kvH, Length, D].</summary>
    public (Tensor Keys, Tensor Values) Append(Tensor k, Tensor v)
    {
        if (is_grad_enabled())
            throw new InvalidOperationException("the KV cache is for inference: run generation under torch.no_grad()");
        long t = k.shape[2];
        Reserve(k, Length + t);
        keys!.narrow(2, Length, t).copy_(k);
        values!.narrow(2, Length, t).copy_(v);
        Length += t;
        return (keys.narrow(2, 0, Length), values.narrow(2, 0, Length));
    }

    void Reserve(Tensor like, long needed)
    {
        long capacity = keys?.shape[2] ?? 0;
        if (needed <= capacity) return;
        long grown = Math.Max(needed, Math.Max(InitialCapacity, 2 * capacity));
        long[] shape = [like.shape[0], like.shape[1], grown, like.shape[3]];
        var newKeys = zeros(shape, dtype: like.dtype, device: like.device).DetachFromDisposeScope();
        var newValues = zeros(shape, dtype: like.dtype, device: like.device).DetachFromDisposeScope();
        if (keys is not null)
        {
            newKeys.narrow(2, 0, Length).copy_(keys.narrow(2, 0, Length));
            newValues.narrow(2, 0, Length).copy_(values!.narrow(2, 0, Length));
            keys.Dispose();
            values!.Dispose();
        }
        keys = newKeys;
        values = newValues;
    }

    public void Dispose()
    {
        keys?.Dispose();
        values?.Dispose();
        keys = values = null;
        Length = 0;
    }
}

/// <summary>One <see cref="LayerKvCache"/> per decoder layer of a model (the talker or the code predictor).</summary>
public sealed class KvCache(int layers) : IDisposable
{
    readonly LayerKvCache[] perLayer = Enumerable.Range(0, layers).Select(_ => new LayerKvCache()).ToArray();

    public LayerKvCache this[int layer] => perLayer[layer];

    public int Layers => perLayer.Length;

    /// <summary>Positions cached so far (the same in every layer).</summary>
    public long Length => perLayer.Length == 0 ? 0 : perLayer[0].Length;

    public void Dispose()
    {
        foreach (var layer in perLayer) layer.Dispose();
    }
}
