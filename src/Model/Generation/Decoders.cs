using Qwen3Tts.Model.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Generation;

/// <summary>The talker run one step at a time: each <see cref="Feed"/> appends input positions and returns the
/// codec_head logits of the last one. With a KV cache only the new positions are computed; without, the whole
/// sequence is recomputed every step (the reference for the cache's correctness, and the bench's baseline).
/// Positions are 0, 1, 2, ... on all three rotary axes (one unpadded sequence, as get_rope_index gives).</summary>
public sealed class TalkerDecoder : IDisposable
{
    readonly Talker talker;
    readonly KvCache? cache;
    readonly List<Tensor> inputs = []; // without a cache: everything fed so far, [1, t_i, hidden] each
    long length;

    public TalkerDecoder(Talker talker, bool useKvCache)
    {
        this.talker = talker;
        if (useKvCache) cache = talker.Model.NewCache();
    }

    /// <summary>The talker's last hidden state [1, 1, hidden] (the reference's past_hidden, the code predictor's first input).</summary>
    public Tensor? LastHidden { get; private set; }

    /// <summary>Positions fed so far.</summary>
    public long Length => length;

    /// <summary>Appends x [1, T, hidden] and returns the fp32 logits over the codec vocabulary at its last position.</summary>
    public float[] Feed(Tensor x)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        long t = x.shape[1];
        Tensor hidden;
        if (cache is not null)
        {
            var positions = arange(length, length + t, device: x.device).view(1, 1, -1).expand(3, 1, -1);
            hidden = talker.ForwardWithCache(x, positions, cache);
        }
        else
        {
            inputs.Add(x.detach().clone().DetachFromDisposeScope());
            var all = cat(inputs, 1);
            hidden = talker.forward(all, null, null);
        }
        length += t;
        var last = hidden.narrow(1, hidden.shape[1] - 1, 1); // [1, 1, hidden]
        LastHidden?.Dispose();
        LastHidden = last.clone().DetachFromDisposeScope();
        return Logits(talker.CodecHead.forward(last));
    }

    /// <summary>A logits tensor of one position as an fp32 array on the CPU (what the samplers work on).</summary>
    public static float[] Logits(Tensor logits) => logits.reshape(-1).to(ScalarType.Float32).cpu().data<float>().ToArray();

    public void Dispose()
    {
        cache?.Dispose();
        foreach (var x in inputs) x.Dispose();
        inputs.Clear();
        LastHidden?.Dispose();
    }
}

/// <summary>The code predictor's inner loop for one frame (the reference's talker forward calls
/// code_predictor.generate with max_new_tokens = 15): input [past_hidden, embedding of codebook 0], then codebook g
/// (1..15) is picked from lm_head[g-1] at the last position and fed back through codec_embedding[g-1].</summary>
public static class CodePredictorDecoder
{
    /// <param name="pastHidden">the talker's hidden state [1, 1, hidden] before the frame</param>
    /// <param name="code0">the frame's codebook-0 code</param>
    /// <param name="pick">(codebook g, fp32 logits) → code; where sampling happens</param>
    /// <returns>the frame's codes [groups], code0 first</returns>
    public static long[] PredictFrame(Talker talker, Tensor pastHidden, long code0, bool useKvCache, Func<int, float[], long> pick)
    {
        var predictor = talker.CodePredictor;
        int groups = talker.Config.NumCodeGroups;
        var codes = new long[groups];
        codes[0] = code0;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        using var cache = useKvCache ? predictor.Model.NewCache() : null;
        var device = pastHidden.device;
        var first = talker.Model.CodecEmbedding.forward(tensor(new[] { code0 }, device: device).view(1, 1)); // [1, 1, hidden]
        var x = cat([pastHidden, first], 1); // [1, 2, hidden]
        var sequence = x;
        for (int g = 1; g < groups; g++)
        {
            var hidden = cache is not null ? predictor.ForwardWithCache(x, cache) : predictor.forward(sequence);
            var last = hidden.narrow(1, hidden.shape[1] - 1, 1);
            codes[g] = pick(g, TalkerDecoder.Logits(predictor.LmHead(g).forward(last)));
            if (g == groups - 1) break;
            x = predictor.Model.CodecEmbedding(g).forward(tensor(new[] { codes[g] }, device: device).view(1, 1));
            if (cache is null) sequence = cat([sequence, x], 1);
        }
        return codes;
    }
}
