using Qwen3Tts.Model.Checkpoint;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Qwen3Tts.Tests.Checkpoint;

/// <summary>Loading safetensors into a module by state-dict name.</summary>
public class CheckpointLoaderTests
{
    /// <summary>Field names become the state-dict keys: q_proj.weight, q_proj.bias, o_proj.weight, norm_weight,
    /// layers.0.weight, layers.0.bias, layers.1.weight, layers.1.bias, and the persistent buffer position_ids.</summary>
    sealed class TinyBlock : Module
    {
        public readonly Linear q_proj;
        public readonly Linear o_proj;
        public readonly Parameter norm_weight;
        public readonly ModuleList<Linear> layers;

        public TinyBlock(long seed) : base(nameof(TinyBlock))
        {
            manual_seed(seed);
            q_proj = Linear(4, 4);
            o_proj = Linear(4, 3, hasBias: false);
            norm_weight = Parameter(randn(4));
            layers = ModuleList(Linear(3, 3), Linear(3, 3));
            RegisterComponents();
            register_buffer("position_ids", arange(6, dtype: ScalarType.Int64) + seed);
            register_buffer("rope_cache", randn(5), persistent: false);
        }
    }

    static Dictionary<string, byte[]> RawState(Module m) => m.state_dict().ToDictionary(kv => kv.Key, kv => Raw.Of(kv.Value));

    [Fact]
    public void Strict_load_copies_every_value_into_the_existing_parameters()
    {
        using var dir = new TempDir();
        var source = new TinyBlock(seed: 1);
        CheckpointLoader.Save(source, dir.Path);
        using (var file = SafetensorsFile.Open(dir.File("model.safetensors")))
        {
            Assert.Equal(source.state_dict().Keys.Order(), file.Entries.Select(e => e.Name).Order());
            Assert.DoesNotContain("rope_cache", file.Entries.Select(e => e.Name)); // not persistent
        }

        var target = new TinyBlock(seed: 2);
        var weightBefore = target.q_proj.weight!;
        Assert.NotEqual(RawState(source)["q_proj.weight"], Raw.Of(weightBefore));
        var report = CheckpointLoader.Load(target, dir.Path);

        Assert.True(report.IsExact);
        Assert.Equal(9, report.Loaded.Count);
        Assert.Equal(RawState(source), RawState(target));
        Assert.Same(weightBefore, target.q_proj.weight); // copied in place, not replaced
        Assert.Equal(RawState(source)["q_proj.weight"], Raw.Of(weightBefore));
        Assert.True(target.q_proj.weight!.requires_grad);
    }

    /// <summary>A checkpoint of seed-1 values, lacking o_proj.weight, with a stray extra.bias, a q_proj.bias of
    /// the wrong shape and a float position_ids.</summary>
    static Dictionary<string, byte[]> WriteFaultyCheckpoint(string dir)
    {
        var source = new TinyBlock(seed: 1);
        var tensors = source.state_dict()
            .Where(kv => kv.Key is not "o_proj.weight" and not "q_proj.bias" and not "position_ids")
            .Select(kv => (kv.Key, kv.Value))
            .Append(("extra.bias", zeros(2)))
            .Append(("q_proj.bias", zeros(5)))
            .Append(("position_ids", zeros(6)));
        Safetensors.Save(Path.Combine(dir, "model.safetensors"), tensors);
        return RawState(source);
    }

    [Fact]
    public void Strict_load_refuses_listing_missing_unexpected_and_mismatched_keys_and_loads_nothing()
    {
        using var dir = new TempDir();
        WriteFaultyCheckpoint(dir.Path);
        var target = new TinyBlock(seed: 2);
        var before = RawState(target);

        var e = Assert.Throws<CheckpointException>(() => CheckpointLoader.Load(target, dir.Path));
        Assert.Contains(dir.File("model.safetensors"), e.Message);
        Assert.Contains("1 missing from the checkpoint:\n    o_proj.weight", e.Message);
        Assert.Contains("1 unexpected (in the checkpoint, not in the module):\n    extra.bias", e.Message);
        Assert.Contains("2 with a mismatched shape or dtype", e.Message);
        Assert.Contains("q_proj.bias: module has [4] Float32, checkpoint has [5] F32", e.Message);
        Assert.Contains("position_ids: module has [6] Int64, checkpoint has [6] F32", e.Message);
        Assert.Equal(before, RawState(target));
    }

