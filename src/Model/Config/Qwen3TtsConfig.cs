using System.Text.Json;
using System.Text.Json.Nodes;

namespace Qwen3Tts.Model.Config;

/// <summary>Multimodal RoPE of the talker: per-axis (temporal, height, width) frequency sections,
/// interleaved across the rotary half when <see cref="Interleaved"/> is set (as in the released models).</summary>
public sealed record RopeScaling(string RopeType, IReadOnlyList<int> MropeSection, bool Interleaved);

/// <summary>The code predictor ("sub-talker"): a small decoder that predicts codebooks 1..15 of a frame.</summary>
public sealed record CodePredictorConfig(
    int VocabSize,
    int HiddenSize,
    int IntermediateSize,
    int NumHiddenLayers,
    int NumAttentionHeads,
    int NumKeyValueHeads,
    int HeadDim,
    string HiddenAct,
    double RmsNormEps,
    double RopeTheta,
    bool AttentionBias,
    int NumCodeGroups,
    int MaxPositionEmbeddings,
    double InitializerRange)
{
    internal static CodePredictorConfig Parse(JsonFields f)
    {
        int hidden = f.IntOr("hidden_size", 1024);
        int heads = f.IntOr("num_attention_heads", 16);
        var c = new CodePredictorConfig(
            VocabSize: f.IntOr("vocab_size", 2048),
            HiddenSize: hidden,
            IntermediateSize: f.IntOr("intermediate_size", 3072),
            NumHiddenLayers: f.IntOr("num_hidden_layers", 5),
            NumAttentionHeads: heads,
            NumKeyValueHeads: f.Has("num_key_value_heads") ? f.Int("num_key_value_heads") : heads,
            HeadDim: f.IntOr("head_dim", 128),
            HiddenAct: f.StringOr("hidden_act", "silu"),
            RmsNormEps: f.DoubleOr("rms_norm_eps", 1e-6),
            RopeTheta: f.DoubleOr("rope_theta", 10000),
            AttentionBias: f.BoolOr("attention_bias", false),
            NumCodeGroups: f.IntOr("num_code_groups", 32),
            MaxPositionEmbeddings: f.IntOr("max_position_embeddings", 32768),
            InitializerRange: f.DoubleOr("initializer_range", 0.02));
        Qwen3TtsConfig.CheckAttention(f, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim);
        Qwen3TtsConfig.CheckActivation(f, c.HiddenAct);
        if (f.Has("layer_types") && f.Raw("layer_types") is JsonArray types && types.Any(t => t?.GetValue<string>() != "full_attention")
            && f.BoolOr("use_sliding_window", false))
            throw f.Invalid("layer_types", "uses sliding attention, which the released code predictors never do and this port does not implement");
        return c;
    }
}

