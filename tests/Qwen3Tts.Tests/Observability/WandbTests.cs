using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Qwen3Tts.Coordinator.Observability;

namespace Qwen3Tts.Tests.Observability;

public class WandbTests
{
    /// <summary>Recognizable, so a leak is easy to spot in any file or message.</summary>
    const string Key = "FAKEKEY-wandb-0123456789abcdef-LEAKCANARY";
    static readonly string KeyCredential = Convert.ToBase64String(Encoding.UTF8.GetBytes("api:" + Key));

    static readonly WandbUploadOptions Fast = new()
    {
        FlushInterval = TimeSpan.FromMilliseconds(50),
        InitialBackoff = TimeSpan.FromMilliseconds(20),
        MaxBackoff = TimeSpan.FromMilliseconds(200),
        RequestTimeout = TimeSpan.FromSeconds(5),
        FinishTimeout = TimeSpan.FromSeconds(20),
    };

    static WandbSettings Online(FakeWandbServer server, string? runName = "tts-test") => new()
    {
        Mode = WandbMode.Online, ApiKey = Key, BaseUrl = server.BaseUrl, Project = "qwen3-tts-tests",
        DisplayName = runName, Tags = ["test", "ci"], Group = "unit",
    };

    static Dictionary<string, double> Metrics(long step) => new()
    {
        ["loss"] = 10.0 / step, ["talker_loss"] = 6.0 / step, ["sub_talker_loss"] = 4.0 / step,
        ["lr"] = 1e-4, ["grad_norm"] = 1.5, ["samples_per_second"] = 12.5,
    };

    static readonly Dictionary<string, object?> Config = new()
    {
        ["learning_rate"] = 2e-5, ["batch_size"] = 2, ["speaker_name"] = "speaker_test", ["num_epochs"] = 3,
    };

    static long[] Steps(FakeWandbServer.Run run) => run.History.Select(r => JsonNode.Parse(r)!["_step"]!.GetValue<long>()).ToArray();

