using System.Text.Json.Nodes;
using Qwen3Tts.Model.Config;

namespace Qwen3Tts.Tests.Model;

public class ConfigTests
{
    public static string ReferenceDir => Path.Combine(TestPaths.RepoRoot, "assets", "reference");

    public static IEnumerable<object[]> ReferenceConfigs() =>
        Directory.GetDirectories(ReferenceDir, "Qwen3-TTS-*").Select(d => new object[] { Path.GetFileName(d) });

    [Theory]
    [MemberData(nameof(ReferenceConfigs))]
    public void Every_released_config_parses(string checkpoint)
    {
        var c = Qwen3TtsConfig.Load(Path.Combine(ReferenceDir, checkpoint, "config.json"));
        Assert.Equal(151671, c.TtsPadTokenId);
        Assert.Equal(151672, c.TtsBosTokenId);
        Assert.Equal(151673, c.TtsEosTokenId);
        Assert.Equal(3072, c.Talker.VocabSize);
        Assert.Equal(16, c.Talker.NumCodeGroups);
        Assert.Equal(new[] { 24, 20, 20 }, c.Talker.RopeScaling.MropeSection);
        Assert.True(c.Talker.RopeScaling.Interleaved);
        Assert.Equal(2148, c.Talker.CodecPadId);
        Assert.Equal(2149, c.Talker.CodecBosId);
        Assert.Equal(2150, c.Talker.CodecEosTokenId);
        Assert.Equal((2154, 2155, 2156, 2157), (c.Talker.CodecThinkId, c.Talker.CodecNothinkId, c.Talker.CodecThinkBosId, c.Talker.CodecThinkEosId));
        Assert.Equal(2050, c.Talker.CodecLanguageId["english"]);
        Assert.Equal(2048, c.Talker.CodePredictor.VocabSize);
        Assert.Equal(1_000_000, c.Talker.RopeTheta);
        Assert.Equal(1_000_000, c.Talker.CodePredictor.RopeTheta);
    }

    [Fact]
    public void Sizes_of_the_released_base_models()
    {
        var big = Presets.Config("1.7b");
        Assert.Equal(("base", "1b7"), (big.TtsModelType, big.TtsModelSize));
        Assert.Equal((2048, 28, 16, 8, 128, 6144), (big.Talker.HiddenSize, big.Talker.NumHiddenLayers, big.Talker.NumAttentionHeads, big.Talker.NumKeyValueHeads, big.Talker.HeadDim, big.Talker.IntermediateSize));
        Assert.Equal((1024, 5, 3072), (big.Talker.CodePredictor.HiddenSize, big.Talker.CodePredictor.NumHiddenLayers, big.Talker.CodePredictor.IntermediateSize));
        Assert.Equal(2048, big.SpeakerEncoder.EncDim);
        Assert.Equal(new[] { 512, 512, 512, 512, 1536 }, big.SpeakerEncoder.EncChannels);

        var small = Presets.Config("0.6b");
        Assert.Equal(("base", "0b6"), (small.TtsModelType, small.TtsModelSize));
        Assert.Equal((1024, 3072, 2048), (small.Talker.HiddenSize, small.Talker.IntermediateSize, small.Talker.TextHiddenSize));
        Assert.Equal(1024, small.SpeakerEncoder.EncDim);
    }

    [Fact]
    public void Custom_voice_speakers_and_dialects()
    {
        var c = Qwen3TtsConfig.Load(Path.Combine(ReferenceDir, "Qwen3-TTS-12Hz-1.7B-CustomVoice", "config.json"));
        Assert.Equal("custom_voice", c.TtsModelType);
        Assert.False(c.HasSpeakerEncoder);
        Assert.Equal(3066, c.Talker.SpkId["serena"]);
        Assert.Null(c.Talker.SpkIsDialect["serena"]);
        Assert.Equal("sichuan_dialect", c.Talker.SpkIsDialect["eric"]);
        Assert.Equal(2062, c.Talker.CodecLanguageId["sichuan_dialect"]);
    }

    [Fact]
    public void Tiny_preset_keeps_vocabularies_and_special_ids()
    {
        var tiny = Presets.Config("tiny");
        var big = Presets.Config("1.7b");
        Assert.Equal(big.Talker.TextVocabSize, tiny.Talker.TextVocabSize);
        Assert.Equal(big.Talker.VocabSize, tiny.Talker.VocabSize);
        Assert.Equal(big.Talker.CodePredictor.VocabSize, tiny.Talker.CodePredictor.VocabSize);
        Assert.Equal(big.Talker.CodecLanguageId, tiny.Talker.CodecLanguageId);
        Assert.Equal((big.TtsPadTokenId, big.TtsBosTokenId, big.TtsEosTokenId), (tiny.TtsPadTokenId, tiny.TtsBosTokenId, tiny.TtsEosTokenId));
        Assert.True(tiny.Talker.HiddenSize < big.Talker.HiddenSize);
        Assert.Equal(tiny.Talker.HiddenSize, tiny.SpeakerEncoder.EncDim);
    }

    [Theory]
    [InlineData("talker_config", "hidden_size", "\"wide\"", "talker_config.hidden_size")]
    [InlineData("talker_config", "num_key_value_heads", "5", "talker_config.num_key_value_heads")]
    [InlineData("talker_config", "codec_pad_id", "9999", "talker_config.codec_pad_id")]
    [InlineData("talker_config.rope_scaling", "mrope_section", "[24, 20, 21]", "talker_config.rope_scaling.mrope_section")]
    [InlineData("talker_config.code_predictor_config", "num_code_groups", "8", "code_predictor_config.num_code_groups")]
    [InlineData("", "tts_pad_token_id", "null", "tts_pad_token_id")]
    [InlineData("", "tts_model_type", "\"other\"", "tts_model_type")]
    [InlineData("speaker_encoder_config", "enc_dim", "1024", "speaker_encoder_config.enc_dim")]
    public void A_malformed_config_names_the_key(string parent, string key, string value, string expectedInMessage)
    {
        var json = Presets.ConfigJson("1.7b");
        JsonObject target = json;
        if (parent.Length > 0) foreach (var part in parent.Split('.')) target = target[part]!.AsObject();
        target[key] = JsonNode.Parse(value);
        var e = Assert.Throws<ConfigException>(() => Qwen3TtsConfig.Parse(json, "bad/config.json"));
        Assert.Contains(expectedInMessage, e.Message);
        Assert.Contains("bad/config.json", e.Message);
    }

    [Fact]
    public void A_missing_section_and_invalid_json_are_reported()
    {
        var json = Presets.ConfigJson("1.7b");
        json.Remove("talker_config");
        Assert.Contains("'talker_config' is missing", Assert.Throws<ConfigException>(() => Qwen3TtsConfig.Parse(json, "x.json")).Message);
        Assert.Contains("not valid JSON", Assert.Throws<ConfigException>(() => Qwen3TtsConfig.Parse("{\"a\": ", "x.json")).Message);
    }
}
