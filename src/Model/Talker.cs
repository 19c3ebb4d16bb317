using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model;

/// <summary>The talker's decoder ("talker.model"): text and codec embeddings, multimodal-RoPE layers,
/// final norm. Its input is the sum of a text-channel and a codec-channel embedding per position.</summary>
public sealed class TalkerModel : nn.Module<Tensor, Tensor?, Tensor?, Tensor>
{
    readonly ModuleList<DecoderLayer> layers;
    readonly RmsNorm norm;
    readonly Embedding codec_embedding;
    readonly Embedding text_embedding;
    readonly float[] invFreq;
    readonly RopeScaling rope;

    public TalkerModel(TalkerConfig c, Device? device = null, ScalarType? dtype = null) : base(nameof(TalkerModel))
    {
        layers = new ModuleList<DecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers)
            .Select(_ => new DecoderLayer(c.HiddenSize, c.IntermediateSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.AttentionBias, c.RmsNormEps, device, dtype))
            .ToArray());
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, device, dtype);
        codec_embedding = Embeddings.Create(c.VocabSize, c.HiddenSize, device, dtype);
        text_embedding = Embeddings.Create(c.TextVocabSize, c.TextHiddenSize, device, dtype);
        invFreq = Rotary.InverseFrequencies(c.HeadDim, c.RopeTheta);
        rope = c.RopeScaling;
        RegisterComponents();
    }

    /// <summary>Recompute each layer's activations in backward instead of keeping them (see <see cref="Recompute"/>).</summary>
    public bool GradientCheckpointing { get; set; }

    public Embedding CodecEmbedding => codec_embedding;
    public Embedding TextEmbedding => text_embedding;

    /// <param name="x">summed input embeddings [B, T, hidden]</param>
    /// <param name="positionIds">[3, B, T] (temporal, height, width); null = 0..T-1 on every axis</param>
    /// <param name="mask">bool [B, 1, T, T] (see <see cref="AttentionMask"/>); null = causal</param>
    /// <returns>final-normed hidden states [B, T, hidden]</returns>
    public override Tensor forward(Tensor x, Tensor? positionIds, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var positions = positionIds ?? arange(x.shape[1], device: x.device).view(1, 1, -1).expand(3, x.shape[0], -1);
        var (cos, sin) = Rotary.Multimodal(positions, invFreq, rope.MropeSection, rope.Interleaved, x.dtype);
        var h = x;
        bool recompute = GradientCheckpointing && is_grad_enabled();
        foreach (var layer in layers) h = recompute ? Recompute.Layer(layer, h, cos, sin, mask) : layer.forward(h, cos, sin, mask);
        return norm.forward(h).MoveToOuterDisposeScope();
    }

    /// <summary>A new KV cache with one entry per layer.</summary>
    public KvCache NewCache() => new(layers.Count);

    /// <summary>Incremental decoding: x [B, T, hidden] holds only the new positions, whose keys and values are
    /// appended to <paramref name="cache"/>; they attend causally to everything cached before them.</summary>
    /// <param name="positionIds">[3, B, T] of the new positions</param>
    /// <returns>final-normed hidden states of the new positions [B, T, hidden]</returns>
    public Tensor ForwardWithCache(Tensor x, Tensor positionIds, KvCache cache)
    {
        if (cache.Layers != layers.Count) throw new ArgumentException($"the cache has {cache.Layers} layers, the talker {layers.Count}", nameof(cache));
        using var scope = NewDisposeScope();
        var (cos, sin) = Rotary.Multimodal(positionIds, invFreq, rope.MropeSection, rope.Interleaved, x.dtype);
        var h = x;
        for (int i = 0; i < layers.Count; i++) h = layers[i].ForwardWithCache(h, cos, sin, cache[i]);
        return norm.forward(h).MoveToOuterDisposeScope();
    }
}

/// <summary>The talker ("talker"): decoder, text_projection (text width → talker width, applied to
/// every text embedding before it is summed in), codec_head over codebook 0, and the code predictor.</summary>
public sealed class Talker : nn.Module<Tensor, Tensor?, Tensor?, Tensor>
{
    readonly TalkerModel model;
    readonly ResizeMlp text_projection;
    readonly Linear codec_head;
    readonly CodePredictor code_predictor;

    public Talker(TalkerConfig c, Device? device = null, ScalarType? dtype = null) : base(nameof(Talker))
    {
        Config = c;
        model = new TalkerModel(c, device, dtype);
        text_projection = new ResizeMlp(c.TextHiddenSize, c.TextHiddenSize, c.HiddenSize, bias: true, device, dtype);
        codec_head = nn.Linear(c.HiddenSize, c.VocabSize, hasBias: false, device: device, dtype: dtype);
        code_predictor = new CodePredictor(c.CodePredictor, c.HiddenSize, device, dtype);
        RegisterComponents();
    }

    public TalkerConfig Config { get; }
    public TalkerModel Model => model;
    public ResizeMlp TextProjection => text_projection;
    public Linear CodecHead => codec_head;
    public CodePredictor CodePredictor => code_predictor;

    /// <summary>Which layers recompute their activations in backward (--gradient_checkpointing; see <see cref="Recompute"/>).</summary>
    public GradientCheckpointing GradientCheckpointing
    {
        get => model.GradientCheckpointing ? code_predictor.Model.GradientCheckpointing ? GradientCheckpointing.All : GradientCheckpointing.Talker : GradientCheckpointing.Off;
        set
        {
            model.GradientCheckpointing = value != GradientCheckpointing.Off;
            code_predictor.Model.GradientCheckpointing = value == GradientCheckpointing.All;
        }
    }

    /// <summary>Text ids [B, T] → projected text embeddings [B, T, hidden].</summary>
    public Tensor EmbedText(Tensor textIds)
    {
        using var scope = NewDisposeScope();
        return text_projection.forward(ParameterUse.Embedding(model.TextEmbedding, textIds)).MoveToOuterDisposeScope();
    }

    /// <summary>Hidden states [B, T, hidden] for summed input embeddings (see <see cref="TalkerModel.forward"/>).</summary>
    public override Tensor forward(Tensor x, Tensor? positionIds, Tensor? mask) => model.forward(x, positionIds, mask);

    /// <summary>Hidden states of the new positions, decoding through a KV cache (see <see cref="TalkerModel.ForwardWithCache"/>).</summary>
    public Tensor ForwardWithCache(Tensor x, Tensor positionIds, KvCache cache) => model.ForwardWithCache(x, positionIds, cache);

    /// <summary>Position ids [3, B, T] for a right- or left-padded batch, as the reference's get_rope_index:
    /// cumsum(mask) - 1 on valid positions, 1 on padding.</summary>
    public static Tensor PositionIds(Tensor attentionMask)
    {
        using var scope = NewDisposeScope();
        var valid = attentionMask.to(ScalarType.Int64);
        var positions = valid.cumsum(-1) - 1;
        positions = positions.masked_fill(valid == 0, 1);
        return positions.unsqueeze(0).expand(3, -1, -1).MoveToOuterDisposeScope();
    }
}
