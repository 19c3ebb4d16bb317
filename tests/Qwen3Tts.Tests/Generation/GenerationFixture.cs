using System.Text.Json.Nodes;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Text;

namespace Qwen3Tts.Tests.Generation;

/// <summary>Tiny models (the real vocabularies and special ids, random weights) and the shared text tokenizer.</summary>
static class GenerationFixture
{
    static readonly Lazy<Qwen3TextTokenizer> SharedTokenizer = new(() => Qwen3TextTokenizer.FromEmbeddedReference());

    public static Qwen3TextTokenizer Tokenizer => SharedTokenizer.Value;

    /// <summary>The tiny preset with seeded N(0, std) weights; a larger std than the checkpoints' 0.02 makes attention
    /// far from uniform, so a wrong key or position would show in the outputs.</summary>
    public static Qwen3TtsModel TinyModel(ulong seed = 0, double std = 0.02, Action<JsonObject>? edit = null)
    {
        var json = Presets.ConfigJson("tiny");
        edit?.Invoke(json);
        var model = new Qwen3TtsModel(Qwen3TtsConfig.Parse(json, "tiny (test)"));
        ModelInit.Initialize(model, seed, std);
        model.eval();
        return model;
    }

    /// <summary>Turns the tiny config into a custom_voice one with a plain speaker and a Sichuan-dialect speaker.</summary>
    public static void CustomVoice(JsonObject json)
    {
        json["tts_model_type"] = "custom_voice";
        var talker = json["talker_config"]!.AsObject();
        talker["spk_id"] = new JsonObject { ["amina"] = 3000, ["eric"] = 3001 };
        talker["spk_is_dialect"] = new JsonObject { ["amina"] = false, ["eric"] = "sichuan_dialect" };
        talker["codec_language_id"]!["sichuan_dialect"] = 2062;
    }
}
