using System.Text.Json.Nodes;
using Qwen3Tts.Cli.Commands;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Model;

public class ModelDirectoryTests : CleansTempDirs
{
    static readonly string[] ReleasedFiles =
        { "config.json", "generation_config.json", "preprocessor_config.json", "tokenizer_config.json", "vocab.json", "merges.txt", "model.safetensors" };

    [Fact]
    public void Init_model_writes_the_released_layout_and_loads_back_strictly()
    {
        string dir = TestPaths.NewTempDir("init");
        var config = ModelDirectory.CreateRandom(dir, "tiny", seed: 7, ScalarType.Float32);
        foreach (var f in ReleasedFiles) Assert.True(File.Exists(Path.Combine(dir, f)), f);
        Assert.Equal(Presets.ReadReference("qwen3-text-tokenizer/merges.txt"), File.ReadAllText(Path.Combine(dir, "merges.txt")));

        var report = ModelInspector.Inspect(dir);
        Assert.False(report.LayoutOnly);
        Assert.True(report.IsValid);
        Assert.Equal(LayoutTests.ExpectedCount(config), report.Total);

        using var scope = NewDisposeScope();
        using var model = ModelDirectory.Load(dir);
        var norm = model.named_parameters().First(p => p.name == "talker.model.norm.weight").parameter;
        Assert.True(norm.eq(1).all().item<bool>()); // RMSNorm scales start at one
        var head = model.named_parameters().First(p => p.name == "talker.codec_head.weight").parameter;
        Assert.InRange(head.std().item<float>(), 0.018, 0.022); // N(0, initializer_range = 0.02)
        var bias = model.named_parameters().First(p => p.name == "talker.text_projection.linear_fc1.bias").parameter;
        Assert.True(bias.eq(0).all().item<bool>());
    }

    [Fact]
    public void Same_seed_same_bytes_other_seed_other_weights()
    {
        string a = TestPaths.NewTempDir("seed-a"), b = TestPaths.NewTempDir("seed-b"), c = TestPaths.NewTempDir("seed-c");
        ModelDirectory.CreateRandom(a, "tiny", 3, ScalarType.Float32);
        ModelDirectory.CreateRandom(b, "tiny", 3, ScalarType.Float32);
        ModelDirectory.CreateRandom(c, "tiny", 4, ScalarType.Float32);
        byte[] fa = File.ReadAllBytes(Path.Combine(a, "model.safetensors"));
        Assert.Equal(fa, File.ReadAllBytes(Path.Combine(b, "model.safetensors")));
        Assert.NotEqual(fa, File.ReadAllBytes(Path.Combine(c, "model.safetensors")));
    }

    [Fact]
    public void Bf16_init_stores_bf16_equal_to_the_rounded_fp32_draw()
    {
        string f32 = TestPaths.NewTempDir("f32"), b16 = TestPaths.NewTempDir("b16");
        ModelDirectory.CreateRandom(f32, "tiny", 5, ScalarType.Float32);
        ModelDirectory.CreateRandom(b16, "tiny", 5, ScalarType.BFloat16);
        using var files32 = CheckpointFiles.Open(f32);
        using var files16 = CheckpointFiles.Open(b16);
        Assert.All(files16.Entries, e => Assert.Equal("BF16", e.Dtype));
        using var scope = NewDisposeScope();
        var w32 = files32.Read("talker.model.layers.0.self_attn.q_proj.weight");
        var w16 = files16.Read("talker.model.layers.0.self_attn.q_proj.weight");
        Assert.True(w32.to(ScalarType.BFloat16).equal(w16).all().item<bool>());
        // And a bf16 checkpoint loads into an fp32 model.
        using var model = ModelDirectory.Load(b16);
        Assert.Equal(ScalarType.Float32, model.parameters().First().dtype);
    }

