using Qwen3Tts.Model.Codec;
using Qwen3Tts.Tests.Model;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Codec;

/// <summary>The decoder built from the released speech_tokenizer/config.json on the meta device (nothing allocated)
/// has the released checkpoint's tensor names and shapes under <c>decoder.</c>; the total is derived by hand from
/// the architecture.</summary>
public class DecoderLayoutTests
{
    public static IEnumerable<object[]> Checkpoints() =>
        Directory.GetDirectories(ConfigTests.ReferenceDir, "Qwen3-TTS-*").Select(d => new object[] { Path.GetFileName(d) });

    static DecoderConfig Released(string checkpoint) =>
        SpeechTokenizerConfig.Load(Path.Combine(ConfigTests.ReferenceDir, checkpoint, "speech_tokenizer", "config.json")).Decoder;

    [Theory]
    [MemberData(nameof(Checkpoints))]
    public void Released_config_names_shapes_and_count(string checkpoint)
    {
        var config = Released(checkpoint);
        using var decoder = new SpeechTokenizerDecoder(config, new Device("meta"));
        var t = decoder.Layout("decoder.").ToDictionary(e => e.Name, e => e.Shape);

        // 271 tensors: 93 pre-transformer (11 per layer × 8 + norm + 2 projections with bias), 36 quantizer
        // (2 × 2 projections + 16 × 2 codebook statistics), 2 pre_conv, 22 upsample (2 × (transconv 2 + ConvNeXt 9)),
        // 118 decoder (conv 2, 4 blocks × 28, SnakeBeta 2, conv 2).
        Assert.Equal(271, t.Count);

        Assert.Equal(new long[] { 2048, 256 }, t["decoder.quantizer.rvq_first.vq.layers.0._codebook.embedding_sum"]);
        Assert.Equal(new long[] { 2048 }, t["decoder.quantizer.rvq_first.vq.layers.0._codebook.cluster_usage"]);
        Assert.Equal(new long[] { 2048, 256 }, t["decoder.quantizer.rvq_rest.vq.layers.14._codebook.embedding_sum"]);
        Assert.False(t.ContainsKey("decoder.quantizer.rvq_rest.vq.layers.15._codebook.embedding_sum"));
        Assert.False(t.ContainsKey("decoder.quantizer.rvq_first.vq.layers.1._codebook.embedding_sum"));
        Assert.Equal(new long[] { 256, 512, 1 }, t["decoder.quantizer.rvq_first.input_proj.weight"]);
        Assert.Equal(new long[] { 512, 256, 1 }, t["decoder.quantizer.rvq_rest.output_proj.weight"]);
        Assert.Equal(new long[] { 1024, 512, 3 }, t["decoder.pre_conv.conv.weight"]);
        Assert.Equal(new long[] { 1024 }, t["decoder.pre_conv.conv.bias"]);

        Assert.Equal(new long[] { 512, 1024 }, t["decoder.pre_transformer.input_proj.weight"]);
        Assert.Equal(new long[] { 1024, 512 }, t["decoder.pre_transformer.output_proj.weight"]);
        Assert.Equal(new long[] { 1024 }, t["decoder.pre_transformer.output_proj.bias"]);
        Assert.Equal(new long[] { 1024, 512 }, t["decoder.pre_transformer.layers.0.self_attn.q_proj.weight"]); // 16 heads × head_dim 64
        Assert.Equal(new long[] { 512, 1024 }, t["decoder.pre_transformer.layers.7.self_attn.o_proj.weight"]);
        Assert.False(t.ContainsKey("decoder.pre_transformer.layers.0.self_attn.q_proj.bias"));
        Assert.False(t.ContainsKey("decoder.pre_transformer.layers.0.self_attn.q_norm.weight"));
        Assert.Equal(new long[] { 1024, 512 }, t["decoder.pre_transformer.layers.3.mlp.gate_proj.weight"]);
        Assert.Equal(new long[] { 512 }, t["decoder.pre_transformer.layers.3.self_attn_layer_scale.scale"]);
        Assert.Equal(new long[] { 512 }, t["decoder.pre_transformer.layers.3.mlp_layer_scale.scale"]);
        Assert.Equal(new long[] { 512 }, t["decoder.pre_transformer.layers.3.post_attention_layernorm.weight"]);
        Assert.Equal(new long[] { 512 }, t["decoder.pre_transformer.norm.weight"]);

        Assert.Equal(new long[] { 1024, 1024, 2 }, t["decoder.upsample.1.0.conv.weight"]); // ConvTranspose1d: [in, out, k]
        Assert.Equal(new long[] { 1024, 1, 7 }, t["decoder.upsample.0.1.dwconv.conv.weight"]);
        Assert.Equal(new long[] { 1024 }, t["decoder.upsample.0.1.norm.bias"]);
        Assert.Equal(new long[] { 4096, 1024 }, t["decoder.upsample.0.1.pwconv1.weight"]);
        Assert.Equal(new long[] { 1024, 4096 }, t["decoder.upsample.0.1.pwconv2.weight"]);
        Assert.Equal(new long[] { 1024 }, t["decoder.upsample.1.1.gamma"]);

        Assert.Equal(new long[] { 1536, 1024, 7 }, t["decoder.decoder.0.conv.weight"]);
        Assert.Equal(new long[] { 1536 }, t["decoder.decoder.1.block.0.alpha"]);
        Assert.Equal(new long[] { 1536, 768, 16 }, t["decoder.decoder.1.block.1.conv.weight"]); // kernel 2·8, stride 8
        Assert.Equal(new long[] { 768, 768, 7 }, t["decoder.decoder.1.block.2.conv1.conv.weight"]);
        Assert.Equal(new long[] { 768, 768, 1 }, t["decoder.decoder.1.block.4.conv2.conv.weight"]);
        Assert.Equal(new long[] { 768 }, t["decoder.decoder.1.block.3.act2.beta"]);
        Assert.Equal(new long[] { 192, 96, 6 }, t["decoder.decoder.4.block.1.conv.weight"]); // kernel 2·3
        Assert.Equal(new long[] { 96 }, t["decoder.decoder.5.beta"]);
        Assert.Equal(new long[] { 1, 96, 7 }, t["decoder.decoder.6.conv.weight"]);
        Assert.Equal(new long[] { 1 }, t["decoder.decoder.6.conv.bias"]);

        Assert.Equal(ExpectedCount(config), t.Values.Sum(s => s.Aggregate(1L, (a, b) => a * b)));
        Assert.Equal(1920, decoder.TotalUpsample);
    }