    static void WaitUntil(Func<bool> condition, string what, int timeoutMs = 10_000)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(sw.ElapsedMilliseconds < timeoutMs, $"timed out waiting until {what}");
            Thread.Sleep(10);
        }
    }

    [Fact]
    public void A_run_upserts_sends_every_row_once_with_contiguous_offsets_then_completes()
    {
        using var server = new FakeWandbServer(Key);
        var dir = TestPaths.NewTempDir("wandb-run");
        string runId;
        using (var run = WandbRun.Start(Online(server), dir, Config, options: Fast))
        {
            Assert.False(run.Resumed);
            runId = run.RunId!;
            run.Output("training 10 steps");
            for (long step = 1; step <= 10; step++) run.Log(step, Metrics(step));
            run.SetSummary("best_eval_loss", 0.75);
            Assert.True(run.Finish(0));
        }

        server.AssertNoViolations();
        var seen = server.Single();
        Assert.Equal(runId, server.Runs.Keys.Single());
        Assert.Equal(Enumerable.Range(1, 10).Select(i => (long)i), Steps(seen));
        Assert.Equal(1, seen.Completions);
        Assert.Equal(0, seen.ExitCode);

        var upsert = Assert.Single(seen.Upserts);
        Assert.Equal("qwen3-tts-tests", upsert["project"]!.GetValue<string>());
        Assert.Equal("tts-test", upsert["displayName"]!.GetValue<string>());
        Assert.Equal("running", upsert["state"]!.GetValue<string>());
        Assert.Equal(["test", "ci"], upsert["tags"]!.AsArray().Select(t => t!.GetValue<string>()));
        var config = JsonNode.Parse(upsert["config"]!.GetValue<string>())!;
        Assert.Equal(2e-5, config["learning_rate"]!["value"]!.GetValue<double>());
        Assert.Equal("speaker_test", config["speaker_name"]!["value"]!.GetValue<string>());

        var last = JsonNode.Parse(seen.History[^1])!;
        Assert.Equal(1.0, last["loss"]!.GetValue<double>());
        Assert.True(last["_runtime"]!.GetValue<double>() >= 0);
        Assert.InRange(last["_timestamp"]!.GetValue<double>(), DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 60, DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 1);

        var summary = JsonNode.Parse(seen.Summary!)!;
        Assert.Equal(1.0, summary["loss"]!.GetValue<double>());
        Assert.Equal(0.75, summary["best_eval_loss"]!.GetValue<double>());
        Assert.Equal(10, summary["_step"]!.GetValue<long>());

        var output = Assert.Single(seen.Output);
        Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6} training 10 steps$", output);

        var state = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "wandb", "state.json")))!;
        Assert.Equal(10, state["historySent"]!.GetValue<long>());
        Assert.Equal(10, File.ReadAllLines(Path.Combine(dir, "wandb", "history.jsonl")).Length);
    }

    [Fact]
    public void A_resumed_run_keeps_its_id_and_continues_at_the_next_offset()
    {
        using var server = new FakeWandbServer(Key);
        var dir = TestPaths.NewTempDir("wandb-resume");
        string firstId;
        double firstRuntime;
        using (var run = WandbRun.Start(Online(server), dir, Config, options: Fast))
        {
            firstId = run.RunId!;
            for (long step = 1; step <= 5; step++) run.Log(step, Metrics(step));
            Thread.Sleep(30);
            run.Log(6, Metrics(6));
            Assert.True(run.Finish(0));
        }
        firstRuntime = JsonNode.Parse(server.Single().History[^1])!["_runtime"]!.GetValue<double>();

        using (var run = WandbRun.Start(Online(server), dir, config: null, options: Fast))
        {
            Assert.True(run.Resumed);
            Assert.Equal(firstId, run.RunId);
            Assert.Equal(6, run.HistoryRows);
            for (long step = 7; step <= 10; step++) run.Log(step, Metrics(step));
            Assert.True(run.Finish(0));
        }

        server.AssertNoViolations();
        var seen = server.Single();
        Assert.Equal(2, seen.Upserts.Count);
        Assert.All(seen.Upserts, u => Assert.Equal(firstId, u["name"]!.GetValue<string>()));
        Assert.Equal("bucket-" + firstId, seen.Upserts[1]["id"]!.GetValue<string>());
        Assert.NotNull(seen.Upserts[1]["config"]); // the first session's config, kept in the run folder
        Assert.Equal(Enumerable.Range(1, 10).Select(i => (long)i), Steps(seen));
        Assert.Contains(6L, seen.HistoryOffsets); // the second session's first chunk
        Assert.True(JsonNode.Parse(seen.History[6])!["_runtime"]!.GetValue<double>() >= firstRuntime, "runtime continues across sessions");
        Assert.Equal(0, seen.ExitCode);
    }

    [Fact]
    public void An_outage_never_blocks_logging_and_every_row_arrives_once_in_order_after_recovery()
    {
        using var server = new FakeWandbServer(Key);
        var dir = TestPaths.NewTempDir("wandb-outage");
        var log = new StringWriter();
        var slowest = TimeSpan.Zero;
        using var run = WandbRun.Start(Online(server), dir, Config, log, Fast);

        void Log(long step)
        {
            var sw = Stopwatch.StartNew();
            run.Log(step, Metrics(step));
            run.Output($"step {step}");
            if (sw.Elapsed > slowest) slowest = sw.Elapsed;
        }

        for (long step = 1; step <= 5; step++) Log(step);
        WaitUntil(() => server.HistoryCount == 5, "the first 5 rows arrive");

        server.State = FakeWandbServer.Health.Unavailable;
        for (long step = 6; step <= 15; step++) { Log(step); Thread.Sleep(20); }
        WaitUntil(() => server.Rejected >= 3, "the sender retries against the 503s");

        server.State = FakeWandbServer.Health.Refusing;
        for (long step = 16; step <= 25; step++) { Log(step); Thread.Sleep(20); }
        Thread.Sleep(200);
        Assert.Equal(5, server.Single().History.Count);

        server.State = FakeWandbServer.Health.Up;
        for (long step = 26; step <= 30; step++) Log(step);
        Assert.True(run.Finish(0));

        server.AssertNoViolations();
        var seen = server.Single();
        Assert.Equal(Enumerable.Range(1, 30).Select(i => (long)i), Steps(seen));
        Assert.Equal(Enumerable.Range(1, 30).Select(i => $"step {i}"), seen.Output.Select(l => l[(l.IndexOf(' ') + 1)..]));
        Assert.Equal(0, seen.ExitCode);
        // A Log that waited for the sender would sit out the outage's retries (seconds; the server only recovers after
        // these calls). 2 s is far above a non-blocking append even on a loaded machine.
        Assert.True(slowest < TimeSpan.FromSeconds(2), $"Log took {slowest.TotalMilliseconds:F0} ms during the outage");
        Assert.Contains("failed", log.ToString());
        Assert.Contains("reachable again", log.ToString());
    }

    [Fact]
    public void Offline_mode_writes_the_run_folder_and_sends_nothing_then_WandbSync_uploads_it()
    {
        using var server = new FakeWandbServer(Key);
        var dir = TestPaths.NewTempDir("wandb-offline");
        var offline = Online(server) with { Mode = WandbMode.Offline, ApiKey = null };
        string runId;
        using (var run = WandbRun.Start(offline, dir, Config, options: Fast))
        {
            runId = run.RunId!;
            for (long step = 1; step <= 12; step++) run.Log(step, Metrics(step));
            run.Output("done");
            Assert.False(run.Finish(0));
        }
        Assert.Equal(0, server.Requests);
        Assert.Equal(12, File.ReadAllLines(Path.Combine(dir, "wandb", "history.jsonl")).Length);
        Assert.True(File.Exists(Path.Combine(dir, "wandb", "summary.json")));

        var log = new StringWriter();
        var result = WandbSync.Run(dir, Online(server), log, Fast with { MaxLinesPerRequest = 5, MaxAttempts = 3 });

        Assert.Equal(new WandbSyncResult(runId, 12, 1, true), result);
        server.AssertNoViolations();
        var seen = server.Single();
        Assert.Equal(Enumerable.Range(1, 12).Select(i => (long)i), Steps(seen));
        Assert.Equal([0L, 5L, 10L], seen.HistoryOffsets);
        Assert.Equal(0, seen.ExitCode);
        Assert.NotNull(seen.Summary);

        // Again: nothing is pending, nothing is sent twice.
        int requests = server.Requests;
        var again = WandbSync.Run(Path.Combine(dir, "wandb"), Online(server), log, Fast with { MaxAttempts = 3 });
        Assert.Equal(0, again.HistoryRowsSent);
        Assert.Equal(12, seen.History.Count);
        Assert.Equal(requests, server.Requests); // a completed, fully sent run is not touched
        server.AssertNoViolations();
    }

    [Fact]
    public void The_key_appears_in_no_file_message_or_log_line()
    {
        var texts = new List<string>();
        var dirs = new List<string>();

        // A good run, whose output happens to mention the key.
        using (var server = new FakeWandbServer(Key))
        {
            var dir = TestPaths.NewTempDir("wandb-key-ok");
            dirs.Add(dir);
            var log = new StringWriter();
            using (var run = WandbRun.Start(Online(server), dir, new Dictionary<string, object?> { ["note"] = "key is " + Key }, log, Fast))
            {
                run.Output("WANDB_API_KEY=" + Key);
                run.Log(1, Metrics(1));
                Assert.True(run.Finish(0));
            }
            texts.Add(log.ToString());
            texts.AddRange(server.Single().Output);
            texts.Add(server.Single().Upserts[0].ToJsonString());
        }

        // A server that rejects the key: the run warns and goes on; wandb-sync throws.
        using (var server = new FakeWandbServer("another-key"))
        {
            var dir = TestPaths.NewTempDir("wandb-key-401");
            dirs.Add(dir);
            var log = new StringWriter();
            using (var run = WandbRun.Start(Online(server), dir, Config, log, Fast))
            {
                run.Log(1, Metrics(1));
                Assert.False(run.Finish(1, TimeSpan.FromSeconds(2)));
            }
            Assert.Contains("401", log.ToString());
            texts.Add(log.ToString());
            var e = Assert.Throws<WandbException>(() => WandbSync.Run(dir, Online(server), log, Fast with { MaxAttempts = 2 }));
            Assert.Contains(WandbEnv.ApiKey, e.Message);
            texts.Add(e.ToString());
        }

        // Nothing listening: network errors until wandb-sync gives up.
        {
            var dead = new FakeWandbServer(Key);
            var settings = Online(dead);
            dead.Dispose();
            var dir = TestPaths.NewTempDir("wandb-key-dead");
            dirs.Add(dir);
            var log = new StringWriter();
            using (var run = WandbRun.Start(settings, dir, Config, log, Fast))
            {
                run.Log(1, Metrics(1));
                Assert.False(run.Finish(0, TimeSpan.FromMilliseconds(300)));
            }
            var e = Assert.Throws<WandbException>(() => WandbSync.Run(dir, settings, log, Fast with { MaxAttempts = 2 }));
            texts.Add(e.ToString());
            texts.Add(log.ToString());
        }

        texts.Add(new WandbSettings { ApiKey = Key }.ToString());
        texts.Add(WandbSettings.Resolve(new Dictionary<string, string> { [WandbEnv.ApiKey] = Key }, new WandbFlags(UseWandb: true)).ToString());
        var missing = Assert.Throws<ArgumentException>(() => WandbSettings.Resolve(
            new Dictionary<string, string> { [WandbEnv.ApiKey] = Key, [WandbEnv.BaseUrl] = "ftp://x" }, new WandbFlags(true)));
        texts.Add(missing.Message);

        foreach (var file in dirs.SelectMany(d => Directory.EnumerateFiles(d, "*", SearchOption.AllDirectories)))
            texts.Add(File.ReadAllText(file));
        Assert.True(texts.Count > 10);
        foreach (var text in texts)
        {
            Assert.DoesNotContain(Key, text);
            Assert.DoesNotContain(KeyCredential, text);
        }
    }

    [Fact]
    public void Settings_come_from_env_and_flags_with_flags_winning()
    {
        var env = new Dictionary<string, string>
        {
            [WandbEnv.ApiKey] = Key, [WandbEnv.Project] = "env-project", [WandbEnv.Entity] = "team",
            [WandbEnv.Name] = "env-name", [WandbEnv.Tags] = "a, b,,c", [WandbEnv.BaseUrl] = "http://localhost:8080/",
            [WandbEnv.RunGroup] = "g", [WandbEnv.RunId] = "abc123",
        };
        var s = WandbSettings.Resolve(env, new WandbFlags(UseWandb: true, Project: "flag-project", RunName: "flag-name"));
        Assert.Equal(WandbMode.Online, s.Mode);
        Assert.Equal(("flag-project", "flag-name", "team", "g", "abc123"), (s.Project, s.DisplayName, s.Entity, s.Group, s.RunId));
        Assert.Equal(["a", "b", "c"], s.Tags);
        Assert.Equal("http://localhost:8080", s.BaseUrl);

        var fromEnv = WandbSettings.Resolve(env, new WandbFlags(UseWandb: true));
        Assert.Equal(("env-project", "env-name"), (fromEnv.Project, fromEnv.DisplayName));

        Assert.Equal(WandbMode.Disabled, WandbSettings.Resolve(env, new WandbFlags(UseWandb: false)).Mode);
        Assert.Equal(WandbMode.Disabled, WandbSettings.Resolve(new Dictionary<string, string> { [WandbEnv.Mode] = "disabled" }, new WandbFlags(true)).Mode);
        Assert.Equal(WandbMode.Disabled, WandbSettings.Resolve(new Dictionary<string, string> { [WandbEnv.Disabled] = "true" }, new WandbFlags(true)).Mode);
        var offline = WandbSettings.Resolve(new Dictionary<string, string> { [WandbEnv.Mode] = "dryrun" }, new WandbFlags(true));
        Assert.Equal((WandbMode.Offline, WandbSettings.DefaultProject, WandbSettings.DefaultBaseUrl), (offline.Mode, offline.Project, offline.BaseUrl));

        var noKey = Assert.Throws<ArgumentException>(() => WandbSettings.Resolve(new Dictionary<string, string>(), new WandbFlags(true)));
        Assert.Contains(WandbEnv.ApiKey, noKey.Message);
        Assert.Contains("offline", noKey.Message);
        var badMode = Assert.Throws<ArgumentException>(() => WandbSettings.Resolve(new Dictionary<string, string> { [WandbEnv.Mode] = "sometimes" }, new WandbFlags(true)));
        Assert.Contains(WandbEnv.Mode, badMode.Message);

        Assert.DoesNotContain(Key, s.ToString());
        Assert.Contains("ApiKey = ***", s.ToString());
    }

    [Fact]
    public void Disabled_runs_write_nothing_and_rows_keep_nan_as_python_json_does()
    {
        var dir = TestPaths.NewTempDir("wandb-disabled");
        using (var run = WandbRun.Start(WandbSettings.Disabled, dir))
        {
            run.Log(1, Metrics(1));
            Assert.True(run.Finish());
            Assert.Null(run.RunId);
        }
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir));

        using (var run = WandbRun.Start(new WandbSettings { Mode = WandbMode.Offline }, dir))
        {
            run.Log(1, new Dictionary<string, double> { ["loss"] = double.NaN, ["grad_norm"] = double.PositiveInfinity });
            run.Log(0, Metrics(1)); // a step back: dropped
            Assert.Throws<ArgumentException>(() => run.Log(2, new Dictionary<string, double> { ["_step"] = 1 }));
        }
        var row = Assert.Single(File.ReadAllLines(Path.Combine(dir, "wandb", "history.jsonl")));
        Assert.Contains("\"loss\":NaN", row);
        Assert.Contains("\"grad_norm\":Infinity", row);
    }
}
