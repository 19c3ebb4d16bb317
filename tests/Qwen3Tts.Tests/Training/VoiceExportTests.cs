using System.Text.Json.Nodes;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Rank.Training;
using Qwen3Tts.Tests.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Training;

/// <summary>The custom_voice export: the reference's layout, the mean voice, no speaker encoder, strict load.</summary>
public class VoiceExportTests : CleansTempDirs
{
    const string Codec = VoiceExport.CodecEmbedding;

    static JsonObject ReadJson(string dir) => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;

    static Tensor Param(nn.Module model, string name) => model.state_dict()[name];

    [Fact]
    public void Export_writes_a_custom_voice_directory_with_the_mean_in_row_3000_and_no_speaker_encoder()
    {
        string baseDir = TestPaths.NewTempDir("voice-base"), outDir = TestPaths.NewTempDir("voice-out");
        ModelDirectory.CreateRandom(baseDir, "tiny", 21, ScalarType.Float32);
        using var scope = NewDisposeScope();
        using var model = ModelDirectory.Load(baseDir);
        using (no_grad()) // "training" changed the weights, so the export must take them from the model, not the base files
        {
            Param(model, Codec)[5].add_(1.0);
            Param(model, "talker.model.norm.weight").mul_(3.0);
        }
        var trainedCodec = Param(model, Codec).clone();
        var mean = randn(64, generator: new Generator(4));
        string target = Path.Combine(outDir, "voice");

        VoiceExport.Export(target, baseDir, "alice", model, mean);

        // Config: the Base config with exactly three keys changed.
        var exported = ReadJson(target);
        Assert.Equal("custom_voice", (string?)exported["tts_model_type"]);
        Assert.True(JsonNode.DeepEquals(new JsonObject { ["alice"] = 3000 }, exported["talker_config"]!["spk_id"]), exported["talker_config"]!["spk_id"]!.ToJsonString());
        Assert.True(JsonNode.DeepEquals(new JsonObject { ["alice"] = false }, exported["talker_config"]!["spk_is_dialect"]));
        var expected = ReadJson(baseDir);
        Assert.Equal("base", (string?)expected["tts_model_type"]);
        expected["tts_model_type"] = "custom_voice";
        expected["talker_config"]!["spk_id"] = new JsonObject { ["alice"] = 3000 };
        expected["talker_config"]!["spk_is_dialect"] = new JsonObject { ["alice"] = false };
        Assert.True(JsonNode.DeepEquals(expected, exported), "every other config key must equal the Base config's");
        foreach (var file in ModelDirectory.CompanionFiles)
            Assert.Equal(File.ReadAllBytes(Path.Combine(baseDir, file)), File.ReadAllBytes(Path.Combine(target, file)));

        // Weights: the trained model's, minus the speaker encoder, with row 3000 replaced.
        var trained = model.state_dict();
        Assert.Contains(trained.Keys, k => k.StartsWith("speaker_encoder.", StringComparison.Ordinal));
        using (var files = CheckpointFiles.Open(target))
        {
            Assert.DoesNotContain(files.Entries, e => e.Name.StartsWith("speaker_encoder", StringComparison.Ordinal));
            Assert.Equal(trained.Keys.Where(k => !k.StartsWith("speaker_encoder.", StringComparison.Ordinal)).Order(StringComparer.Ordinal),
                files.Entries.Select(e => e.Name).Order(StringComparer.Ordinal));
            var codec = files.Read(Codec);
            Assert.Equal(Raw.Of(mean), Raw.Of(codec[3000]));
            var others = cat([codec[..3000], codec[3001..]]);
            Assert.True(others.equal(cat([trainedCodec[..3000], trainedCodec[3001..]])).all().item<bool>(), "rows other than 3000 changed");
            foreach (var e in files.Entries.Where(e => e.Name != Codec))
                Assert.True(Raw.Of(files.Read(e.Name)).AsSpan().SequenceEqual(Raw.Of(trained[e.Name])), $"{e.Name} differs from the trained model");
        }
        // The live model is untouched (the reference writes row 3000 into it through state_dict()).
        Assert.True(Param(model, Codec).equal(trainedCodec).all().item<bool>());

        Assert.True(ModelInspector.Inspect(target).IsValid);
        using var voice = ModelDirectory.Load(target); // strict
        Assert.Null(voice.SpeakerEncoder);
        Assert.Equal(3000, voice.Config.Talker.SpkId["alice"]);
        Assert.Null(voice.Config.Talker.SpkIsDialect["alice"]);
        Assert.Equal(Raw.Of(mean), Raw.Of(Param(voice, Codec)[3000]));
    }