    [Fact]
    public void Non_strict_load_copies_the_keys_that_fit_and_reports_the_rest()
    {
        using var dir = new TempDir();
        var source = WriteFaultyCheckpoint(dir.Path);
        var target = new TinyBlock(seed: 2);
        var before = RawState(target);

        var report = CheckpointLoader.Load(target, dir.Path, strict: false);

        Assert.False(report.IsExact);
        Assert.Equal(["o_proj.weight"], report.Missing);
        Assert.Equal(["extra.bias"], report.Unexpected);
        Assert.Equal(["position_ids", "q_proj.bias"], report.Mismatched.Select(m => m.Name));
        var bias = report.Mismatched.Single(m => m.Name == "q_proj.bias");
        Assert.Equal([4L], bias.ExpectedShape);
        Assert.Equal([5L], bias.FoundShape);
        Assert.Equal(["layers.0.bias", "layers.0.weight", "layers.1.bias", "layers.1.weight", "norm_weight", "q_proj.weight"], report.Loaded.Order());

        var after = RawState(target);
        foreach (var key in report.Loaded) Assert.Equal(source[key], after[key]);
        foreach (var key in new[] { "o_proj.weight", "q_proj.bias", "position_ids" }) Assert.Equal(before[key], after[key]);
    }

    [Fact]
    public void Report_lists_the_first_20_keys_of_a_kind_and_the_count()
    {
        var report = new LoadReport([], [.. Enumerable.Range(0, 25).Select(i => $"k{i:D2}")], [], []);
        string text = report.Describe();
        Assert.Contains("25 missing", text);
        Assert.Contains("k19", text);
        Assert.DoesNotContain("k20", text);
        Assert.Contains("and 5 more", text);
    }

    [Fact]
    public void Bfloat16_checkpoint_loads_exactly_into_a_float32_module()
    {
        using var dir = new TempDir();
        var source = new TinyBlock(seed: 1);
        source.to(ScalarType.BFloat16);
        CheckpointLoader.Save(source, dir.Path);
        using (var file = SafetensorsFile.Open(dir.File("model.safetensors")))
        {
            Assert.Equal("BF16", file.Entry("q_proj.weight").Dtype);
            Assert.Equal("I64", file.Entry("position_ids").Dtype);
        }

        var target = new TinyBlock(seed: 2);
        CheckpointLoader.Load(target, dir.Path);

        foreach (var (name, value) in target.state_dict())
        {
            var expected = source.state_dict()[name];
            if (name == "position_ids")
            {
                Assert.Equal(ScalarType.Int64, value.dtype);
                Assert.Equal(Raw.Of(expected), Raw.Of(value));
                continue;
            }
            Assert.Equal(ScalarType.Float32, value.dtype);
            // Widening is exact: each float32 is the bf16 bits followed by 16 zero bits.
            var bf16 = Raw.Of(expected).Chunk(2).Select(b => (uint)BitConverter.ToUInt16(b) << 16);
            Assert.Equal(bf16, value.data<float>().ToArray().Select(BitConverter.SingleToUInt32Bits));
        }
    }

    [Fact]
    public void Float32_checkpoint_loads_into_a_bfloat16_module_rounding_as_torch_does()
    {
        using var dir = new TempDir();
        var source = new TinyBlock(seed: 1);
        CheckpointLoader.Save(source, dir.Path);

        var target = new TinyBlock(seed: 2);
        var report = CheckpointLoader.Load(target, dir.Path, dtype: ScalarType.BFloat16);

        Assert.True(report.IsExact);
        Assert.Equal(ScalarType.BFloat16, target.q_proj.weight!.dtype);
        Assert.Equal(ScalarType.Int64, target.state_dict()["position_ids"].dtype); // integer buffers keep their type
        foreach (var (name, value) in target.state_dict())
        {
            using var expected = source.state_dict()[name].to_type(name == "position_ids" ? ScalarType.Int64 : ScalarType.BFloat16);
            Assert.Equal(Raw.Of(expected), Raw.Of(value));
        }
    }

    [Fact]
    public void Sharded_checkpoint_loads_like_a_single_file()
    {
        using var dir = new TempDir();
        var source = new TinyBlock(seed: 1);
        var written = CheckpointLoader.Save(source, dir.Path, maxShardBytes: 40);
        Assert.True(written.Count > 3);
        var target = new TinyBlock(seed: 2);
        Assert.True(CheckpointLoader.Load(target, dir.Path).IsExact);
        Assert.Equal(RawState(source), RawState(target));
    }
}