/// <summary>The talker: the main decoder over summed text + codec embeddings, predicting codebook 0.</summary>
public sealed record TalkerConfig(
    int VocabSize,
    int HiddenSize,
    int IntermediateSize,
    int NumHiddenLayers,
    int NumAttentionHeads,
    int NumKeyValueHeads,
    int HeadDim,
    string HiddenAct,
    double RmsNormEps,
    double RopeTheta,
    RopeScaling RopeScaling,
    bool AttentionBias,
    int MaxPositionEmbeddings,
    double InitializerRange,
    int NumCodeGroups,
    int TextHiddenSize,
    int TextVocabSize,
    int PositionIdPerSeconds,
    int CodecEosTokenId,
    int CodecThinkId,
    int CodecNothinkId,
    int CodecThinkBosId,
    int CodecThinkEosId,
    int CodecPadId,
    int CodecBosId,
    IReadOnlyDictionary<string, int> CodecLanguageId,
    IReadOnlyDictionary<string, int> SpkId,
    IReadOnlyDictionary<string, string?> SpkIsDialect,
    CodePredictorConfig CodePredictor)
{
    internal static TalkerConfig Parse(JsonFields f)
    {
        int hidden = f.Int("hidden_size");
        int heads = f.Int("num_attention_heads");
        var rope = f.Child("rope_scaling", required: false);
        var ropeScaling = new RopeScaling(
            RopeType: rope.StringOr("rope_type", rope.StringOr("type", "default")),
            MropeSection: rope.IntList("mrope_section", fallback: Array.Empty<int>()),
            Interleaved: rope.BoolOr("interleaved", false));
        if (ropeScaling.RopeType != "default")
            throw rope.Invalid("rope_type", $"is '{ropeScaling.RopeType}'; only 'default' RoPE is used by Qwen3-TTS and implemented here");

        var c = new TalkerConfig(
            VocabSize: f.Int("vocab_size"),
            HiddenSize: hidden,
            IntermediateSize: f.Int("intermediate_size"),
            NumHiddenLayers: f.Int("num_hidden_layers"),
            NumAttentionHeads: heads,
            NumKeyValueHeads: f.Int("num_key_value_heads"),
            HeadDim: f.Has("head_dim") ? f.Int("head_dim") : hidden / heads,
            HiddenAct: f.StringOr("hidden_act", "silu"),
            RmsNormEps: f.DoubleOr("rms_norm_eps", 1e-6),
            RopeTheta: f.DoubleOr("rope_theta", 10000),
            RopeScaling: ropeScaling,
            AttentionBias: f.BoolOr("attention_bias", false),
            MaxPositionEmbeddings: f.IntOr("max_position_embeddings", 32768),
            InitializerRange: f.DoubleOr("initializer_range", 0.02),
            NumCodeGroups: f.Int("num_code_groups"),
            TextHiddenSize: f.Int("text_hidden_size"),
            TextVocabSize: f.Int("text_vocab_size"),
            PositionIdPerSeconds: f.IntOr("position_id_per_seconds", 13),
            CodecEosTokenId: f.Int("codec_eos_token_id"),
            CodecThinkId: f.Int("codec_think_id"),
            CodecNothinkId: f.Int("codec_nothink_id"),
            CodecThinkBosId: f.Int("codec_think_bos_id"),
            CodecThinkEosId: f.Int("codec_think_eos_id"),
            CodecPadId: f.Int("codec_pad_id"),
            CodecBosId: f.Int("codec_bos_id"),
            CodecLanguageId: f.IntMap("codec_language_id"),
            SpkId: f.IntMap("spk_id"),
            SpkIsDialect: ParseDialects(f),
            CodePredictor: CodePredictorConfig.Parse(f.Child("code_predictor_config")));

        Qwen3TtsConfig.CheckAttention(f, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim);
        Qwen3TtsConfig.CheckActivation(f, c.HiddenAct);
        if (c.RopeScaling.MropeSection.Count > 0 && c.RopeScaling.MropeSection.Sum() != c.HeadDim / 2)
            throw rope.Invalid("mrope_section", $"sums to {c.RopeScaling.MropeSection.Sum()}, but must cover half the head dim ({c.HeadDim / 2})");
        if (c.CodePredictor.NumCodeGroups != c.NumCodeGroups)
            throw f.Invalid("code_predictor_config.num_code_groups", $"is {c.CodePredictor.NumCodeGroups} but the talker's num_code_groups is {c.NumCodeGroups}");
        foreach (var (name, id) in c.CodecLanguageId.Concat(c.SpkId))
            if (id < 0 || id >= c.VocabSize)
                throw f.Invalid(c.SpkId.ContainsKey(name) ? $"spk_id.{name}" : $"codec_language_id.{name}", $"is {id}, outside the codec vocabulary [0, {c.VocabSize})");
        foreach (var (name, id) in new[] { ("codec_eos_token_id", c.CodecEosTokenId), ("codec_think_id", c.CodecThinkId), ("codec_nothink_id", c.CodecNothinkId),
                     ("codec_think_bos_id", c.CodecThinkBosId), ("codec_think_eos_id", c.CodecThinkEosId), ("codec_pad_id", c.CodecPadId), ("codec_bos_id", c.CodecBosId) })
            if (id < 0 || id >= c.VocabSize)
                throw f.Invalid(name, $"is {id}, outside the codec vocabulary [0, {c.VocabSize})");
        return c;
    }

    // spk_is_dialect maps a speaker to false or to the dialect's codec_language_id key.
    static IReadOnlyDictionary<string, string?> ParseDialects(JsonFields f)
    {
        var result = new Dictionary<string, string?>(StringComparer.Ordinal);
        if (f.Raw("spk_is_dialect") is not JsonNode node) return result;
        if (node is not JsonObject map) throw f.Invalid("spk_is_dialect", $"must be an object, found {node.ToJsonString()}");
        foreach (var (speaker, value) in map)
        {
            result[speaker] = value?.GetValueKind() switch
            {
                JsonValueKind.False or JsonValueKind.Null or null => null,
                JsonValueKind.String => value.GetValue<string>(),
                _ => throw f.Invalid($"spk_is_dialect.{speaker}", $"must be false or a dialect name, found {value.ToJsonString()}"),
            };
        }
        return result;
    }
}

