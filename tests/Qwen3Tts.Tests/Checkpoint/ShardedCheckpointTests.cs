using System.Text.Json;
using Qwen3Tts.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Checkpoint;

/// <summary>model.safetensors or model-0000k-of-0000n.safetensors + model.safetensors.index.json.</summary>
public class ShardedCheckpointTests
{
    /// <summary>Five 64-byte float32 tensors, one 8-byte int64 and one 128-byte bf16, in state-dict order.</summary>
    static List<(string name, Tensor t)> Tensors()
    {
        var list = new List<(string, Tensor)>();
        for (int i = 0; i < 5; i++) list.Add(($"layers.{i}.weight", Raw.Tensor(Raw.RandomBytes(64, seed: i), ScalarType.Float32, 4, 4)));
        list.Add(("step", tensor(new long[] { 12345 })));
        list.Add(("embed.weight", Raw.Tensor(Raw.RandomBytes(128, seed: 99), ScalarType.BFloat16, 8, 8)));
        return list;
    }

    [Fact]
    public void Small_max_shard_size_writes_several_shards_and_an_index_that_read_back_identically()
    {
        using var dir = new TempDir();
        var tensors = Tensors();
        var written = CheckpointFiles.Save(dir.Path, tensors, maxShardBytes: 150);

        // Greedy in order: 64+64 | 64+64 | 64+8 | 128 (the bf16 tensor does not fit after 72 bytes).
        string[] shards = ["model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
            "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors"];
        Assert.Equal([.. shards.Select(dir.File), dir.File("model.safetensors.index.json")], written);
        Assert.Equal([.. shards, "model.safetensors.index.json"], Directory.GetFiles(dir.Path).Select(Path.GetFileName).Order());

        // The index, read with System.Text.Json by hand.
        using var index = JsonDocument.Parse(File.ReadAllText(dir.File("model.safetensors.index.json")));
        Assert.Equal(5 * 64 + 8 + 128, index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
        var map = index.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
        Assert.Equal(new Dictionary<string, string?>
        {
            ["layers.0.weight"] = shards[0], ["layers.1.weight"] = shards[0],
            ["layers.2.weight"] = shards[1], ["layers.3.weight"] = shards[1],
            ["layers.4.weight"] = shards[2], ["step"] = shards[2],
            ["embed.weight"] = shards[3],
        }, map);
        Assert.Equal(map.Keys.Order(StringComparer.Ordinal), map.Keys); // sorted, as transformers writes it

        // Each shard holds exactly what the index says, parsed by hand.
        foreach (var shard in shards)
        {
            var p = MinimalParse.Of(File.ReadAllBytes(dir.File(shard)));
            Assert.Equal(map.Where(kv => kv.Value == shard).Select(kv => kv.Key).Order(), p.Entries.Select(e => e.Name).Order());
            foreach (var e in p.Entries) Assert.Equal(Raw.Of(tensors.Single(t => t.name == e.Name).t), p.Data(e.Name));
        }

        using var checkpoint = CheckpointFiles.Open(dir.Path);
        Assert.Equal(dir.File("model.safetensors.index.json"), checkpoint.IndexPath);
        Assert.Equal(shards.Select(dir.File), checkpoint.Files);
        Assert.Equal(dir.File(shards[3]), checkpoint.Entry("embed.weight").File);
        Assert.Equal(tensors.Select(t => t.name).Order(), checkpoint.Entries.Select(e => e.Name).Order());
        foreach (var (name, t) in tensors)
        {
            using var back = checkpoint.Read(name);
            Assert.Equal(t.dtype, back.dtype);
            Assert.Equal(t.shape, back.shape);
            Assert.Equal(Raw.Of(t), Raw.Of(back));
        }
    }

    [Fact]
    public void Sharded_output_is_deterministic()
    {
        using var a = new TempDir();
        using var b = new TempDir();
        var tensors = Tensors();
        CheckpointFiles.Save(a.Path, tensors, maxShardBytes: 150);
        CheckpointFiles.Save(b.Path, tensors, maxShardBytes: 150);
        foreach (var file in Directory.GetFiles(a.Path))
            Assert.Equal(File.ReadAllBytes(file), File.ReadAllBytes(b.File(Path.GetFileName(file))));
    }

    [Fact]
    public void Everything_that_fits_goes_to_one_model_safetensors_without_an_index()
    {
        using var dir = new TempDir();
        var tensors = Tensors();
        var written = CheckpointFiles.Save(dir.Path, tensors);
        Assert.Equal([dir.File("model.safetensors")], written);
        Assert.Equal(["model.safetensors"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
        using var checkpoint = CheckpointFiles.Open(dir.Path);
        Assert.Null(checkpoint.IndexPath);
        Assert.Equal(7, checkpoint.Entries.Count);
        Assert.All(checkpoint.Entries, e => Assert.Equal(dir.File("model.safetensors"), e.File));
    }

    [Fact]
    public void A_tensor_larger_than_the_shard_size_gets_a_shard_of_its_own()
    {
        using var dir = new TempDir();
        using var small = ones(2);
        using var big = ones(100);
        CheckpointFiles.Save(dir.Path, [("a", small), ("big", big), ("z", small)], maxShardBytes: 16);
        using var checkpoint = CheckpointFiles.Open(dir.Path);
        Assert.Equal(3, checkpoint.Files.Count);
        Assert.Equal(dir.File("model-00002-of-00003.safetensors"), checkpoint.Entry("big").File);
    }

    [Fact]
    public void Saving_again_removes_files_of_the_previous_layout()
    {
        using var dir = new TempDir();
        var tensors = Tensors();
        CheckpointFiles.Save(dir.Path, tensors, maxShardBytes: 150);
        CheckpointFiles.Save(dir.Path, tensors, maxShardBytes: 200);
        Assert.Equal(["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors", "model.safetensors.index.json"],
            Directory.GetFiles(dir.Path).Select(Path.GetFileName).Order());
        CheckpointFiles.Save(dir.Path, tensors);
        Assert.Equal(["model.safetensors"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
        CheckpointFiles.Save(dir.Path, tensors, maxShardBytes: 300);
        Assert.DoesNotContain("model.safetensors", Directory.GetFiles(dir.Path).Select(Path.GetFileName));
        using var checkpoint = CheckpointFiles.Open(dir.Path);
        Assert.Equal(7, checkpoint.Entries.Count);
    }

    [Fact]
    public void A_missing_shard_is_named()
    {
        using var dir = new TempDir();
        CheckpointFiles.Save(dir.Path, Tensors(), maxShardBytes: 150);
        File.Delete(dir.File("model-00003-of-00004.safetensors"));
        var e = Assert.Throws<CheckpointException>(() => CheckpointFiles.Open(dir.Path));
        Assert.Contains("model-00003-of-00004.safetensors", e.Message);
        Assert.Contains("model.safetensors.index.json", e.Message);
        Assert.DoesNotContain("model-00001", e.Message);
    }

    [Fact]
    public void An_index_that_disagrees_with_its_shards_is_refused()
    {
        using var dir = new TempDir();
        CheckpointFiles.Save(dir.Path, Tensors(), maxShardBytes: 150);
        string index = dir.File("model.safetensors.index.json");
        string text = File.ReadAllText(index);
        File.WriteAllText(index, text.Replace("\"step\": \"model-00003-of-00004.safetensors\"", "\"step\": \"model-00001-of-00004.safetensors\""));
        var e = Assert.Throws<CheckpointException>(() => CheckpointFiles.Open(dir.Path));
        Assert.Contains("'step'", e.Message);

        File.WriteAllText(index, text.Replace("model-00003-of-00004.safetensors", "../elsewhere.safetensors"));
        Assert.Contains("../elsewhere.safetensors", Assert.Throws<CheckpointException>(() => CheckpointFiles.Open(dir.Path)).Message);
    }

    [Fact]
    public void A_folder_without_a_checkpoint_is_refused()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<CheckpointException>(() => CheckpointFiles.Open(dir.Path));
        Assert.Contains(dir.Path, e.Message);
        Assert.Contains("model.safetensors", e.Message);
    }
}
