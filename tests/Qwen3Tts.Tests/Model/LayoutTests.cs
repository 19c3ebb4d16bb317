using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Model;

/// <summary>The module tree reproduces the released checkpoints' state-dict layout. The real configs
/// are built on the meta device, so nothing is allocated; the expected counts are derived by hand
/// from the architecture, independently of the module code.</summary>
public class LayoutTests
{
    static Dictionary<string, long[]> LayoutOf(string preset)
    {
        using var model = new Qwen3TtsModel(Presets.Config(preset), new Device("meta"));
        return model.Layout().ToDictionary(e => e.Name, e => e.Shape);
    }

    [Fact]
    public void The_released_shapes_on_the_meta_device_allocate_no_weights()
    {
        // TorchSharp's own Embedding builds its table on the CPU before moving it: 1.5 GB of tables for 1.7B.
        // Built through Layers.Embeddings, the whole model stays far below one table (the text table is 1.2 GB).
        long before = PeakMemoryReport.ResidentKiB();
        using var model = new Qwen3TtsModel(Presets.Config("1.7b"), new Device("meta"));
        long grown = PeakMemoryReport.ResidentKiB() - before;
        Assert.All(model.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));
        Assert.True(grown < 256 * 1024, $"building the 1.7B layout on meta grew the process by {grown / 1024} MB");
    }

    [Fact]
    public void Released_1_7B_names_and_shapes()
    {
        var t = LayoutOf("1.7b");
        Assert.Equal(new long[] { 151936, 2048 }, t["talker.model.text_embedding.weight"]);
        Assert.Equal(new long[] { 3072, 2048 }, t["talker.model.codec_embedding.weight"]);
        Assert.Equal(new long[] { 2048, 2048 }, t["talker.model.layers.0.self_attn.q_proj.weight"]);
        Assert.Equal(new long[] { 1024, 2048 }, t["talker.model.layers.27.self_attn.k_proj.weight"]);
        Assert.Equal(new long[] { 128 }, t["talker.model.layers.0.self_attn.q_norm.weight"]);
        Assert.Equal(new long[] { 6144, 2048 }, t["talker.model.layers.0.mlp.gate_proj.weight"]);
        Assert.Equal(new long[] { 2048, 6144 }, t["talker.model.layers.0.mlp.down_proj.weight"]);
        Assert.Equal(new long[] { 2048 }, t["talker.model.norm.weight"]);
        Assert.Equal(new long[] { 2048 }, t["talker.text_projection.linear_fc1.bias"]);
        Assert.Equal(new long[] { 2048, 2048 }, t["talker.text_projection.linear_fc2.weight"]);
        Assert.Equal(new long[] { 3072, 2048 }, t["talker.codec_head.weight"]);
        Assert.Equal(new long[] { 2048, 2048 }, t["talker.code_predictor.model.codec_embedding.14.weight"]);
        Assert.Equal(new long[] { 2048, 1024 }, t["talker.code_predictor.lm_head.14.weight"]);
        Assert.Equal(new long[] { 1024, 2048 }, t["talker.code_predictor.small_to_mtp_projection.weight"]);
        Assert.Equal(new long[] { 1024 }, t["talker.code_predictor.small_to_mtp_projection.bias"]);
        Assert.Equal(new long[] { 2048, 1024 }, t["talker.code_predictor.model.layers.4.self_attn.q_proj.weight"]);
        Assert.Equal(new long[] { 2048, 3072, 1 }, t["speaker_encoder.fc.weight"]);
        Assert.Equal(new long[] { 512, 128, 5 }, t["speaker_encoder.blocks.0.conv.weight"]);
        Assert.Equal(new long[] { 64, 64, 3 }, t["speaker_encoder.blocks.1.res2net_block.blocks.0.conv.weight"]);
        Assert.False(t.ContainsKey("talker.model.layers.28.self_attn.q_proj.weight"));
        Assert.False(t.ContainsKey("talker.code_predictor.model.codec_embedding.15.weight"));
        Assert.Equal(ExpectedCount(Presets.Config("1.7b")), t.Values.Sum(s => s.Aggregate(1L, (a, b) => a * b)));
    }

    [Fact]
    public void Released_0_6B_has_no_projection_and_its_own_widths()
    {
        var t = LayoutOf("0.6b");
        Assert.Equal(new long[] { 151936, 2048 }, t["talker.model.text_embedding.weight"]);
        Assert.Equal(new long[] { 1024, 2048 }, t["talker.text_projection.linear_fc2.weight"]); // 2048 text width → 1024 talker width (#120)
        Assert.DoesNotContain(t.Keys, k => k.StartsWith("talker.code_predictor.small_to_mtp_projection"));
        Assert.Equal(new long[] { 2048, 1024 }, t["talker.code_predictor.model.codec_embedding.0.weight"]);
        Assert.Equal(new long[] { 1024, 3072, 1 }, t["speaker_encoder.fc.weight"]);
        Assert.Equal(ExpectedCount(Presets.Config("0.6b")), t.Values.Sum(s => s.Aggregate(1L, (a, b) => a * b)));
    }

    [Fact]
    public void Custom_voice_has_no_speaker_encoder()
    {
        var c = Qwen3TtsConfig.Load(Path.Combine(ConfigTests.ReferenceDir, "Qwen3-TTS-12Hz-1.7B-CustomVoice", "config.json"));
        using var model = new Qwen3TtsModel(c, new Device("meta"));
        var names = model.Layout().Select(e => e.Name).ToList();
        Assert.DoesNotContain(names, n => n.StartsWith("speaker_encoder."));
        Assert.Contains("talker.codec_head.weight", names);
    }

    /// <summary>Parameter count from the architecture description alone.</summary>
    public static long ExpectedCount(Qwen3TtsConfig c)
    {
        static long Layer(long h, long inter, long heads, long kv, long hd) =>
            h * heads * hd + 2 * h * kv * hd + heads * hd * h + 2 * hd // q, k, v, o, q_norm, k_norm
            + 3 * h * inter + 2 * h;                                  // mlp, two layer norms
        var t = c.Talker;
        var p = t.CodePredictor;
        long talker = t.NumHiddenLayers * Layer(t.HiddenSize, t.IntermediateSize, t.NumAttentionHeads, t.NumKeyValueHeads, t.HeadDim)
            + t.HiddenSize + (long)t.VocabSize * t.HiddenSize + (long)t.TextVocabSize * t.TextHiddenSize
            + (long)t.TextHiddenSize * t.TextHiddenSize + t.TextHiddenSize + (long)t.TextHiddenSize * t.HiddenSize + t.HiddenSize
            + (long)t.HiddenSize * t.VocabSize;
        long predictor = p.NumHiddenLayers * Layer(p.HiddenSize, p.IntermediateSize, p.NumAttentionHeads, p.NumKeyValueHeads, p.HeadDim)
            + p.HiddenSize + (p.NumCodeGroups - 1) * ((long)p.VocabSize * t.HiddenSize + (long)p.HiddenSize * p.VocabSize)
            + (p.HiddenSize != t.HiddenSize ? (long)t.HiddenSize * p.HiddenSize + p.HiddenSize : 0);
        long speaker = 0;
        if (c.HasSpeakerEncoder)
        {
            var s = c.SpeakerEncoder;
            long Conv(long i, long o, long k) => i * o * k + o;
            var ch = s.EncChannels;
            speaker += Conv(s.MelDim, ch[0], s.EncKernelSizes[0]);
            for (int i = 1; i < ch.Count - 1; i++)
            {
                long part = ch[i] / s.EncRes2NetScale;
                speaker += Conv(ch[i - 1], ch[i], 1) + (s.EncRes2NetScale - 1) * Conv(part, part, s.EncKernelSizes[i])
                    + Conv(ch[i], ch[i], 1) + Conv(ch[i], s.EncSeChannels, 1) + Conv(s.EncSeChannels, ch[i], 1);
            }
            long last = ch[^1];
            speaker += Conv(last, last, s.EncKernelSizes[^1]); // mfa: declared with enc_channels[-1] inputs (= the concatenated blocks)
            speaker += Conv(last * 3, s.EncAttentionChannels, 1) + Conv(s.EncAttentionChannels, last, 1);
            speaker += Conv(last * 2, s.EncDim, 1);
        }
        return talker + predictor + speaker;
    }
}