    [Fact]
    public void A_bf16_model_stores_the_mean_rounded_to_bf16()
    {
        string baseDir = TestPaths.NewTempDir("voice-bf16"), target = Path.Combine(TestPaths.NewTempDir("voice-bf16-out"), "v");
        ModelDirectory.CreateRandom(baseDir, "tiny", 22, ScalarType.BFloat16);
        using var scope = NewDisposeScope();
        using var model = ModelDirectory.Load(baseDir, ScalarType.BFloat16);
        var mean = randn(64, generator: new Generator(5));

        VoiceExport.Export(target, baseDir, "bob", model, mean);

        using var files = CheckpointFiles.Open(target);
        Assert.Equal("BF16", files.Entry(Codec).Dtype);
        Assert.Equal(Raw.Of(mean.to(ScalarType.BFloat16)), Raw.Of(files.Read(Codec)[3000]));
    }

    [Fact]
    public void Export_refuses_a_mean_of_the_wrong_width_and_a_non_base_model()
    {
        string baseDir = TestPaths.NewTempDir("voice-refuse"), outDir = TestPaths.NewTempDir("voice-refuse-out");
        ModelDirectory.CreateRandom(baseDir, "tiny", 23, ScalarType.Float32);
        using var scope = NewDisposeScope();
        using var model = ModelDirectory.Load(baseDir);
        var e = Assert.Throws<ArgumentException>(() => VoiceExport.Export(Path.Combine(outDir, "v"), baseDir, "alice", model, randn(63)));
        Assert.Contains("[64]", e.Message);

        string voice = Path.Combine(outDir, "v2");
        VoiceExport.Export(voice, baseDir, "alice", model, randn(64));
        using var voiceModel = ModelDirectory.Load(voice);
        Assert.Throws<ConfigException>(() => VoiceExport.Export(Path.Combine(outDir, "v3"), voice, "carol", voiceModel, randn(64)));
        Assert.Equal(["v2"], Directory.EnumerateFileSystemEntries(outDir).Select(Path.GetFileName));
    }

    [Fact]
    public void Speaker_mean_averages_every_row_of_every_batch_not_the_first_batch()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(9);
        var batches = new[] { randn([3, 64], generator: g) + 2, randn([5, 64], generator: g), randn([2, 64], generator: g) - 1 };
        var mean = new SpeakerEmbeddingMean();
        foreach (var b in batches) mean.Add("alice", b.to(ScalarType.BFloat16).to(ScalarType.Float32));

        var all = cat(batches.Select(b => b.to(ScalarType.BFloat16).to(ScalarType.Float64)).ToList());
        var expected = all.mean([0]).to(ScalarType.Float32);
        var got = mean.Mean("alice");
        Assert.Equal(ScalarType.Float32, got.dtype);
        Assert.Equal(10, mean.Count("alice"));
        Assert.True(got.allclose(expected, rtol: 0, atol: 1e-6), $"max diff {(got - expected).abs().max().item<float>()}");
        Assert.False(got.allclose(batches[0].mean([0]), rtol: 0, atol: 1e-2)); // the reference's choice is not the mean
        Assert.Throws<InvalidOperationException>(() => mean.Mean("bob"));
    }

    [Fact]
    public void Speaker_mean_survives_a_resume_through_the_trainer_state_and_merges_mixed_batches()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(10);
        var (first, second) = (randn([4, 8], generator: g), randn([6, 8], generator: g));

        var before = new SpeakerEmbeddingMean();
        before.Add("alice", first);
        var state = new TrainerState
        {
            GlobalStep = 1, Epoch = 0, BatchInEpoch = 1, OptimizerStep = 1, Seed = 1,
            LrSchedule = new("constant", new Dictionary<string, double> { ["lr"] = 1e-5 }),
            SpeakerEmbeddings = before.ToState(),
        };
        var resumed = SpeakerEmbeddingMean.FromState(TrainerState.FromJson(state.ToJson(), "test").SpeakerEmbeddings);
        Assert.Equal(Raw.Of(before.Mean("alice")), Raw.Of(resumed.Mean("alice")));
        resumed.Add("alice", second);
        Assert.True(resumed.Mean("alice").allclose(cat([first, second]).to(ScalarType.Float64).mean([0]).to(ScalarType.Float32), rtol: 0, atol: 1e-6));

        // Rows of one batch may belong to different speakers.
        var mixed = new SpeakerEmbeddingMean();
        mixed.Add(["a", "b", "a", "b", "b", "a"], second);
        Assert.Equal(3, mixed.Count("a"));
        Assert.True(mixed.Mean("a").allclose(second.index_select(0, tensor(new long[] { 0, 2, 5 })).mean([0]), rtol: 0, atol: 1e-6));
        Assert.True(mixed.Mean("b").allclose(second.index_select(0, tensor(new long[] { 1, 3, 4 })).mean([0]), rtol: 0, atol: 1e-6));
        // States of several ranks merge by adding sums and counts.
        var merged = SpeakerEmbeddingMean.FromState(before.ToState().Concat(mixed.ToState()).Where(s => s.Speaker == "alice").Concat(before.ToState()));
        Assert.Equal(8, merged.Count("alice"));
        Assert.True(merged.Mean("alice").allclose(before.Mean("alice"), rtol: 0, atol: 1e-6));
    }
}
