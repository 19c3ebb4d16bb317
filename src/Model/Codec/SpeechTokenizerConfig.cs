using System.Text.Json;
using System.Text.Json.Nodes;
using Qwen3Tts.Model.Config;

namespace Qwen3Tts.Model.Codec;

/// <summary>The speech tokenizer's encoder (speech_tokenizer/config.json encoder_config): transformers' MimiConfig.
/// Every key of the released file is a field; defaults are MimiConfig's.</summary>
public sealed record EncoderConfig(
    double? FrameRateOverride,
    bool AttentionBias,
    double AttentionDropout,
    int AudioChannels,
    int CodebookDim,
    int CodebookSize,
    int Compress,
    int DilationGrowthRate,
    string Dtype,
    int HeadDim,
    string HiddenAct,
    int HiddenSize,
    double InitializerRange,
    int IntermediateSize,
    int KernelSize,
    int LastKernelSize,
    double LayerScaleInitialScale,
    int MaxPositionEmbeddings,
    double NormEps,
    bool Normalize,
    int NumAttentionHeads,
    int NumFilters,
    int NumHiddenLayers,
    int NumKeyValueHeads,
    int NumQuantizers,
    int NumResidualLayers,
    int NumSemanticQuantizers,
    string PadMode,
    int ResidualKernelSize,
    double RopeTheta,
    int SamplingRate,
    int SlidingWindow,
    double TrimRightRatio,
    int UpsampleGroups,
    IReadOnlyList<int> UpsamplingRatios,
    bool UseCache,
    bool UseCausalConv,
    bool UseConvShortcut,
    bool UseStreaming,
    int VectorQuantizationHiddenDimension)
{
    /// <summary>Samples per SEANet frame: the product of the encoder's strides (960 released).</summary>
    public int HopLength => UpsamplingRatios.Aggregate(1, (a, b) => a * b);

    /// <summary>SEANet frame rate, ceil(sampling_rate / hop_length) as MimiConfig computes it (25 released).</summary>
    public int EncodecFrameRate => (SamplingRate + HopLength - 1) / HopLength;

    /// <summary>Samples per code frame: the SEANet strides times the stride-2 downsample (1920 released).</summary>
    public int FrameSize => HopLength * 2;

    /// <summary>Code frames per second: _frame_rate when the file sets it, else sampling_rate / frame_size (12.5).</summary>
    public double FrameRate => FrameRateOverride ?? (double)SamplingRate / FrameSize;

    /// <summary>Mimi builds the downsample conv only when the frame rate differs from the SEANet's.</summary>
    public bool HasDownsample => FrameRate != EncodecFrameRate;

    /// <summary>Kernel of the downsample conv, 2 * int(encodec_frame_rate / frame_rate) (4 released); its stride is 2.</summary>
    public int DownsampleKernel => 2 * (int)(EncodecFrameRate / FrameRate);

    /// <summary>Channels of the SEANet after <paramref name="stage"/> stride layers: num_filters * 2^stage.</summary>
    public int SeanetChannels(int stage) => NumFilters << stage;

    /// <summary>The residual VQ's projections exist only when its width differs from the transformer's.</summary>
    public bool HasQuantizerProjection => VectorQuantizationHiddenDimension != HiddenSize;

    internal static EncoderConfig Parse(JsonFields f)
    {
        int hidden = f.IntOr("hidden_size", 512);
        int heads = f.IntOr("num_attention_heads", 8);
        var c = new EncoderConfig(
            FrameRateOverride: f.Has("_frame_rate") ? f.Double("_frame_rate") : f.Has("frame_rate") ? f.Double("frame_rate") : null,
            AttentionBias: f.BoolOr("attention_bias", false),
            AttentionDropout: f.DoubleOr("attention_dropout", 0.0),
            AudioChannels: f.IntOr("audio_channels", 1),
            CodebookDim: f.Has("codebook_dim") ? f.Int("codebook_dim") : 256,
            CodebookSize: f.IntOr("codebook_size", 2048),
            Compress: f.IntOr("compress", 2),
            DilationGrowthRate: f.IntOr("dilation_growth_rate", 2),
            Dtype: f.StringOr("dtype", "float32"),
            HeadDim: f.Has("head_dim") ? f.Int("head_dim") : hidden / Math.Max(heads, 1),
            HiddenAct: f.StringOr("hidden_act", "gelu"),
            HiddenSize: hidden,
            InitializerRange: f.DoubleOr("initializer_range", 0.02),
            IntermediateSize: f.IntOr("intermediate_size", 2048),
            KernelSize: f.IntOr("kernel_size", 7),
            LastKernelSize: f.IntOr("last_kernel_size", 3),
            LayerScaleInitialScale: f.DoubleOr("layer_scale_initial_scale", 0.01),
            MaxPositionEmbeddings: f.IntOr("max_position_embeddings", 8000),
            NormEps: f.DoubleOr("norm_eps", 1e-5),
            Normalize: f.BoolOr("normalize", false),
            NumAttentionHeads: heads,
            NumFilters: f.IntOr("num_filters", 64),
            NumHiddenLayers: f.IntOr("num_hidden_layers", 8),
            NumKeyValueHeads: f.IntOr("num_key_value_heads", 8),
            NumQuantizers: f.IntOr("num_quantizers", 32),
            NumResidualLayers: f.IntOr("num_residual_layers", 1),
            NumSemanticQuantizers: f.IntOr("num_semantic_quantizers", 1),
            PadMode: f.StringOr("pad_mode", "constant"),
            ResidualKernelSize: f.IntOr("residual_kernel_size", 3),
            RopeTheta: f.DoubleOr("rope_theta", 10000),
            SamplingRate: f.IntOr("sampling_rate", 24000),
            SlidingWindow: f.IntOr("sliding_window", 250),
            TrimRightRatio: f.DoubleOr("trim_right_ratio", 1.0),
            UpsampleGroups: f.IntOr("upsample_groups", 512),
            UpsamplingRatios: f.IntList("upsampling_ratios", new[] { 8, 6, 5, 4 }),
            UseCache: f.BoolOr("use_cache", false),
            UseCausalConv: f.BoolOr("use_causal_conv", true),
            UseConvShortcut: f.BoolOr("use_conv_shortcut", false),
            UseStreaming: f.BoolOr("use_streaming", false),
            VectorQuantizationHiddenDimension: f.IntOr("vector_quantization_hidden_dimension", 256));

        Qwen3TtsConfig.CheckAttention(f, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim);
        if (c.HiddenAct != "gelu")
            throw f.Invalid("hidden_act", $"is '{c.HiddenAct}'; the released Mimi encoder uses 'gelu', the only activation implemented here");
        if (!c.UseCausalConv)
            throw f.Invalid("use_causal_conv", "is false; the 12 Hz tokenizer's encoder is causal and only causal convolutions are implemented");
        if (c.UseConvShortcut)
            throw f.Invalid("use_conv_shortcut", "is true; the released encoder uses identity shortcuts, the only kind implemented here");
        if (c.PadMode is not ("constant" or "replicate"))
            throw f.Invalid("pad_mode", $"is '{c.PadMode}'; expected 'constant' or 'replicate'");
        if (c.AudioChannels != 1)
            throw f.Invalid("audio_channels", $"is {c.AudioChannels}; the speech tokenizer encodes mono audio");
        foreach (var (name, value) in new[] { ("hidden_size", c.HiddenSize), ("num_filters", c.NumFilters), ("intermediate_size", c.IntermediateSize),
                     ("kernel_size", c.KernelSize), ("last_kernel_size", c.LastKernelSize), ("residual_kernel_size", c.ResidualKernelSize),
                     ("compress", c.Compress), ("codebook_size", c.CodebookSize), ("codebook_dim", c.CodebookDim), ("sampling_rate", c.SamplingRate),
                     ("vector_quantization_hidden_dimension", c.VectorQuantizationHiddenDimension), ("num_hidden_layers", c.NumHiddenLayers) })
            if (value <= 0) throw f.Invalid(name, $"is {value}; it must be positive");
        if (c.UpsamplingRatios.Count == 0 || c.UpsamplingRatios.Any(r => r <= 0))
            throw f.Invalid("upsampling_ratios", "must be a non-empty list of positive integers");
        if (c.NumSemanticQuantizers < 1 || c.NumSemanticQuantizers >= c.NumQuantizers)
            throw f.Invalid("num_semantic_quantizers", $"is {c.NumSemanticQuantizers}; it must be at least 1 and below num_quantizers ({c.NumQuantizers})");
        // Mimi's codebooks live in the VQ width; a different codebook_dim would not fit the projected residual.
        if (c.CodebookDim != c.VectorQuantizationHiddenDimension)
            throw f.Invalid("codebook_dim", $"is {c.CodebookDim}, but the codebooks quantize vectors of vector_quantization_hidden_dimension = {c.VectorQuantizationHiddenDimension}");
        if (c.HasDownsample && c.DownsampleKernel < 2)
            throw f.Invalid("_frame_rate", $"is {c.FrameRate}; the downsample from the SEANet's {c.EncodecFrameRate} Hz needs a frame rate at most half of it");
        return c;
    }
}

