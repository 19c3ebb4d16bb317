using System.Net;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Qwen3Tts.Entry.Hub;
using Qwen3Tts.Model;
using Qwen3Tts.Tests.Entry;
using Qwen3Tts.Tests.Training;

namespace Qwen3Tts.Tests.Hub;

/// <summary>The trainer's --upload_to_hub against the loopback stand-in (<see cref="HubStandIn"/>): best/ and last/
/// published as custom_voice models with their cards (through retried server errors), loadable by name; a Hub that is
/// down costs nothing but a line, and `qwen3tts hub-upload` publishes the staged folders afterwards; the token appears
/// in no log, card, output file or upload.</summary>
public class HubPublishTests : CleansTempDirs
{
    const string Token = "hf_StandInPublishToken0123456789", Commit = "feedfacefeedfacefeedfacefeedfacefeedface";
    const string BaseId = "Qwen/Qwen3-TTS-12Hz-0.6B-Base";

    static Dictionary<string, string> Env(HubStandIn hub, string? token = Token)
    {
        var env = new Dictionary<string, string> { ["HF_HUB_CACHE"] = TestPaths.NewTempDir("hub-publish-cache"), ["HF_ENDPOINT"] = hub.Endpoint };
        if (token is not null) env["HF_TOKEN"] = token;
        return env;
    }

    static string[] Train(string model, string data, string output, params string[] more) =>
    [
        "--train_jsonl", data, "--validation_jsonl", data, "--init_model_path", model, "--output_model_path", output, "--speaker_name", "amina",
        "--mixed_precision", "fp32", "--num_epochs", "1", "--batch_size", "2", "--gradient_accumulation_steps", "1", "--coordinator", "off", .. more,
    ];