/// <summary>ECAPA-TDNN speaker encoder over 128-band log-mels; its output is the talker's speaker slot.</summary>
public sealed record SpeakerEncoderConfig(
    int MelDim,
    int EncDim,
    IReadOnlyList<int> EncChannels,
    IReadOnlyList<int> EncKernelSizes,
    IReadOnlyList<int> EncDilations,
    int EncAttentionChannels,
    int EncRes2NetScale,
    int EncSeChannels,
    int SampleRate)
{
    internal static SpeakerEncoderConfig Parse(JsonFields f)
    {
        var c = new SpeakerEncoderConfig(
            MelDim: f.IntOr("mel_dim", 128),
            EncDim: f.IntOr("enc_dim", 1024),
            EncChannels: f.IntList("enc_channels", new[] { 512, 512, 512, 512, 1536 }),
            EncKernelSizes: f.IntList("enc_kernel_sizes", new[] { 5, 3, 3, 3, 1 }),
            EncDilations: f.IntList("enc_dilations", new[] { 1, 2, 3, 4, 1 }),
            EncAttentionChannels: f.IntOr("enc_attention_channels", 128),
            EncRes2NetScale: f.IntOr("enc_res2net_scale", 8),
            EncSeChannels: f.IntOr("enc_se_channels", 128),
            SampleRate: f.IntOr("sample_rate", 24000));
        if (c.EncChannels.Count != c.EncKernelSizes.Count || c.EncChannels.Count != c.EncDilations.Count)
            throw f.Invalid("enc_channels", "enc_channels, enc_kernel_sizes and enc_dilations must have the same length");
        if (c.EncChannels.Count < 3)
            throw f.Invalid("enc_channels", "needs at least 3 entries (initial TDNN, SE-Res2Net blocks, aggregation)");
        for (int i = 1; i < c.EncChannels.Count - 1; i++)
            if (c.EncChannels[i] % c.EncRes2NetScale != 0)
                throw f.Invalid($"enc_channels[{i}]", $"is {c.EncChannels[i]}, not divisible by enc_res2net_scale {c.EncRes2NetScale}");
        return c;
    }
}

