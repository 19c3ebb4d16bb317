using System.Text.Json.Nodes;
using Qwen3Tts.Model.Codec;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Tests.Model;

namespace Qwen3Tts.Tests.Codec;

public class SpeechTokenizerConfigTests
{
    [Theory]
    [MemberData(nameof(ConfigTests.ReferenceConfigs), MemberType = typeof(ConfigTests))]
    public void Every_released_speech_tokenizer_config_parses(string checkpoint)
    {
        var c = SpeechTokenizerConfig.Load(Path.Combine(ConfigTests.ReferenceDir, checkpoint, "speech_tokenizer", "config.json"));
        Assert.Equal((16, 24000, 24000, 1920, 1920), (c.EncoderValidNumQuantizers, c.InputSampleRate, c.OutputSampleRate, c.EncodeDownsampleRate, c.DecodeUpsampleRate));

        var e = c.Encoder;
        Assert.Equal((512, 64, 8, 8, 8, 64, 2048), (e.HiddenSize, e.NumFilters, e.NumHiddenLayers, e.NumAttentionHeads, e.NumKeyValueHeads, e.HeadDim, e.IntermediateSize));
        Assert.Equal((32, 1, 2048, 256, 256), (e.NumQuantizers, e.NumSemanticQuantizers, e.CodebookSize, e.CodebookDim, e.VectorQuantizationHiddenDimension));
        Assert.Equal(new[] { 8, 6, 5, 4 }, e.UpsamplingRatios);
        Assert.Equal(("gelu", "constant", 250, 1e-5), (e.HiddenAct, e.PadMode, e.SlidingWindow, e.NormEps));
        // 24000 / (8*6*5*4) = 25 Hz out of the SEANet; the stride-2 downsample (kernel 2 * 25 / 12.5) halves it.
        Assert.Equal((960, 25, 1920, 12.5, true, 4), (e.HopLength, e.EncodecFrameRate, e.FrameSize, e.FrameRate, e.HasDownsample, e.DownsampleKernel));

        var d = c.Decoder;
        Assert.Equal((1024, 512, 2048, 1536, 512, 1024), (d.LatentDim, d.CodebookDim, d.CodebookSize, d.DecoderDim, d.HiddenSize, d.IntermediateSize));
        Assert.Equal((64, 16, 8, 16, 16, 1, 72, 4096, 512), (d.HeadDim, d.NumAttentionHeads, d.NumHiddenLayers, d.NumKeyValueHeads, d.NumQuantizers,
            d.NumSemanticQuantizers, d.SlidingWindow, d.SemanticCodebookSize, d.VectorQuantizationHiddenDimension));
        Assert.Equal(new[] { 8, 5, 4, 3 }, d.UpsampleRates);
        Assert.Equal(new[] { 2, 2 }, d.UpsamplingRatios);
        Assert.Equal(("silu", 1e-5, 10000.0, 0.01), (d.HiddenAct, d.RmsNormEps, d.RopeTheta, d.LayerScaleInitialScale));
        // 2*2 (ConvNeXt upsamplers) * 8*5*4*3 (vocoder) = 1920 samples a frame; 1536 / 2^4 = 96 output channels.
        Assert.Equal((1920, 256, 96), (d.TotalUpsample, d.QuantizerDimension, d.OutputDim));
    }

    [Fact]
    public void The_three_released_speech_tokenizers_are_the_same_file()
    {
        var texts = ConfigTests.ReferenceConfigs().Select(a => File.ReadAllText(Path.Combine(ConfigTests.ReferenceDir, (string)a[0], "speech_tokenizer", "config.json"))).Distinct().ToList();
        Assert.Single(texts);
    }

    [Fact]
    public void Tiny_preset_keeps_the_frame_layout_and_codebooks()
    {
        var tiny = SpeechTokenizerConfig.Preset("tiny");
        var real = SpeechTokenizerConfig.Preset("1.7b");
        Assert.Equal(real.Encoder.FrameSize, tiny.Encoder.FrameSize);
        Assert.Equal(real.Decoder.TotalUpsample, tiny.Decoder.TotalUpsample);
        Assert.Equal((real.Encoder.NumQuantizers, real.EncoderValidNumQuantizers, real.Encoder.CodebookSize, real.Decoder.CodebookSize),
            (tiny.Encoder.NumQuantizers, tiny.EncoderValidNumQuantizers, tiny.Encoder.CodebookSize, tiny.Decoder.CodebookSize));
        Assert.True(tiny.Encoder.HiddenSize < 64 && tiny.Decoder.HiddenSize < 64 && tiny.Decoder.DecoderDim < 64);
        Assert.Equal(SpeechTokenizerConfig.Preset("0.6b").Json.ToJsonString(), real.Json.ToJsonString());
    }

    [Theory]
    [InlineData("encoder_config", "hidden_act", "\"relu\"", "'encoder_config.hidden_act' is 'relu'")]
    [InlineData("encoder_config", "use_causal_conv", "false", "'encoder_config.use_causal_conv' is false")]
    [InlineData("encoder_config", "codebook_dim", "128", "'encoder_config.codebook_dim' is 128")]
    [InlineData("encoder_config", "num_filters", "\"x\"", "'encoder_config.num_filters' must be an integer")]
    [InlineData("decoder_config", "codebook_dim", "511", "'decoder_config.codebook_dim' is 511")]
    [InlineData("decoder_config", "num_semantic_quantizers", "2", "'decoder_config.num_semantic_quantizers' is 2")]
    [InlineData("decoder_config", "decoder_dim", "100", "'decoder_config.decoder_dim' is 100")]
    [InlineData("decoder_config", "upsample_rates", "[8, 5, 4]", "'decode_upsample_rate' is 1920")]
    [InlineData("", "encoder_valid_num_quantizers", "33", "'encoder_valid_num_quantizers' is 33")]
    [InlineData("", "encode_downsample_rate", "960", "'encode_downsample_rate' is 960")]
    public void Bad_values_name_the_file_and_key(string section, string key, string value, string expected)
    {
        var json = SpeechTokenizerConfig.ConfigJson("1.7b");
        var target = section.Length == 0 ? json : json[section]!.AsObject();
        target[key] = JsonNode.Parse(value);
        var e = Assert.Throws<ConfigException>(() => SpeechTokenizerConfig.Parse(json, "st/config.json"));
        Assert.StartsWith("st/config.json: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Decoder_codebook_dim_is_required()
    {
        var json = SpeechTokenizerConfig.ConfigJson("1.7b");
        json["decoder_config"]!.AsObject().Remove("codebook_dim");
        var e = Assert.Throws<ConfigException>(() => SpeechTokenizerConfig.Parse(json, "st/config.json"));
        Assert.Contains("'decoder_config.codebook_dim' is missing", e.Message);
    }
}
