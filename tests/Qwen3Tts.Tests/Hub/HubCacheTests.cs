using System.Security.Cryptography;
using Qwen3Tts.Entry.Hub;
using Qwen3Tts.Tests.Entry;
using Qwen3Tts.Tests.Training;

namespace Qwen3Tts.Tests.Hub;

/// <summary>Hub ids resolved through the Hugging Face cache shared with Python, without any request: a cache laid out
/// here as huggingface_hub lays it out (blobs by etag, snapshot files as relative links to them, refs naming commits).</summary>
public class HubCacheTests : CleansTempDirs
{
    const string Commit = "0123456789abcdef0123456789abcdef01234567", Tagged = "89abcdef0123456789abcdef0123456789abcdef";

    /// <summary>Copies <paramref name="folder"/> into <paramref name="cache"/> as huggingface_hub stores a download of
    /// <paramref name="id"/> at <paramref name="commit"/>, with refs/<paramref name="revision"/> pointing at it.</summary>
    static string Lay(string cache, string id, string folder, string commit, string revision = "main", string kind = "models")
    {
        string repo = Path.Combine(cache, $"{kind}--{id.Replace("/", "--")}");
        string blobs = Directory.CreateDirectory(Path.Combine(repo, "blobs")).FullName;
        string snapshot = Path.Combine(repo, "snapshots", commit);
        foreach (string file in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(folder, file);
            string etag = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(file))); // an LFS file's etag is its sha256
            string blob = Path.Combine(blobs, etag);
            if (!File.Exists(blob)) File.Copy(file, blob);
            string link = Path.Combine(snapshot, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(link)!);
            File.CreateSymbolicLink(link, Path.GetRelativePath(Path.GetDirectoryName(link)!, blob)); // ../../blobs/<etag>, as Python links
        }
        string refFile = Path.Combine(repo, "refs", revision);
        Directory.CreateDirectory(Path.GetDirectoryName(refFile)!);
        File.WriteAllText(refFile, commit); // huggingface_hub writes the bare hash
        return snapshot;
    }

    [Theory]
    [InlineData("Qwen/Qwen3-TTS-12Hz-1.7B-Base", true)]
    [InlineData("vaghawan/hausa-tts-22k", true)]
    [InlineData("owner/name.v2", true)]
    [InlineData("model", false)]
    [InlineData("./owner/name", false)]
    [InlineData("/abs/path", false)]
    [InlineData("a/b/c", false)]
    [InlineData("owner/na--me", false)]
    [InlineData("owner/..", false)]
    public void Repo_ids_are_told_from_paths(string value, bool id) => Assert.Equal(id, HubRepo.LooksLikeId(value));

    [Fact]
    public void The_cache_folder_follows_huggingface_hubs_environment_variables()
    {
        string Root(params (string Key, string Value)[] env) => HubCache.FromEnvironment(env.ToDictionary(e => e.Key, e => e.Value)).Root;
        string home = Environment.GetEnvironmentVariable("HOME")!;
        Assert.Equal("/c/hub", Root(("HF_HUB_CACHE", "/c/hub"), ("HUGGINGFACE_HUB_CACHE", "/old"), ("HF_HOME", "/h")));
        Assert.Equal("/old", Root(("HUGGINGFACE_HUB_CACHE", "/old"), ("HF_HOME", "/h")));
        Assert.Equal("/h/hub", Root(("HF_HOME", "/h"), ("XDG_CACHE_HOME", "/x")));
        Assert.Equal("/x/huggingface/hub", Root(("XDG_CACHE_HOME", "/x")));
        Assert.Equal(Path.Combine(home, ".cache", "huggingface", "hub"), Root());
        Assert.Equal(Path.Combine(home, "hf", "hub"), Root(("HF_HOME", "~/hf")));
    }

    [Fact]
    public void A_model_id_resolves_to_its_snapshot_by_branch_tag_or_commit()
    {
        string cache = TestPaths.NewTempDir("hub-cache");
        string model = TrainingFixture.TinyModel(41, "hub-model");
        string snapshot = Lay(cache, "Qwen/Qwen3-TTS-12Hz-0.6B-Base", model, Commit);
        Lay(cache, "Qwen/Qwen3-TTS-12Hz-0.6B-Base", model, Tagged, revision: "v1.0");
        var env = new Dictionary<string, string> { ["HF_HUB_CACHE"] = cache, ["HF_HUB_OFFLINE"] = "1" };
        string Resolve(string value, string? revision = null) => HubPaths.Resolve(value, HubRepoType.Model, "--model", revision, env);

        Assert.Equal(snapshot, Resolve("Qwen/Qwen3-TTS-12Hz-0.6B-Base"));
        Assert.Equal(snapshot, Resolve("Qwen/Qwen3-TTS-12Hz-0.6B-Base", Commit));
        Assert.EndsWith(Tagged, Resolve("Qwen/Qwen3-TTS-12Hz-0.6B-Base", "v1.0"));
        Assert.True(File.Exists(Path.Combine(snapshot, "config.json")));

        var missing = Assert.Throws<HubException>(() => Resolve("Qwen/Qwen3-TTS-12Hz-1.7B-Base"));
        Assert.Contains($"--model Qwen/Qwen3-TTS-12Hz-1.7B-Base: no such local path, and the Hugging Face cache ({cache}) has no Qwen/Qwen3-TTS-12Hz-1.7B-Base at revision main", missing.Message);
        Assert.Contains("HF_HUB_OFFLINE is set, so nothing is downloaded: fetch it first (huggingface-cli download Qwen/Qwen3-TTS-12Hz-1.7B-Base)", missing.Message);
        Assert.Contains("at revision v2", Assert.Throws<HubException>(() => Resolve("Qwen/Qwen3-TTS-12Hz-0.6B-Base", "v2")).Message);

    }

    /// <summary>The seed's dataset_tool call, by name: `qwen3tts prepare --dataset_name owner/name --split train` reads the
    /// split's shards (data/train-*.parquet) from the cached dataset snapshot, encoding with a model given by id.</summary>
    [Fact]
    public void Prepare_reads_a_dataset_and_a_model_by_id_from_the_cache()
    {
        var f = new Qwen3Tts.Tests.Prepare.PrepareFixture("hub-prepare");
        string cache = TestPaths.NewTempDir("hub-prepare-cache");
        Lay(cache, "vaghawan/hausa-tts-22k", f.HfFolder, Commit, kind: "datasets");
        Lay(cache, "Qwen/Qwen3-TTS-12Hz-1.7B-Base", f.Model, Tagged);
        var env = new Dictionary<string, string> { ["HF_HOME"] = Path.GetDirectoryName(cache)!, ["HF_HUB_CACHE"] = cache, ["HF_HUB_OFFLINE"] = "1" };
        string output = f.Out("train.jsonl");
        var run = Executables.Run(TestPaths.CliDll, ["prepare", "--dataset_name", "vaghawan/hausa-tts-22k", "--split", "train", "--output", output,
            "--model", "Qwen/Qwen3-TTS-12Hz-1.7B-Base", "--max_samples", "4"], env, TimeSpan.FromMinutes(3));
        Assert.True(run.Exit == 0, run.Stderr + run.Stdout);
        var records = File.ReadAllLines(output);
        Assert.Equal(4, records.Length);
        Assert.All(records, r => Assert.Contains("\"audio_codes\"", r));
        Assert.Contains("Sannu da zuwa.", records[0]); // train shard 0, row 0

        var wrongSplit = Executables.Run(TestPaths.CliDll, ["prepare", "--dataset_name", "vaghawan/hausa-tts-22k", "--split", "test", "--output", f.Out("test.jsonl"),
            "--model", "Qwen/Qwen3-TTS-12Hz-1.7B-Base"], env);
        Assert.Equal(2, wrongSplit.Exit);
        Assert.Contains("has no Parquet shards of the 'test' split (splits found: train, validation)", wrongSplit.Stderr);
    }

    /// <summary>The trainer takes --init_model_path as a Hub id from the cache (no network: this machine has none) and
    /// trains; an id the cache lacks stops it with one line naming the cache and the download command.</summary>
    [Fact]
    public void The_trainer_fine_tunes_a_model_given_by_id_from_the_cache()
    {
        string cache = TestPaths.NewTempDir("hub-train-cache");
        Lay(cache, "Qwen/Qwen3-TTS-12Hz-0.6B-Base", TrainingFixture.TinyModel(42, "hub-train-model"), Commit);
        string data = TrainingFixture.DemoData(4, tag: "hub-train-data");
        var env = new Dictionary<string, string> { ["HF_HUB_CACHE"] = cache, ["HF_HUB_OFFLINE"] = "1" };
        string[] Args(string id, string output) => ["--train_jsonl", data, "--init_model_path", id, "--output_model_path", output,
            "--mixed_precision", "fp32", "--num_epochs", "1", "--batch_size", "2", "--gradient_accumulation_steps", "1", "--coordinator", "off"];
        string output = TestPaths.NewTempDir("hub-train-out");
        var run = Executables.Run(TestPaths.RankDll, Args("Qwen/Qwen3-TTS-12Hz-0.6B-Base", output), env, TimeSpan.FromMinutes(3));
        Assert.True(run.Exit == 0, run.Stderr + run.Stdout);
        Assert.True(File.Exists(Path.Combine(output, "last", "model.safetensors")));

        var missing = Executables.Run(TestPaths.RankDll, Args("Qwen/Qwen3-TTS-12Hz-1.7B-Base", TestPaths.NewTempDir("hub-train-missing")), env);
        Assert.Equal(2, missing.Exit);
        Executables.AssertNoStackTrace(missing);
        Assert.StartsWith($"error: --init_model_path Qwen/Qwen3-TTS-12Hz-1.7B-Base: no such local path, and the Hugging Face cache ({cache})", missing.ErrorLines[0]);
    }
}
