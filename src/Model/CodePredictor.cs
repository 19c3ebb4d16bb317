using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model;

/// <summary>The code predictor's decoder ("talker.code_predictor.model"): standard-RoPE layers, a
/// final norm, and the input embeddings of codebooks 1..15 (at the talker's width, since they are
/// also summed into the talker's input).</summary>
public sealed class CodePredictorModel : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<DecoderLayer> layers;
    readonly RmsNorm norm;
    readonly ModuleList<Embedding> codec_embedding;
    readonly float[] invFreq;

    public CodePredictorModel(CodePredictorConfig c, int talkerHidden, Device? device = null, ScalarType? dtype = null) : base(nameof(CodePredictorModel))
    {
        layers = new ModuleList<DecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers)
            .Select(_ => new DecoderLayer(c.HiddenSize, c.IntermediateSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.AttentionBias, c.RmsNormEps, device, dtype))
            .ToArray());
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, device, dtype);
        codec_embedding = new ModuleList<Embedding>(Enumerable.Range(0, c.NumCodeGroups - 1)
            .Select(_ => Embeddings.Create(c.VocabSize, talkerHidden, device, dtype))
            .ToArray());
        invFreq = Rotary.InverseFrequencies(c.HeadDim, c.RopeTheta);
        RegisterComponents();
    }

    /// <summary>Recompute each layer's activations in backward instead of keeping them (see <see cref="Recompute"/>).</summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>Input embedding of codebook <paramref name="codebook"/> (1..15).</summary>
    public Embedding CodecEmbedding(int codebook) => codec_embedding[codebook - 1];

    /// <summary>x [B, L, cp_hidden] (already projected) → final-normed hidden [B, L, cp_hidden]. Causal; positions 0..L-1.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var positions = arange(x.shape[1], device: x.device).unsqueeze(0).expand(x.shape[0], -1);
        var (cos, sin) = Rotary.Standard(positions, invFreq, x.dtype);
        var h = x;
        bool recompute = GradientCheckpointing && is_grad_enabled();
        foreach (var layer in layers) h = recompute ? Recompute.Layer(layer, h, cos, sin, null) : layer.forward(h, cos, sin, null);
        return norm.forward(h).MoveToOuterDisposeScope();
    }

    /// <summary>A new KV cache with one entry per layer.</summary>
    public KvCache NewCache() => new(layers.Count);

    /// <summary>x [B, T, cp_hidden] of new positions past..past+T-1 (past = cache length) → their final-normed hidden
    /// states; their keys and values are appended to <paramref name="cache"/>.</summary>
    public Tensor ForwardWithCache(Tensor x, KvCache cache)
    {
        if (cache.Layers != layers.Count) throw new ArgumentException($"the cache has {cache.Layers} layers, the code predictor {layers.Count}", nameof(cache));
        using var scope = NewDisposeScope();
        long past = cache.Length;
        var positions = arange(past, past + x.shape[1], device: x.device).unsqueeze(0).expand(x.shape[0], -1);
        var (cos, sin) = Rotary.Standard(positions, invFreq, x.dtype);
        var h = x;
        for (int i = 0; i < layers.Count; i++) h = layers[i].ForwardWithCache(h, cos, sin, cache[i]);
        return norm.forward(h).MoveToOuterDisposeScope();
    }
}

/// <summary>The sub-talker ("talker.code_predictor"): given the talker's hidden state for a frame and
/// that frame's codebook-0 embedding, predicts codebooks 1..15 autoregressively, one lm_head each.
/// small_to_mtp_projection maps talker width to predictor width when they differ (1.7B); it is an
/// identity (no parameters) when they match (0.6B).</summary>
public sealed class CodePredictor : nn.Module<Tensor, Tensor>
{
    readonly CodePredictorModel model;
    readonly ModuleList<Linear> lm_head;
    readonly Linear? small_to_mtp_projection;

    public CodePredictor(CodePredictorConfig c, int talkerHidden, Device? device = null, ScalarType? dtype = null) : base(nameof(CodePredictor))
    {
        model = new CodePredictorModel(c, talkerHidden, device, dtype);
        lm_head = new ModuleList<Linear>(Enumerable.Range(0, c.NumCodeGroups - 1)
            .Select(_ => nn.Linear(c.HiddenSize, c.VocabSize, hasBias: false, device: device, dtype: dtype))
            .ToArray());
        if (c.HiddenSize != talkerHidden)
            small_to_mtp_projection = nn.Linear(talkerHidden, c.HiddenSize, hasBias: true, device: device, dtype: dtype);
        RegisterComponents();
    }

    public CodePredictorModel Model => model;

    /// <summary>Head predicting codebook <paramref name="codebook"/> (1..15).</summary>
    public Linear LmHead(int codebook) => lm_head[codebook - 1];

    /// <summary>inputs [B, L, talker_hidden] → hidden [B, L, cp_hidden]. Position i predicts codebook i+1 through LmHead(i+1).</summary>
    public override Tensor forward(Tensor inputs)
    {
        using var scope = NewDisposeScope();
        var x = small_to_mtp_projection is null ? inputs : ParameterUse.Linear(small_to_mtp_projection, inputs);
        return model.forward(x).MoveToOuterDisposeScope();
    }

    /// <summary>inputs [B, T, talker_hidden] of new positions → hidden [B, T, cp_hidden], decoding through <paramref name="cache"/>.</summary>
    public Tensor ForwardWithCache(Tensor inputs, KvCache cache)
    {
        using var scope = NewDisposeScope();
        var x = small_to_mtp_projection is null ? inputs : ParameterUse.Linear(small_to_mtp_projection, inputs);
        return model.ForwardWithCache(x, cache).MoveToOuterDisposeScope();
    }
}