    [Fact]
    public void Inspect_reports_missing_unexpected_and_misshaped_tensors()
    {
        string dir = TestPaths.NewTempDir("broken");
        ModelDirectory.CreateRandom(dir, "tiny", 1, ScalarType.Float32);
        using (var scope = NewDisposeScope())
        {
            List<(string, Tensor)> tensors;
            using (var files = CheckpointFiles.Open(dir))
                tensors = files.Entries.Where(e => e.Name != "talker.codec_head.weight")
                    .Select(e => (e.Name, e.Name == "talker.model.norm.weight" ? zeros(65) : files.Read(e.Name))).ToList();
            tensors.Add(("talker.lm_head.weight", zeros(3)));
            CheckpointFiles.Save(dir, tensors);
        }
        var report = ModelInspector.Inspect(dir);
        Assert.False(report.IsValid);
        Assert.Equal(new[] { "talker.codec_head.weight" }, report.Missing);
        Assert.Equal(new[] { "talker.lm_head.weight" }, report.Unexpected);
        Assert.Single(report.Mismatched, m => m.Contains("talker.model.norm.weight") && m.Contains("[64]") && m.Contains("[65]"));
        string text = InspectCommand.ToText(report);
        Assert.Contains("INVALID", text);
        Assert.Contains("missing     talker.codec_head.weight", text);
        var e = Assert.Throws<CheckpointException>(() => ModelDirectory.Load(dir));
        Assert.Contains("talker.codec_head.weight", e.Message);
    }

    [Fact]
    public void Inspect_json_of_a_config_only_folder_is_the_layout()
    {
        string dir = Path.Combine(ConfigTests.ReferenceDir, "Qwen3-TTS-12Hz-1.7B-Base");
        var report = ModelInspector.Inspect(dir);
        Assert.True(report.LayoutOnly);
        var json = JsonNode.Parse(InspectCommand.ToJson(report))!;
        Assert.Equal(LayoutTests.ExpectedCount(Presets.Config("1.7b")), json["total"]!.GetValue<long>());
        var tensors = json["tensors"]!.AsObject();
        Assert.Equal(480, tensors.Count);
        Assert.Equal("[2048,3072,1]", tensors["speaker_encoder.fc.weight"]!.ToJsonString());
        Assert.Equal("[151936,2048]", tensors["talker.model.text_embedding.weight"]!.ToJsonString());
        Assert.Contains("layout only", InspectCommand.ToText(report));
    }

    [Fact]
    public void Init_model_from_a_config_path_and_bad_spec()
    {
        string dir = TestPaths.NewTempDir("from-path");
        var json = Presets.ConfigJson("tiny");
        json["talker_config"]!["num_hidden_layers"] = 1;
        string src = TestPaths.NewTempDir("src");
        File.WriteAllText(Path.Combine(src, "config.json"), json.ToJsonString());
        var c = ModelDirectory.CreateRandom(dir, Path.Combine(src, "config.json"), 0, ScalarType.Float32);
        Assert.Equal(1, c.Talker.NumHiddenLayers);
        Assert.True(ModelInspector.Inspect(dir).IsValid);
        Assert.Throws<ConfigException>(() => ModelDirectory.CreateRandom(dir, "7b", 0, ScalarType.Float32));
    }

    [Fact]
    public void Tiny_model_forward_shapes_with_speaker_embedding()
    {
        using var scope = NewDisposeScope();
        var config = Presets.Config("tiny");
        using var model = new Qwen3TtsModel(config);
        ModelInit.Initialize(model, 0, 0.02);
        var speaker = model.SpeakerEncoder!.Embed(randn(2, 24000) * 0.1);
        Assert.Equal(new long[] { 2, config.Talker.HiddenSize }, speaker.shape);
        var text = model.Talker.EmbedText(full(2, 9, config.TtsPadTokenId, dtype: ScalarType.Int64));
        var codec = model.Talker.Model.CodecEmbedding.forward(full(2, 9, config.Talker.CodecPadId, dtype: ScalarType.Int64));
        var h = model.Talker.forward(text + codec, null, null);
        Assert.Equal(new long[] { 2, 9, config.Talker.VocabSize }, model.Talker.CodecHead.forward(h).shape);
    }
}