/// <summary>The whole Qwen3-TTS-12Hz model config (config.json). <see cref="Json"/> keeps the file's
/// full content so a rewritten config (export, init-model) loses no key we do not model.</summary>
public sealed record Qwen3TtsConfig(
    string TtsModelType,
    string TtsModelSize,
    string TokenizerType,
    int TtsPadTokenId,
    int TtsBosTokenId,
    int TtsEosTokenId,
    int ImStartTokenId,
    int ImEndTokenId,
    int AssistantTokenId,
    TalkerConfig Talker,
    SpeakerEncoderConfig SpeakerEncoder,
    JsonObject Json)
{
    /// <summary>True for checkpoints that carry a speaker encoder (the reference builds one only for "base").</summary>
    public bool HasSpeakerEncoder => TtsModelType == "base";

    public static Qwen3TtsConfig Load(string path) => Parse(ReadJson(path), path);

    /// <summary>A config.json's top-level object, with errors naming the file (missing, not JSON, not an object).</summary>
    public static JsonObject ReadJson(string path)
    {
        if (!File.Exists(path)) throw new ConfigException($"{path}: no such config file");
        JsonNode? node;
        try { node = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new ConfigException($"{path}: not valid JSON (line {e.LineNumber + 1}): {e.Message}"); }
        return node as JsonObject ?? throw new ConfigException($"{path}: the top level must be a JSON object");
    }

    public static Qwen3TtsConfig Parse(string json, string source = "config.json")
    {
        JsonNode? node;
        try { node = JsonNode.Parse(json); }
        catch (JsonException e) { throw new ConfigException($"{source}: not valid JSON (line {e.LineNumber + 1}): {e.Message}"); }
        return Parse(node, source);
    }

    public static Qwen3TtsConfig Parse(JsonNode? node, string source)
    {
        if (node is not JsonObject obj) throw new ConfigException($"{source}: the top level must be a JSON object");
        var f = new JsonFields(obj, "", source);
        var talker = TalkerConfig.Parse(f.Child("talker_config"));
        var speaker = SpeakerEncoderConfig.Parse(f.Child("speaker_encoder_config", required: false));
        var c = new Qwen3TtsConfig(
            TtsModelType: f.String("tts_model_type"),
            TtsModelSize: f.StringOr("tts_model_size", ""),
            TokenizerType: f.StringOr("tokenizer_type", "qwen3_tts_tokenizer_12hz"),
            TtsPadTokenId: f.Int("tts_pad_token_id"),
            TtsBosTokenId: f.Int("tts_bos_token_id"),
            TtsEosTokenId: f.Int("tts_eos_token_id"),
            ImStartTokenId: f.IntOr("im_start_token_id", 151644),
            ImEndTokenId: f.IntOr("im_end_token_id", 151645),
            AssistantTokenId: f.IntOr("assistant_token_id", 77091),
            Talker: talker,
            SpeakerEncoder: speaker,
            Json: obj);
        if (c.TtsModelType is not ("base" or "custom_voice" or "voice_design"))
            throw f.Invalid("tts_model_type", $"is '{c.TtsModelType}'; expected base, custom_voice or voice_design");
        foreach (var (name, id) in new[] { ("tts_pad_token_id", c.TtsPadTokenId), ("tts_bos_token_id", c.TtsBosTokenId), ("tts_eos_token_id", c.TtsEosTokenId),
                     ("im_start_token_id", c.ImStartTokenId), ("im_end_token_id", c.ImEndTokenId), ("assistant_token_id", c.AssistantTokenId) })
            if (id < 0 || id >= talker.TextVocabSize)
                throw f.Invalid(name, $"is {id}, outside the text vocabulary [0, {talker.TextVocabSize})");
        if (c.HasSpeakerEncoder && speaker.EncDim != talker.HiddenSize)
            throw f.Invalid("speaker_encoder_config.enc_dim",
                $"is {speaker.EncDim}, but the speaker embedding fills a talker input slot of width talker_config.hidden_size = {talker.HiddenSize}");
        return c;
    }

    internal static void CheckAttention(JsonFields f, int heads, int kvHeads, int headDim)
    {
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0)
            throw f.Invalid("num_key_value_heads", $"is {kvHeads}; num_attention_heads ({heads}) must be a positive multiple of it");
        if (headDim <= 0 || headDim % 2 != 0)
            throw f.Invalid("head_dim", $"is {headDim}; RoPE needs a positive even head dim");
    }

    internal static void CheckActivation(JsonFields f, string act)
    {
        if (act != "silu") throw f.Invalid("hidden_act", $"is '{act}'; the released models use 'silu', the only activation implemented here");
    }

    public string ToJsonString() => Json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
}
