using System.Reflection;
using System.Text.Json.Nodes;

namespace Qwen3Tts.Model.Config;

/// <summary>The released checkpoints' files (embedded from assets/reference) and the model presets
/// built from them: "1.7b" and "0.6b" are the released Base configs; "tiny" keeps the real
/// vocabularies, special ids and tokenizer and shrinks only widths and depths.</summary>
public static class Presets
{
    public static readonly IReadOnlyList<string> Names = new[] { "tiny", "0.6b", "1.7b" };

    /// <summary>The released checkpoint a preset's non-weight files (generation, preprocessor and tokenizer configs) come from.</summary>
    public static string ReferenceCheckpoint(string preset) => preset switch
    {
        "0.6b" => "Qwen3-TTS-12Hz-0.6B-Base",
        "1.7b" or "tiny" => "Qwen3-TTS-12Hz-1.7B-Base",
        _ => throw new ArgumentException($"unknown preset '{preset}'; expected one of {string.Join(", ", Names)} or a path to a config.json"),
    };

    /// <summary>A fresh, mutable copy of the preset's config.json.</summary>
    public static JsonObject ConfigJson(string preset)
    {
        var json = (JsonObject)JsonNode.Parse(ReadReference($"{ReferenceCheckpoint(preset)}/config.json"))!;
        if (preset == "tiny") Shrink(json);
        return json;
    }

    public static Qwen3TtsConfig Config(string preset) => Qwen3TtsConfig.Parse(ConfigJson(preset), $"preset '{preset}'");

    /// <summary>Shrinks widths and depths; keeps vocabularies, special ids, codebook count and layout.
    /// The code predictor stays narrower than the talker so small_to_mtp_projection exists, as in 1.7B.</summary>
    static void Shrink(JsonObject json)
    {
        json["tts_model_size"] = "tiny";
        json["speaker_encoder_config"] = new JsonObject
        {
            ["mel_dim"] = 128,
            ["enc_dim"] = 64,
            ["enc_channels"] = new JsonArray(32, 32, 32, 32, 96),
            ["enc_kernel_sizes"] = new JsonArray(5, 3, 3, 3, 1),
            ["enc_dilations"] = new JsonArray(1, 2, 3, 4, 1),
            ["enc_attention_channels"] = 16,
            ["enc_res2net_scale"] = 8,
            ["enc_se_channels"] = 16,
            ["sample_rate"] = 24000,
        };
        var talker = json["talker_config"]!.AsObject();
        talker["hidden_size"] = 64;
        talker["intermediate_size"] = 128;
        talker["num_hidden_layers"] = 2;
        talker["num_attention_heads"] = 4;
        talker["num_key_value_heads"] = 2;
        talker["head_dim"] = 16;
        talker["text_hidden_size"] = 32;
        // head_dim / 2 = 8 rotary frequencies split over (temporal, height, width) as the real 24/20/20 of 64.
        talker["rope_scaling"]!["mrope_section"] = new JsonArray(4, 2, 2);
        var predictor = talker["code_predictor_config"]!.AsObject();
        predictor["hidden_size"] = 32;
        predictor["intermediate_size"] = 64;
        predictor["num_hidden_layers"] = 2;
        predictor["num_attention_heads"] = 4;
        predictor["num_key_value_heads"] = 2;
        predictor["head_dim"] = 8;
        predictor["layer_types"] = new JsonArray("full_attention", "full_attention");
    }

    /// <summary>Text of an embedded reference file, e.g. "qwen3-text-tokenizer/vocab.json".</summary>
    public static string ReadReference(string relativePath)
    {
        using var stream = OpenReference(relativePath);
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    public static Stream OpenReference(string relativePath) =>
        typeof(Presets).Assembly.GetManifestResourceStream("reference/" + relativePath)
        ?? throw new FileNotFoundException($"embedded reference file '{relativePath}' is missing from {typeof(Presets).Assembly.GetName().Name}");
}
