using Qwen3Tts.Model.Codec;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Codec;

/// <summary>The released speech tokenizer's layout, built on the meta device (nothing allocated), against counts and
/// shapes worked out by hand from speech_tokenizer/config.json. The released file holds 496 tensors, 225 encoder.*
/// and 271 decoder.*, named as transformers' MimiModel and Qwen3TTSTokenizerV2Decoder register them.</summary>
public class SpeechTokenizerLayoutTests
{
    static readonly SpeechTokenizerConfig Released = SpeechTokenizerConfig.Preset("1.7b");

    static long Count(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);

    [Fact]
    public void Released_encoder_names_shapes_and_parameter_count()
    {
        var t = SpeechTokenizerLayout.EncoderTensors(Released.Encoder).ToDictionary(e => e.Name, e => e.Shape);
        // SEANet: strides 4, 5, 6, 8 (reversed upsampling_ratios) at 64, 128, 256, 512 channels; ELUs take indices.
        Assert.Equal(new long[] { 64, 1, 7 }, t["encoder.encoder.layers.0.conv.weight"]);
        Assert.Equal(new long[] { 32, 64, 3 }, t["encoder.encoder.layers.1.block.1.conv.weight"]);
        Assert.Equal(new long[] { 64, 32, 1 }, t["encoder.encoder.layers.1.block.3.conv.weight"]);
        Assert.Equal(new long[] { 128, 64, 8 }, t["encoder.encoder.layers.3.conv.weight"]);
        Assert.Equal(new long[] { 256, 128, 10 }, t["encoder.encoder.layers.6.conv.weight"]);
        Assert.Equal(new long[] { 512, 256, 12 }, t["encoder.encoder.layers.9.conv.weight"]);
        Assert.Equal(new long[] { 1024, 512, 16 }, t["encoder.encoder.layers.12.conv.weight"]);
        Assert.Equal(new long[] { 512, 1024, 3 }, t["encoder.encoder.layers.14.conv.weight"]);
        Assert.Equal(new long[] { 512 }, t["encoder.encoder.layers.14.conv.bias"]);
        Assert.Equal(new long[] { 512, 512 }, t["encoder.encoder_transformer.layers.7.self_attn.q_proj.weight"]);
        Assert.Equal(new long[] { 2048, 512 }, t["encoder.encoder_transformer.layers.0.mlp.fc1.weight"]);
        Assert.Equal(new long[] { 512 }, t["encoder.encoder_transformer.layers.0.input_layernorm.bias"]);
        Assert.Equal(new long[] { 512, 512, 4 }, t["encoder.downsample.conv.weight"]);
        Assert.Equal(new long[] { 256, 512, 1 }, t["encoder.quantizer.semantic_residual_vector_quantizer.input_proj.weight"]);
        Assert.Equal(new long[] { 512, 256, 1 }, t["encoder.quantizer.acoustic_residual_vector_quantizer.output_proj.weight"]);
        Assert.Equal(new long[] { 2048, 256 }, t["encoder.quantizer.acoustic_residual_vector_quantizer.layers.30.codebook.embed_sum"]);
        Assert.Equal(new long[] { 2048 }, t["encoder.quantizer.semantic_residual_vector_quantizer.layers.0.codebook.cluster_usage"]);
        Assert.Equal(new long[] { 1 }, t["encoder.quantizer.semantic_residual_vector_quantizer.layers.0.codebook.initialized"]);
        Assert.False(t.ContainsKey("encoder.quantizer.acoustic_residual_vector_quantizer.layers.31.codebook.embed_sum"));
        Assert.False(t.ContainsKey("encoder.downsample.conv.bias"));
        Assert.DoesNotContain(t.Keys, k => k.StartsWith("encoder.decoder") || k.StartsWith("encoder.upsample"));
        Assert.DoesNotContain(t.Keys, k => k.Contains("inv_freq"));

        // 2 (first conv) + 4 stages x (2 residual convs + 1 stride conv) x 2 + 2 (last conv) = 28;
        // transformer 8 x 12; downsample 1; quantizers 2 x 2 projections + 32 codebooks x 3 buffers.
        Assert.Equal(28 + 8 * 12 + 1 + 4 + 32 * 3, t.Count);
        Assert.Equal(225, t.Count);

        long seanet = 64 * 7 + 64;
        long c = 64;
        foreach (long r in new long[] { 4, 5, 6, 8 })
        {
            seanet += c * (c / 2) * 3 + c / 2 + (c / 2) * c + c; // residual block
            seanet += c * (2 * c) * (2 * r) + 2 * c;             // stride conv
            c *= 2;
        }
        seanet += 1024 * 512 * 3 + 512;
        long layer = 4 * 512 * 512 + 2 * 512 * 2048 + 4 * 512 + 2 * 512;
        long quantizer = 2 * (512 * 256 * 2) + 32 * (2048 * 256 + 2048 + 1);
        Assert.Equal(seanet + 8 * layer + 512 * 512 * 4 + quantizer, t.Values.Sum(Count));
    }

