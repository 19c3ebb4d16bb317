using Qwen3Tts.Model.Config;

namespace Qwen3Tts.Model.Codec;

/// <summary>The speech tokenizer's decoder ("code2wav", speech_tokenizer/config.json decoder_config): RVQ
/// dequantizer, a sliding-window transformer, ConvNeXt upsamplers and a SnakeBeta vocoder. Every key of the
/// released file is a field; defaults are Qwen3TTSTokenizerV2DecoderConfig's where it has one.</summary>
/// <remarks>Keys the reference reads only as loose attributes: <c>codebook_dim</c> (required: the reference fails
/// without it), <c>head_dim</c> (defaults to hidden_size / num_attention_heads). <c>num_semantic_quantizers</c>,
/// <c>semantic_codebook_size</c> and <c>vector_quantization_hidden_dimension</c> are never read by the reference
/// decoder: its split quantizer always has one semantic codebook of <c>codebook_size</c> entries in
/// <c>codebook_dim / 2</c> dimensions. They are kept so a rewritten config loses nothing.</remarks>
public sealed record DecoderConfig(
    bool AttentionBias,
    double AttentionDropout,
    int LatentDim,
    int CodebookDim,
    int CodebookSize,
    int DecoderDim,
    string HiddenAct,
    int HiddenSize,
    int IntermediateSize,
    double LayerScaleInitialScale,
    int MaxPositionEmbeddings,
    int HeadDim,
    int NumAttentionHeads,
    int NumHiddenLayers,
    int NumKeyValueHeads,
    int NumQuantizers,
    int NumSemanticQuantizers,
    double RmsNormEps,
    double RopeTheta,
    int SemanticCodebookSize,
    int SlidingWindow,
    IReadOnlyList<int> UpsampleRates,
    IReadOnlyList<int> UpsamplingRatios,
    int VectorQuantizationHiddenDimension)
{
    /// <summary>Samples per code frame: the product of upsampling_ratios (ConvNeXt stage) and upsample_rates (vocoder).</summary>
    public int TotalUpsample => UpsamplingRatios.Aggregate(1, (a, b) => a * b) * UpsampleRates.Aggregate(1, (a, b) => a * b);

    /// <summary>Width of each codebook vector: the split quantizer works in codebook_dim / 2.</summary>
    public int QuantizerDimension => CodebookDim / 2;

    /// <summary>Channels of vocoder block i's input (decoder_dim / 2^i); block i outputs <c>BlockDim(i + 1)</c>.</summary>
    public int BlockDim(int i) => DecoderDim >> i;

    /// <summary>Channels after the last vocoder block, fed to the final SnakeBeta and the 1-channel conv.</summary>
    public int OutputDim => BlockDim(UpsampleRates.Count);

    internal static DecoderConfig Parse(JsonFields f)
    {
        int hidden = f.IntOr("hidden_size", 1024);
        int heads = f.IntOr("num_attention_heads", 16);
        var c = new DecoderConfig(
            AttentionBias: f.BoolOr("attention_bias", false),
            AttentionDropout: f.DoubleOr("attention_dropout", 0.0),
            LatentDim: f.IntOr("latent_dim", 1024),
            CodebookDim: f.Int("codebook_dim"),
            CodebookSize: f.IntOr("codebook_size", 2048),
            DecoderDim: f.IntOr("decoder_dim", 1536),
            HiddenAct: f.StringOr("hidden_act", "silu"),
            HiddenSize: hidden,
            IntermediateSize: f.IntOr("intermediate_size", 3072),
            LayerScaleInitialScale: f.DoubleOr("layer_scale_initial_scale", 0.01),
            MaxPositionEmbeddings: f.IntOr("max_position_embeddings", 8000),
            HeadDim: f.Has("head_dim") ? f.Int("head_dim") : hidden / Math.Max(heads, 1),
            NumAttentionHeads: heads,
            NumHiddenLayers: f.IntOr("num_hidden_layers", 8),
            NumKeyValueHeads: f.IntOr("num_key_value_heads", 16),
            NumQuantizers: f.IntOr("num_quantizers", 16),
            NumSemanticQuantizers: f.IntOr("num_semantic_quantizers", 1),
            RmsNormEps: f.DoubleOr("rms_norm_eps", 1e-5),
            RopeTheta: f.DoubleOr("rope_theta", 10000),
            SemanticCodebookSize: f.IntOr("semantic_codebook_size", 4096),
            SlidingWindow: f.IntOr("sliding_window", 72),
            UpsampleRates: f.IntList("upsample_rates", new[] { 8, 5, 4, 3 }),
            UpsamplingRatios: f.IntList("upsampling_ratios", new[] { 2, 2 }),
            VectorQuantizationHiddenDimension: f.IntOr("vector_quantization_hidden_dimension", 512));

        Qwen3TtsConfig.CheckAttention(f, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim);
        Qwen3TtsConfig.CheckActivation(f, c.HiddenAct);
        foreach (var (name, value) in new[] { ("hidden_size", c.HiddenSize), ("intermediate_size", c.IntermediateSize), ("latent_dim", c.LatentDim),
                     ("codebook_size", c.CodebookSize), ("num_hidden_layers", c.NumHiddenLayers), ("sliding_window", c.SlidingWindow) })
            if (value <= 0) throw f.Invalid(name, $"is {value}; it must be positive");
        if (c.CodebookDim <= 0 || c.CodebookDim % 2 != 0)
            throw f.Invalid("codebook_dim", $"is {c.CodebookDim}; the split quantizer needs a positive even width (it works in codebook_dim / 2)");
        if (c.NumSemanticQuantizers != 1)
            throw f.Invalid("num_semantic_quantizers", $"is {c.NumSemanticQuantizers}; the reference decoder always splits off exactly one semantic codebook");
        if (c.NumQuantizers <= c.NumSemanticQuantizers)
            throw f.Invalid("num_quantizers", $"is {c.NumQuantizers}; it must exceed the one semantic quantizer");
        if (c.UpsampleRates.Count == 0 || c.UpsampleRates.Any(r => r <= 0))
            throw f.Invalid("upsample_rates", "must be a non-empty list of positive integers");
        if (c.UpsamplingRatios.Any(r => r <= 0))
            throw f.Invalid("upsampling_ratios", "must be positive integers");
        if (c.DecoderDim <= 0 || c.DecoderDim % (1 << c.UpsampleRates.Count) != 0)
            throw f.Invalid("decoder_dim", $"is {c.DecoderDim}; each of the {c.UpsampleRates.Count} vocoder blocks halves it, so it must be a positive multiple of {1 << c.UpsampleRates.Count}");
        return c;
    }
}
