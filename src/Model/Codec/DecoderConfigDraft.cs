using System.Text.Json.Nodes;
using Qwen3Tts.Model.Config;

namespace Qwen3Tts.Model.Codec;

// DRAFT: stands in for codec-enc's SpeechTokenizerDecoderConfig until that branch is merged; deleted then.

/// <summary>speech_tokenizer/config.json's decoder_config (Qwen3TTSTokenizerV2DecoderConfig).</summary>
public sealed record SpeechTokenizerDecoderConfig(
    int CodebookSize,
    int CodebookDim,
    int HiddenSize,
    int LatentDim,
    int MaxPositionEmbeddings,
    double RopeTheta,
    int NumAttentionHeads,
    int NumKeyValueHeads,
    int HeadDim,
    bool AttentionBias,
    int SlidingWindow,
    int IntermediateSize,
    string HiddenAct,
    double LayerScaleInitialScale,
    double RmsNormEps,
    int NumHiddenLayers,
    int NumQuantizers,
    IReadOnlyList<int> UpsampleRates,
    IReadOnlyList<int> UpsamplingRatios,
    int DecoderDim)
{
    internal static SpeechTokenizerDecoderConfig Parse(JsonFields f)
    {
        int hidden = f.IntOr("hidden_size", 1024);
        int heads = f.IntOr("num_attention_heads", 16);
        return new SpeechTokenizerDecoderConfig(
            CodebookSize: f.IntOr("codebook_size", 2048),
            CodebookDim: f.Int("codebook_dim"),
            HiddenSize: hidden,
            LatentDim: f.IntOr("latent_dim", 1024),
            MaxPositionEmbeddings: f.IntOr("max_position_embeddings", 8000),
            RopeTheta: f.DoubleOr("rope_theta", 10000),
            NumAttentionHeads: heads,
            NumKeyValueHeads: f.IntOr("num_key_value_heads", 16),
            HeadDim: f.IntOr("head_dim", hidden / heads),
            AttentionBias: f.BoolOr("attention_bias", false),
            SlidingWindow: f.IntOr("sliding_window", 72),
            IntermediateSize: f.IntOr("intermediate_size", 3072),
            HiddenAct: f.StringOr("hidden_act", "silu"),
            LayerScaleInitialScale: f.DoubleOr("layer_scale_initial_scale", 0.01),
            RmsNormEps: f.DoubleOr("rms_norm_eps", 1e-5),
            NumHiddenLayers: f.IntOr("num_hidden_layers", 8),
            NumQuantizers: f.IntOr("num_quantizers", 16),
            UpsampleRates: f.IntList("upsample_rates", new[] { 8, 5, 4, 3 }),
            UpsamplingRatios: f.IntList("upsampling_ratios", new[] { 2, 2 }),
            DecoderDim: f.IntOr("decoder_dim", 1536));
    }

    /// <summary>The decoder_config of a speech tokenizer config.json.</summary>
    public static SpeechTokenizerDecoderConfig Load(string path)
    {
        var json = Qwen3TtsConfig.ReadJson(path);
        return Parse(new JsonFields(json, "", path).Child("decoder_config"));
    }

    public static SpeechTokenizerDecoderConfig Parse(JsonObject decoderConfig, string source) =>
        Parse(new JsonFields(decoderConfig, "decoder_config", source));
}
