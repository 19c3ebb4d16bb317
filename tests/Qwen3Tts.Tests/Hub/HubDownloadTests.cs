using System.Security.Cryptography;
using Qwen3Tts.Entry.Hub;
using Qwen3Tts.Tests.Entry;
using Qwen3Tts.Tests.Training;

namespace Qwen3Tts.Tests.Hub;

/// <summary>Downloads by Hub id against the loopback stand-in (<see cref="HubStandIn"/>): into an empty cache in
/// huggingface_hub's layout, read again with no request, resumed after a cut, refused when corrupt, retried after 5xx,
/// never attempted offline, and never writing the token anywhere.</summary>
public class HubDownloadTests : CleansTempDirs
{
    const string Commit = "feedfacefeedfacefeedfacefeedfacefeedface", Token = "hf_StandInSecretToken0123456789";
    const string ModelId = "Qwen/Qwen3-TTS-12Hz-0.6B-Base";

    sealed record Setup(HubStandIn Hub, string Cache, string Model, Dictionary<string, string> Env, StringWriter Log);

    static Setup Start(string tag, string? token = Token)
    {
        var hub = new HubStandIn(Token);
        string model = TrainingFixture.TinyModel(43, $"{tag}-model");
        hub.Add("models", ModelId, Commit, model);
        string cache = TestPaths.NewTempDir($"{tag}-cache");
        var env = new Dictionary<string, string> { ["HF_HUB_CACHE"] = cache, ["HF_ENDPOINT"] = hub.Endpoint };
        if (token is not null) env["HF_TOKEN"] = token;
        return new Setup(hub, cache, model, env, new StringWriter());
    }

    static string Resolve(Setup s, string id = ModelId) => HubPaths.Resolve(id, HubRepoType.Model, "--init_model_path", null, s.Env, log: s.Log);

    /// <summary>A stand-in serving the prepare fixture's raw dataset (train and validation shards) as vaghawan/hausa-tts-22k
    /// and its tiny model as <see cref="ModelId"/>.</summary>
    static (Qwen3Tts.Tests.Prepare.PrepareFixture Fixture, HubStandIn Hub) RawDatasetHub(string tag)
    {
        var f = new Qwen3Tts.Tests.Prepare.PrepareFixture(tag);
        var hub = new HubStandIn(Token);
        hub.Add("datasets", "vaghawan/hausa-tts-22k", Commit, f.HfFolder);
        hub.Add("models", ModelId, Commit, f.Model);
        return (f, hub);
    }

    /// <summary>No file the tests' runs leave (the cache, the log) holds the token.</summary>
    static void AssertNoToken(Setup s)
    {
        Assert.DoesNotContain(Token, s.Log.ToString());
        foreach (string file in Directory.EnumerateFiles(s.Cache, "*", SearchOption.AllDirectories))
            Assert.False(File.ReadAllText(file).Contains(Token, StringComparison.Ordinal), $"{file} holds the token");
    }