/// <summary>The whole speech_tokenizer/config.json of a Qwen3-TTS-12Hz checkpoint (Qwen3TTSTokenizerV2Config):
/// a Mimi encoder (audio → 16 of its 32 codebooks at 12.5 Hz) and the code2wav decoder.
/// <see cref="Json"/> keeps the file's full content so a rewritten config loses no key.</summary>
public sealed record SpeechTokenizerConfig(
    int EncoderValidNumQuantizers,
    int InputSampleRate,
    int OutputSampleRate,
    int EncodeDownsampleRate,
    int DecodeUpsampleRate,
    EncoderConfig Encoder,
    DecoderConfig Decoder,
    JsonObject Json)
{
    public const string ModelType = "qwen3_tts_tokenizer_12hz";

    /// <summary>The folder of a checkpoint that holds the speech tokenizer.</summary>
    public const string FolderName = "speech_tokenizer";

    /// <summary>Presets beside the model presets: "tiny" (tiny widths, the real frame layout and codebook
    /// counts), "0.6b" and "1.7b" (the released files, identical for all three released checkpoints).</summary>
    public static IReadOnlyList<string> PresetNames => Presets.Names;

    public static SpeechTokenizerConfig Load(string path) => Parse(Qwen3TtsConfig.ReadJson(path), path);

    public static SpeechTokenizerConfig Parse(string json, string source = "speech_tokenizer/config.json")
    {
        JsonNode? node;
        try { node = JsonNode.Parse(json); }
        catch (JsonException e) { throw new ConfigException($"{source}: not valid JSON (line {e.LineNumber + 1}): {e.Message}"); }
        return Parse(node, source);
    }

    public static SpeechTokenizerConfig Parse(JsonNode? node, string source)
    {
        if (node is not JsonObject obj) throw new ConfigException($"{source}: the top level must be a JSON object");
        var f = new JsonFields(obj, "", source);
        string modelType = f.StringOr("model_type", ModelType);
        if (modelType != ModelType)
            throw f.Invalid("model_type", $"is '{modelType}'; this is the 12 Hz tokenizer ('{ModelType}'), the 25 Hz one is not implemented");
        var encoder = EncoderConfig.Parse(f.Child("encoder_config", required: false));
        var decoder = DecoderConfig.Parse(f.Child("decoder_config", required: false));
        var c = new SpeechTokenizerConfig(
            EncoderValidNumQuantizers: f.IntOr("encoder_valid_num_quantizers", 16),
            InputSampleRate: f.IntOr("input_sample_rate", 24000),
            OutputSampleRate: f.IntOr("output_sample_rate", 24000),
            EncodeDownsampleRate: f.IntOr("encode_downsample_rate", 1920),
            DecodeUpsampleRate: f.IntOr("decode_upsample_rate", 1920),
            Encoder: encoder,
            Decoder: decoder,
            Json: obj);

        if (c.EncoderValidNumQuantizers < 1 || c.EncoderValidNumQuantizers > encoder.NumQuantizers)
            throw f.Invalid("encoder_valid_num_quantizers", $"is {c.EncoderValidNumQuantizers}; it must be in [1, encoder_config.num_quantizers = {encoder.NumQuantizers}]");
        if (c.EncoderValidNumQuantizers != decoder.NumQuantizers)
            throw f.Invalid("encoder_valid_num_quantizers", $"is {c.EncoderValidNumQuantizers}, but the decoder reads decoder_config.num_quantizers = {decoder.NumQuantizers} codebooks");
        if (c.InputSampleRate != encoder.SamplingRate)
            throw f.Invalid("input_sample_rate", $"is {c.InputSampleRate}, but encoder_config.sampling_rate is {encoder.SamplingRate}");
        // The reference trims each clip's codes to ceil(samples / encode_downsample_rate) frames, which is
        // exactly the encoder's frame count only when the rate is the encoder's frame size.
        if (c.EncodeDownsampleRate != (encoder.HasDownsample ? encoder.FrameSize : encoder.HopLength))
            throw f.Invalid("encode_downsample_rate", $"is {c.EncodeDownsampleRate}, but the encoder's strides make one frame of {(encoder.HasDownsample ? encoder.FrameSize : encoder.HopLength)} samples");
        if (c.DecodeUpsampleRate != decoder.TotalUpsample)
            throw f.Invalid("decode_upsample_rate", $"is {c.DecodeUpsampleRate}, but decoder_config's upsampling_ratios and upsample_rates multiply to {decoder.TotalUpsample}");
        if (decoder.CodebookSize != encoder.CodebookSize)
            throw f.Invalid("decoder_config.codebook_size", $"is {decoder.CodebookSize}, but the encoder emits codes below encoder_config.codebook_size = {encoder.CodebookSize}");
        return c;
    }

    /// <summary>A fresh, mutable copy of a preset's speech_tokenizer/config.json.</summary>
    public static JsonObject ConfigJson(string preset)
    {
        var json = (JsonObject)JsonNode.Parse(Presets.ReadReference($"{Presets.ReferenceCheckpoint(preset)}/{FolderName}/config.json"))!;
        if (preset == "tiny") Shrink(json);
        return json;
    }

    public static SpeechTokenizerConfig Preset(string preset) => Parse(ConfigJson(preset), $"speech tokenizer preset '{preset}'");

    /// <summary>Tiny widths and depths; keeps the sample rates, strides (1920 samples a frame), codebook counts and
    /// codebook sizes (2048, so codes stay valid for the talker's code predictor and the decoder).</summary>
    static void Shrink(JsonObject json)
    {
        var encoder = json["encoder_config"]!.AsObject();
        encoder["hidden_size"] = 32;
        encoder["num_filters"] = 4;
        encoder["intermediate_size"] = 64;
        encoder["num_hidden_layers"] = 2;
        encoder["num_attention_heads"] = 4;
        encoder["num_key_value_heads"] = 2;
        encoder["head_dim"] = 8;
        encoder["codebook_dim"] = 16;
        encoder["vector_quantization_hidden_dimension"] = 16;
        encoder["upsample_groups"] = 32;
        var decoder = json["decoder_config"]!.AsObject();
        decoder["latent_dim"] = 32;
        decoder["codebook_dim"] = 16;
        decoder["decoder_dim"] = 32;
        decoder["hidden_size"] = 32;
        decoder["intermediate_size"] = 64;
        decoder["head_dim"] = 16;
        decoder["num_attention_heads"] = 2;
        decoder["num_key_value_heads"] = 2;
        decoder["num_hidden_layers"] = 2;
        decoder["vector_quantization_hidden_dimension"] = 16;
    }

    public string ToJsonString() => Json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
}