    static Dictionary<string, byte[]> Local(string dir) => Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)
        .ToDictionary(f => Path.GetRelativePath(dir, f).Replace(Path.DirectorySeparatorChar, '/'), File.ReadAllBytes);

    /// <summary>The repo holds exactly the staged folder (and the .gitattributes a new repo starts with), byte for byte,
    /// and its last commit named each safetensors file by its sha256 and size.</summary>
    static void AssertPublished(HubStandIn hub, string repo, string staged)
    {
        var local = Local(staged);
        var published = hub.Files("models", repo);
        Assert.Equal(local.Keys.Append(".gitattributes").Order(StringComparer.Ordinal), published.Keys.Order(StringComparer.Ordinal));
        foreach (var (path, bytes) in local) Assert.True(bytes.AsSpan().SequenceEqual(published[path]), $"{repo}/{path} differs from {staged}");
        var files = hub.Commits.Where(c => c.Repo == repo).SelectMany(c => c.Files).ToList();
        foreach (var (path, bytes) in local.Where(f => f.Key.EndsWith(".safetensors", StringComparison.Ordinal)))
            Assert.Contains(files, f => f.Path == path && f.Key == "lfsFile" && f.Oid == Convert.ToHexStringLower(SHA256.HashData(bytes)) && f.Size == bytes.Length);
    }

    static void AssertNoToken(string output, HubStandIn hub, params Executables.Result[] runs)
    {
        foreach (var run in runs) Assert.DoesNotContain(Token, run.Stdout + run.Stderr);
        foreach (string file in Directory.EnumerateFiles(output, "*", SearchOption.AllDirectories))
            Assert.False(File.ReadAllText(file).Contains(Token, StringComparison.Ordinal), $"{file} holds the token");
        foreach (var repo in hub.Created.Select(c => c.Id))
            foreach (var (path, bytes) in hub.Files("models", repo))
                Assert.False(System.Text.Encoding.UTF8.GetString(bytes).Contains(Token, StringComparison.Ordinal), $"{repo}/{path} holds the token");
    }

    [Fact]
    public void Best_and_last_are_published_as_custom_voice_models_with_cards_through_server_errors_and_load_by_name()
    {
        using var hub = new HubStandIn(Token);
        hub.Add("models", BaseId, Commit, TrainingFixture.TinyModel(43, "hub-publish-base"));
        hub.FailAt["commit"] = new([HttpStatusCode.InternalServerError, HttpStatusCode.InternalServerError]);
        var env = Env(hub);
        string data = TrainingFixture.DemoData(4, tag: "hub-publish-data"), output = TestPaths.NewTempDir("hub-publish-run");

        var run = Executables.Run(TestPaths.RankDll, Train(BaseId, data, output, "--eval_steps", "1", "--upload_to_hub", "--hub_upload_every_eval",
            "--hub_model_id_best", "me/tts-best", "--hub_model_id_last", "me/tts-last", "--hub_private", "--hub_token", Token), env, TimeSpan.FromMinutes(4));

        Assert.True(run.Exit == 0, run.Stderr + run.Stdout);
        Assert.Contains("HTTP 500; retrying (attempt 2 of 4)", run.Stdout);
        Assert.Equal([("me/tts-best", true), ("me/tts-last", true)], hub.Created.OrderBy(c => c.Id, StringComparer.Ordinal));
        Assert.Contains("hub: published last/ to me/tts-last", run.Stdout);
        AssertPublished(hub, "me/tts-best", Path.Combine(output, "hub", "best"));
        AssertPublished(hub, "me/tts-last", Path.Combine(output, "hub", "last"));
        // What best/ holds now (the lowest validation loss of the run) is what the repo holds.
        var bestState = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "best", "training_state", "trainer_state.json")))!;
        long bestStep = (long)bestState["global_step"]!;
        Assert.Contains($"Upload best/: step {bestStep}, validation loss", hub.Commits.Last(c => c.Repo == "me/tts-best").Summary);

        foreach (string repo in new[] { "me/tts-best", "me/tts-last" })
        {
            var files = hub.Files("models", repo);
            var config = JsonNode.Parse(files["config.json"])!;
            Assert.Equal("custom_voice", (string)config["tts_model_type"]!);
            Assert.Equal(["amina"], config["talker_config"]!["spk_id"]!.AsObject().Select(kv => kv.Key));
            Assert.DoesNotContain(files.Keys, k => k.StartsWith("exported_from", StringComparison.Ordinal)); // it names a local path
            string card = System.Text.Encoding.UTF8.GetString(files["README.md"]);
            Assert.StartsWith("---\nbase_model: " + BaseId + "\n", card);
            Assert.Contains("pipeline_tag: text-to-speech", card);
            Assert.Contains("- `amina`", card);
            // The demo data is Hausa, which the tiny model has no codec tag for: it trained with the auto prompt, and speaks so.
            Assert.Contains("language=\"auto\", speaker=\"amina\"", card);
            Assert.Contains("language:\n- ha\n", card);
            Assert.Contains("--upload_to_hub", card); // the command line, without the token flag
            Assert.DoesNotContain("--hub_token", card);
        }
        Assert.Contains(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"| validation loss | {(double)bestState["best_eval_loss"]!:F4} (best, step {bestStep}) |"),
            System.Text.Encoding.UTF8.GetString(hub.Files("models", "me/tts-best")["README.md"]));

        // Loads by name: downloaded into an empty cache and loaded strictly as the custom_voice model it says it is.
        string snapshot = HubPaths.Resolve("me/tts-best", HubRepoType.Model, "--model", null, Env(hub));
        using (var model = ModelDirectory.Load(snapshot)) Assert.Null(model.SpeakerEncoder);
        AssertNoToken(output, hub, run);
    }

    [Fact]
    public void A_hub_that_is_down_costs_a_line_and_hub_upload_publishes_the_staged_checkpoints_afterwards()
    {
        using var hub = new HubStandIn(Token);
        string model = TrainingFixture.TinyModel(43, "hub-down-base"), data = TrainingFixture.DemoData(4, tag: "hub-down-data");
        string output = TestPaths.NewTempDir("hub-down-run");
        string[] publish = ["--upload_to_hub", "--hub_model_id_best", "me/tts-best", "--hub_model_id_last", "me/tts-last"];

        // No token: refused before any training.
        var noToken = Executables.Run(TestPaths.RankDll, Train(model, data, output, publish), Env(hub, token: null), TimeSpan.FromMinutes(2));
        Executables.AssertUserError(noToken, "error: --upload_to_hub: no token to write with: set HF_TOKEN (or --hub_token) to a Hub token with write access");
        Assert.False(Directory.Exists(Path.Combine(output, "last")));

        hub.Down = true;
        var run = Executables.Run(TestPaths.RankDll, Train(model, data, output, publish), Env(hub), TimeSpan.FromMinutes(4));
        Assert.True(run.Exit == 0, run.Stderr + run.Stdout);
        Assert.Contains("done: 2 steps", run.Stdout);
        string stagedBest = Path.Combine(output, "hub", "best"), stagedLast = Path.Combine(output, "hub", "last");
        Assert.Contains($"hub: publishing best/ to me/tts-best failed: creating me/tts-best failed 4 times (HTTP 503); check the network and HF_ENDPOINT. " +
            $"The checkpoint is kept; publish it later with: qwen3tts hub-upload {stagedBest} --repo me/tts-best", run.Stdout);
        foreach (string dir in new[] { "best", "last", "custom_voice" }) Assert.True(File.Exists(Path.Combine(output, dir, "model.safetensors")), dir);
        Assert.Empty(hub.Commits);

        hub.Down = false;
        var upload = Executables.Run(TestPaths.CliDll, ["hub-upload", stagedBest, "--repo", "me/tts-best"], Env(hub), TimeSpan.FromMinutes(2));
        Assert.True(upload.Exit == 0, upload.Stderr + upload.Stdout);
        AssertPublished(hub, "me/tts-best", stagedBest);
        var uploadLast = Executables.Run(TestPaths.CliDll, ["hub-upload", stagedLast, "--repo", "me/tts-last", "--private"], Env(hub), TimeSpan.FromMinutes(2));
        Assert.True(uploadLast.Exit == 0, uploadLast.Stderr + uploadLast.Stdout);
        AssertPublished(hub, "me/tts-last", stagedLast);
        Assert.Contains(("me/tts-last", true), hub.Created);
        // Again: the repo holds it all, nothing is sent.
        int puts = hub.Requests.Count(r => r.Method == "PUT");
        var again = Executables.Run(TestPaths.CliDll, ["hub-upload", stagedBest, "--repo", "me/tts-best"], Env(hub), TimeSpan.FromMinutes(2));
        Assert.True(again.Exit == 0, again.Stderr + again.Stdout);
        Assert.Contains("me/tts-best already holds", again.Stdout);
        Assert.Equal(2, hub.Commits.Count);
        Assert.Equal(puts, hub.Requests.Count(r => r.Method == "PUT"));
        AssertNoToken(output, hub, noToken, run, upload, uploadLast, again);
    }
}

public class SecretValuesTests
{
    [Fact]
    public void A_command_line_is_written_down_without_secret_flags_or_values()
    {
        var secrets = new[] { ("WANDB_API_KEY", "wandb-key-0123456789"), ("--hub_token", "hf_abcdefgh12345") };
        string line = Qwen3Tts.Entry.SecretValues.CommandLine("qwen3tts-rank",
            ["--train_jsonl", "my data.jsonl", "--hub_token", "hf_abcdefgh12345", "--hub-token=hf_abcdefgh12345", "--coordinator_token", "c0ffee-c0ffee",
             "--wandb_run_name", "run-wandb-key-0123456789", "--lr", "2e-5"], secrets);
        Assert.Equal("qwen3tts-rank --train_jsonl 'my data.jsonl' --wandb_run_name *** --lr 2e-5", line);
    }
}