    /// <summary>The module's listing equals the name/shape list codec-enc derived from the reference module tree
    /// (SpeechTokenizerLayout, written before this module existed), name for name with the same shapes. Order aside:
    /// like PyTorch's state_dict, a module lists its own parameters before its children's (a ConvNeXt block's gamma
    /// comes before dwconv), where the list puts gamma last; safetensors files sort names anyway.</summary>
    [Theory]
    [InlineData("tiny")]
    [InlineData("1.7b")]
    public void Module_layout_equals_the_independently_derived_list(string preset)
    {
        var config = SpeechTokenizerConfig.Preset(preset).Decoder;
        using var decoder = new SpeechTokenizerDecoder(config, new Device("meta"));
        var module = decoder.Layout("decoder.").OrderBy(e => e.Name, StringComparer.Ordinal).ToList();
        var derived = SpeechTokenizerLayout.DecoderTensors(config).OrderBy(e => e.Name, StringComparer.Ordinal).ToList();
        Assert.Equal(derived.Select(e => e.Name), module.Select(e => e.Name));
        Assert.Equal(derived.Select(e => string.Join("x", e.Shape)), module.Select(e => string.Join("x", e.Shape)));
    }

    [Fact]
    public void Released_total_is_114_323_137()
    {
        // The number the formula gives for the released config, written out so a change to the formula shows.
        Assert.Equal(114_323_137L, ExpectedCount(Released("Qwen3-TTS-12Hz-1.7B-Base")));
    }

    /// <summary>Parameter count from the architecture description alone.</summary>
    public static long ExpectedCount(DecoderConfig c)
    {
        long cd = c.CodebookDim, d = cd / 2, bins = c.CodebookSize, lat = c.LatentDim, h = c.HiddenSize;
        long quantizer = 2 * (cd * d + d * cd) + c.NumQuantizers * (bins + bins * d);
        long preConv = cd * lat * 3 + lat;
        long layer = h * c.NumAttentionHeads * c.HeadDim + 2 * h * c.NumKeyValueHeads * c.HeadDim + c.NumAttentionHeads * c.HeadDim * h // q, k, v, o
            + 3 * h * c.IntermediateSize + 2 * h + 2 * h;                                                                             // mlp, 2 norms, 2 layer scales
        long transformer = c.NumHiddenLayers * layer + h + (lat * h + h) + (h * lat + lat);
        long upsample = c.UpsamplingRatios.Sum(f =>
            lat * lat * f + lat                                  // transposed conv
            + lat * 7 + lat + 2 * lat                            // depthwise conv, LayerNorm
            + lat * 4 * lat + 4 * lat + 4 * lat * lat + lat + lat); // pwconv1, pwconv2, gamma
        long decoder = lat * c.DecoderDim * 7 + c.DecoderDim;
        long width = c.DecoderDim;
        foreach (int r in c.UpsampleRates)
        {
            long o = width / 2;
            decoder += 2 * width + width * o * 2 * r + o;                 // SnakeBeta, transposed conv (kernel 2r)
            decoder += 3 * (2 * o + o * o * 7 + o + 2 * o + o * o + o);   // residual units: snake, conv 7, snake, conv 1
            width = o;
        }
        decoder += 2 * width + width * 7 + 1;                             // SnakeBeta, conv to one channel
        return quantizer + preConv + transformer + upsample + decoder;
    }
}