    [Fact]
    public void Released_decoder_names_shapes_and_counts()
    {
        var list = SpeechTokenizerLayout.DecoderTensors(Released.Decoder);
        var t = list.ToDictionary(e => e.Name, e => e.Shape);
        Assert.Equal(list.Count, t.Count); // no name twice
        // 16 heads x 64 = 1024 attention width over a 512 hidden size.
        Assert.Equal(new long[] { 1024, 512 }, t["decoder.pre_transformer.layers.0.self_attn.q_proj.weight"]);
        Assert.Equal(new long[] { 512, 1024 }, t["decoder.pre_transformer.layers.7.self_attn.o_proj.weight"]);
        Assert.Equal(new long[] { 1024, 512 }, t["decoder.pre_transformer.layers.0.mlp.gate_proj.weight"]);
        Assert.Equal(new long[] { 512, 1024 }, t["decoder.pre_transformer.input_proj.weight"]);
        Assert.Equal(new long[] { 1024 }, t["decoder.pre_transformer.output_proj.bias"]);
        Assert.Equal(new long[] { 256, 512, 1 }, t["decoder.quantizer.rvq_first.input_proj.weight"]);
        Assert.Equal(new long[] { 2048, 256 }, t["decoder.quantizer.rvq_rest.vq.layers.14._codebook.embedding_sum"]);
        Assert.False(t.ContainsKey("decoder.quantizer.rvq_rest.vq.layers.15._codebook.embedding_sum"));
        Assert.Equal(new long[] { 1024, 512, 3 }, t["decoder.pre_conv.conv.weight"]);
        Assert.Equal(new long[] { 1024, 1024, 2 }, t["decoder.upsample.1.0.conv.weight"]);
        Assert.Equal(new long[] { 1024, 1, 7 }, t["decoder.upsample.0.1.dwconv.conv.weight"]);
        Assert.Equal(new long[] { 4096, 1024 }, t["decoder.upsample.0.1.pwconv1.weight"]);
        Assert.Equal(new long[] { 1536, 1024, 7 }, t["decoder.decoder.0.conv.weight"]);
        // Vocoder blocks halve 1536 four times; transposed-conv kernels are twice the rates 8, 5, 4, 3.
        Assert.Equal(new long[] { 1536, 768, 16 }, t["decoder.decoder.1.block.1.conv.weight"]);
        Assert.Equal(new long[] { 768, 384, 10 }, t["decoder.decoder.2.block.1.conv.weight"]);
        Assert.Equal(new long[] { 384, 192, 8 }, t["decoder.decoder.3.block.1.conv.weight"]);
        Assert.Equal(new long[] { 192, 96, 6 }, t["decoder.decoder.4.block.1.conv.weight"]);
        Assert.Equal(new long[] { 96, 96, 7 }, t["decoder.decoder.4.block.4.conv1.conv.weight"]);
        Assert.Equal(new long[] { 96 }, t["decoder.decoder.5.beta"]);
        Assert.Equal(new long[] { 1, 96, 7 }, t["decoder.decoder.6.conv.weight"]);
        // decoder: 2 + 4 x (2 + 2 + 3 x 8) + 2 + 2 = 118; pre_conv 2; transformer 8 x 11 + 5 = 93;
        // quantizer (2 + 2) + (2 + 15 x 2) = 36; upsample 2 x 11 = 22.
        Assert.Equal(118 + 2 + 93 + 36 + 22, list.Count);
        Assert.Equal(496, SpeechTokenizerLayout.AllTensors(Released).Count);
    }

    [Fact]
    public void Tiny_layout_is_the_same_names_with_small_shapes()
    {
        var tiny = SpeechTokenizerConfig.Preset("tiny");
        var real = SpeechTokenizerLayout.AllTensors(Released).Select(e => e.Name).ToList();
        var small = SpeechTokenizerLayout.AllTensors(tiny);
        // Same names, minus transformer layers 2..7 (tiny has 2 of the 8 in each transformer).
        Assert.Equal(real.Where(n => !System.Text.RegularExpressions.Regex.IsMatch(n, @"(encoder_transformer|pre_transformer)\.layers\.[2-7]\.")).ToList(),
            small.Select(e => e.Name).ToList());
        Assert.True(small.Sum(e => Count(e.Shape)) < 3_000_000);
    }

    [Fact]
    public void Meta_device_allocates_nothing_and_matches_a_real_build()
    {
        var tiny = SpeechTokenizerConfig.Preset("tiny");
        using var meta = new Qwen3TtsTokenizerV2Encoder(tiny.Encoder, new Device("meta"));
        using var real = new Qwen3TtsTokenizerV2Encoder(tiny.Encoder);
        Assert.Equal(real.state_dict().Select(kv => (kv.Key, string.Join(",", kv.Value.shape))),
            meta.state_dict().Select(kv => (kv.Key, string.Join(",", kv.Value.shape))));
        Assert.All(meta.state_dict().Values, v => Assert.Equal(DeviceType.META, v.device_type));
    }
}