    [Fact]
    public void A_model_by_id_lands_in_an_empty_cache_in_huggingface_hubs_layout_and_is_then_read_with_no_request()
    {
        var s = Start("hub-download");
        using var hub = s.Hub;
        string snapshot = Resolve(s);
        string repo = Path.Combine(s.Cache, "models--Qwen--Qwen3-TTS-12Hz-0.6B-Base");
        Assert.Equal(Path.Combine(repo, "snapshots", Commit), snapshot);
        Assert.Equal(Commit, File.ReadAllText(Path.Combine(repo, "refs", "main")));
        foreach (string file in Directory.EnumerateFiles(s.Model, "*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(s.Model, file);
            var link = new FileInfo(Path.Combine(snapshot, relative));
            Assert.NotNull(link.LinkTarget); // a link, relative, into blobs/ named by the etag (the sha256 of an LFS file)
            Assert.StartsWith("../", link.LinkTarget);
            byte[] bytes = File.ReadAllBytes(file);
            Assert.Equal(bytes, File.ReadAllBytes(link.FullName));
            if (bytes.Length >= 1024) Assert.EndsWith("blobs/" + Convert.ToHexStringLower(SHA256.HashData(bytes)), link.LinkTarget);
        }
        Assert.Empty(Directory.EnumerateFiles(repo, "*.incomplete", SearchOption.AllDirectories));
        var requests = hub.Requests.ToArray();
        Assert.StartsWith($"/api/models/{ModelId}/revision/main", requests[0].Path);
        Assert.All(requests.Where(r => !r.Path.StartsWith("/cdn/", StringComparison.Ordinal)), r => Assert.Equal($"Bearer {Token}", r.Authorization));
        Assert.Contains(requests, r => r.Path == $"/{ModelId}/resolve/{Commit}/config.json");

        Assert.Equal(snapshot, Resolve(s)); // the second resolve: from the cache
        Assert.Equal(requests.Length, hub.Requests.Count);
        AssertNoToken(s);
    }

    [Fact]
    public void An_interrupted_download_resumes_with_a_range_request_and_is_verified()
    {
        var s = Start("hub-resume");
        using var hub = s.Hub;
        hub.CutOnce["model.safetensors"] = 3000;
        string snapshot = Resolve(s);
        Assert.Equal(File.ReadAllBytes(Path.Combine(s.Model, "model.safetensors")), File.ReadAllBytes(Path.Combine(snapshot, "model.safetensors")));
        Assert.Contains(hub.Requests, r => r.Range == "bytes=3000-");
        Assert.Contains("after 3000 bytes; resuming", s.Log.ToString());
        AssertNoToken(s);
    }

    [Fact]
    public void A_corrupted_download_is_refused_and_nothing_of_it_is_committed()
    {
        var s = Start("hub-corrupt");
        using var hub = s.Hub;
        hub.Corrupt["model.safetensors"] = true;
        var e = Assert.Throws<HubException>(() => Resolve(s));
        Assert.Contains("'model.safetensors' has sha256", e.Message);
        Assert.Contains("not kept", e.Message);
        string repo = Path.Combine(s.Cache, "models--Qwen--Qwen3-TTS-12Hz-0.6B-Base");
        string sha = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(s.Model, "model.safetensors"))));
        Assert.False(File.Exists(Path.Combine(repo, "blobs", sha)));
        Assert.Empty(Directory.EnumerateFiles(repo, "*.incomplete", SearchOption.AllDirectories));
        Assert.False(File.Exists(Path.Combine(repo, "snapshots", Commit, "model.safetensors")));
        Assert.False(File.Exists(Path.Combine(repo, "refs", "main"))); // no ref: the snapshot is not taken for complete
    }

    [Fact]
    public void Server_errors_are_retried_offline_makes_no_request_and_a_missing_token_is_named()
    {
        var s = Start("hub-retry");
        using var hub = s.Hub;
        hub.Fail.Enqueue(System.Net.HttpStatusCode.InternalServerError);
        hub.Fail.Enqueue(System.Net.HttpStatusCode.ServiceUnavailable);
        Assert.True(Directory.Exists(Resolve(s)));
        Assert.Contains("HTTP 500; retrying (attempt 2 of 4)", s.Log.ToString());

        var offline = Start("hub-offline");
        using var offlineHub = offline.Hub;
        offline.Env["HF_HUB_OFFLINE"] = "1";
        Assert.Contains("HF_HUB_OFFLINE is set", Assert.Throws<HubException>(() => Resolve(offline)).Message);
        Assert.Empty(offlineHub.Requests);

        var anonymous = Start("hub-anonymous", token: null);
        using var anonymousHub = anonymous.Hub;
        var e = Assert.Throws<HubException>(() => Resolve(anonymous));
        Assert.Contains($"{ModelId} at revision main: the Hub wants a token (HTTP 401): set HF_TOKEN", e.Message);
        var wrong = Start("hub-missing");
        using var wrongHub = wrong.Hub;
        Assert.Contains("not found on the Hub (HTTP 404)", Assert.Throws<HubException>(() => Resolve(wrong, "Qwen/No-Such-Model")).Message);
    }

    /// <summary>The seed's dataset_tool and training script in one rank job, by name: `qwen3tts-rank --dataset_name owner/name
    /// --split train --validation_split validation` fetches the raw dataset's two splits, prepares each into OUTPUT/prepared/
    /// with the model's speech tokenizer, and trains with evaluation.</summary>
    [Fact]
    public void The_rank_job_prepares_a_raw_dataset_by_name_and_trains_on_it()
    {
        var (f, hub) = RawDatasetHub("hub-rank-dataset");
        using var _ = hub;
        var env = new Dictionary<string, string> { ["HF_HUB_CACHE"] = TestPaths.NewTempDir("hub-rank-cache"), ["HF_ENDPOINT"] = hub.Endpoint, ["HF_TOKEN"] = Token };
        string output = TestPaths.NewTempDir("hub-rank-run");
        var run = Executables.Run(TestPaths.RankDll, ["--dataset_name", "vaghawan/hausa-tts-22k", "--split", "train", "--validation_split", "validation",
            "--init_model_path", ModelId, "--output_model_path", output, "--mixed_precision", "fp32", "--num_epochs", "1", "--batch_size", "2",
            "--gradient_accumulation_steps", "1", "--coordinator", "off"], env, TimeSpan.FromMinutes(4));
        Assert.True(run.Exit == 0, run.Stderr + run.Stdout);
        Assert.Equal(5, File.ReadAllLines(Path.Combine(output, "prepared", "train.jsonl")).Length);
        Assert.Equal(["Ina kwana?"], File.ReadAllLines(Path.Combine(output, "prepared", "validation.jsonl"))
            .Select(l => (string)System.Text.Json.Nodes.JsonNode.Parse(l)!["text"]!));
        Assert.Contains("training 5 samples", run.Stdout);
        Assert.Contains("eval step", run.Stdout);
        Assert.DoesNotContain(Token, run.Stdout + run.Stderr);
    }

    /// <summary>A dataset whose main branch holds no Parquet (a CSV here) is read from the Hub's Parquet conversion,
    /// refs/convert/parquet, laid out {config}/{split}/0000.parquet, as `datasets` does; cached under that branch, the next
    /// resolve makes no request.</summary>
    [Fact]
    public void A_dataset_without_parquet_on_main_is_read_from_its_parquet_conversion()
    {
        var f = new Qwen3Tts.Tests.Prepare.PrepareFixture("hub-convert");
        using var hub = new HubStandIn(Token);
        string main = TestPaths.NewTempDir("hub-convert-main");
        File.WriteAllText(Path.Combine(main, "metadata.csv"), "file_name,text\nclip.wav,Sannu\n");
        string converted = TestPaths.NewTempDir("hub-convert-parquet");
        foreach (var (from, to) in new[] { ("train-00000-of-00002", "train/0000"), ("train-00001-of-00002", "train/0001"), ("validation-00000-of-00001", "validation/0000") })
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(converted, "default", to))!);
            File.Copy(Path.Combine(f.HfFolder, "data", from + ".parquet"), Path.Combine(converted, "default", to + ".parquet"));
        }
        const string ParquetCommit = "c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff";
        hub.Add("datasets", "vaghawan/hausa-csv", Commit, main);
        hub.Add("datasets", "vaghawan/hausa-csv", ParquetCommit, converted, HubPaths.ParquetBranch);
        hub.Add("models", ModelId, Commit, f.Model);
        string cache = TestPaths.NewTempDir("hub-convert-cache");
        var env = new Dictionary<string, string> { ["HF_HUB_CACHE"] = cache, ["HF_ENDPOINT"] = hub.Endpoint, ["HF_TOKEN"] = Token };
        string output = f.Out("validation.jsonl");
        var prepare = Executables.Run(TestPaths.CliDll, ["prepare", "--dataset_name", "vaghawan/hausa-csv", "--split", "validation", "--output", output,
            "--model", ModelId], env, TimeSpan.FromMinutes(3));
        Assert.True(prepare.Exit == 0, prepare.Stderr + prepare.Stdout);
        Assert.Contains("reading its Parquet conversion (refs/convert/parquet)", prepare.Stderr + prepare.Stdout);
        Assert.Equal(["Ina kwana?"], File.ReadAllLines(output).Select(l => (string)System.Text.Json.Nodes.JsonNode.Parse(l)!["text"]!));
        string repo = Path.Combine(cache, "datasets--vaghawan--hausa-csv");
        Assert.Equal(ParquetCommit, File.ReadAllText(Path.Combine(repo, "refs", "refs", "convert", "parquet")));
        Assert.False(File.Exists(Path.Combine(repo, "snapshots", ParquetCommit, "default", "train", "0000.parquet"))); // the other split stays on the Hub

        int requests = hub.Requests.Count;
        env["HF_HUB_OFFLINE"] = "1";
        string again = HubPaths.Resolve("vaghawan/hausa-csv", HubRepoType.Dataset, "--input", null, env, "validation");
        Assert.Equal(Path.Combine(repo, "snapshots", ParquetCommit), again);
        Assert.Equal(requests, hub.Requests.Count);
    }

    /// <summary>Two processes (here two threads, each with its own client) resolving one id into one empty cache at once:
    /// both get the whole snapshot, each blob is downloaded once (the other waits on its lock), nothing partial is left.</summary>
    [Fact]
    public void Two_resolvers_racing_on_one_cache_download_each_blob_once()
    {
        var s = Start("hub-race");
        using var hub = s.Hub;
        var results = new string[2];
        var threads = Enumerable.Range(0, 2).Select(i => new Thread(() => results[i] = HubPaths.Resolve(ModelId, HubRepoType.Model, "--model", null, s.Env, log: TextWriter.Null))).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Equal(results[0], results[1]);
        var downloads = hub.Requests.Where(r => r.Path.Contains("/resolve/", StringComparison.Ordinal) || r.Path.StartsWith("/cdn/", StringComparison.Ordinal))
            .GroupBy(r => r.Path).ToList();
        Assert.All(downloads, g => Assert.True(g.Count() == 1, $"{g.Key} was downloaded {g.Count()} times"));
        Assert.Equal(Directory.EnumerateFiles(s.Model, "*", SearchOption.AllDirectories).Count(), Directory.EnumerateFiles(results[0], "*", SearchOption.AllDirectories).Count());
        Assert.Empty(Directory.EnumerateFiles(s.Cache, "*.incomplete", SearchOption.AllDirectories));
        Assert.Empty(Directory.EnumerateFiles(s.Cache, "*.tmp", SearchOption.AllDirectories));
    }

    /// <summary>The seed's pipeline by name end to end: prepare a dataset split by id (only that split's shards are
    /// fetched; the token from --hub_token), train on it from a model by id, and `info --dataset_name` on the prepared
    /// records published as a dataset of their own, all through the stand-in.</summary>
    [Fact]
    public void A_dataset_by_name_is_prepared_and_trained_on()
    {
        var (f, hub) = RawDatasetHub("hub-dataset");
        using var _ = hub;
        string cache = TestPaths.NewTempDir("hub-dataset-cache");
        var env = new Dictionary<string, string> { ["HF_HUB_CACHE"] = cache, ["HF_ENDPOINT"] = hub.Endpoint };
        string published = Directory.CreateDirectory(Path.Combine(TestPaths.NewTempDir("hub-dataset-published"), "data")).FullName;
        string records = Path.Combine(published, "train-00000-of-00001.parquet");
        var prepare = Executables.Run(TestPaths.CliDll, ["prepare", "--dataset_name", "vaghawan/hausa-tts-22k", "--split", "train", "--output", records,
            "--model", ModelId, "--hub_token", Token], env, TimeSpan.FromMinutes(3));
        Assert.True(prepare.Exit == 0, prepare.Stderr + prepare.Stdout);
        env["HF_TOKEN"] = Token;
        var prepareValidation = Executables.Run(TestPaths.CliDll, ["prepare", "--dataset_name", "vaghawan/hausa-tts-22k", "--split", "validation",
            "--output", Path.Combine(published, "validation-00000-of-00001.parquet"), "--model", ModelId], env, TimeSpan.FromMinutes(3));
        Assert.True(prepareValidation.Exit == 0, prepareValidation.Stderr + prepareValidation.Stdout);
        string snapshot = Path.Combine(cache, "datasets--vaghawan--hausa-tts-22k", "snapshots", Commit, "data");
        Assert.Equal(["train-00000-of-00002.parquet", "train-00001-of-00002.parquet", "validation-00000-of-00001.parquet"], Directory.GetFiles(snapshot).Select(Path.GetFileName).Order());
        hub.Add("datasets", "vaghawan/hausa-prepared", Commit, Path.GetDirectoryName(published)!);

        string output = TestPaths.NewTempDir("hub-dataset-run");
        // The prepared records as a dataset of their own, its validation split evaluated: the seed's training call by name.
        var train = Executables.Run(TestPaths.RankDll, ["--train_data", "vaghawan/hausa-prepared", "--validation_split", "validation", "--init_model_path", ModelId,
            "--output_model_path", output, "--mixed_precision", "fp32", "--num_epochs", "1", "--batch_size", "2", "--gradient_accumulation_steps", "1",
            "--coordinator", "off"], env, TimeSpan.FromMinutes(3));
        Assert.True(train.Exit == 0, train.Stderr + train.Stdout);
        Assert.Contains("training 5 samples", train.Stdout);
        Assert.Contains("eval step", train.Stdout);
        Assert.True(File.Exists(Path.Combine(output, "last", "model.safetensors")));
        var info = Executables.Run(TestPaths.CliDll, ["info", "--dataset_name", "vaghawan/hausa-prepared", "--split", "train", "--json"], env, TimeSpan.FromMinutes(2));
        Assert.True(info.Exit == 0, info.Stderr + info.Stdout);
        Assert.Equal(5, (int)System.Text.Json.Nodes.JsonNode.Parse(info.Stdout)!["records"]!);
        foreach (string text in new[] { prepare.Stdout, prepare.Stderr, train.Stdout, train.Stderr, info.Stdout, info.Stderr })
            Assert.DoesNotContain(Token, text);
        foreach (string file in Directory.EnumerateFiles(output, "*", SearchOption.AllDirectories).Where(p => !p.EndsWith(".safetensors", StringComparison.Ordinal)))
            Assert.DoesNotContain(Token, File.ReadAllText(file));
    }
}
