using Qwen3Tts.Entry;
using Qwen3Tts.Tests.Data;
using Qwen3Tts.Tests.Training;
using static Qwen3Tts.Tests.Entry.Executables;

namespace Qwen3Tts.Tests.Entry;

/// <summary>Every executable, built and run as a user runs it: a user error is one line naming the flag or file, exit
/// 2, no stack trace; a bug is exit 70 with "please report" and the trace.</summary>
public class ExecutableErrorTests : CleansTempDirs
{
    readonly string dir = TestPaths.NewTempDir("entry");
    static readonly string Demo = Path.Combine(TestPaths.RepoRoot, "assets", "demo", "train.jsonl");

    static string Dll(string exe) => exe switch
    {
        "qwen3tts" => TestPaths.CliDll,
        "qwen3tts-rank" => TestPaths.RankDll,
        "qwen3tts-coordinator" => TestPaths.CoordinatorDll,
        "qwen3tts-bench" => TestPaths.BenchDll,
        _ => throw new ArgumentException(exe),
    };

    [Theory]
    [InlineData("qwen3tts-rank", "--train_jsonl|x|--batch_size|abc", "error: --batch_size: 'abc' is not a whole number")]
    [InlineData("qwen3tts-rank", "--train_jsonl|x|--lr|fast", "error: --lr: 'fast' is not a number")]
    [InlineData("qwen3tts-rank", "--train_jsonl|x|--backend|tcp", "error: --backend: 'tcp' is not one of: auto, nccl, mpi")]
    [InlineData("qwen3tts-rank", "--train_jsonl|x|--batch_size", "error: --batch_size: expects a value (a whole number)")]
    [InlineData("qwen3tts", "init-model|--config|tiny|--out|o|--seed|1.5", "error: --seed: '1.5' is not a whole number")]
    [InlineData("qwen3tts", "init-model|--config|tiny", "error: --out is required")]
    [InlineData("qwen3tts-coordinator", "--train_jsonl|x|--port|http", "error: --port: 'http' is not a whole number")]
    [InlineData("qwen3tts-bench", "train-step|--steps|abc", "error: --steps: 'abc' is not a whole number")]
    public void A_bad_flag_value_names_the_flag_the_value_and_the_type(string exe, string args, string expected)
    {
        var r = Run(Dll(exe), args.Split('|'));
        AssertUserError(r, expected);
        if (exe != "qwen3tts-bench") Assert.StartsWith($"usage: {exe}", r.ErrorLines[1]); // one line, not the whole help
    }

    [Theory]
    [InlineData("qwen3tts-rank", "--train_jsonl|x|--batchsize|2", "error: unknown flag '--batchsize'; did you mean --batch_size?")]
    [InlineData("qwen3tts-rank", "--train_jsonl|x|--learning-rat|1e-4", "error: unknown flag '--learning-rat'; did you mean --learning_rate?")]
    [InlineData("qwen3tts", "synthesise|--text|hi", "error: unknown command 'synthesise'; did you mean synthesize?")]
    [InlineData("qwen3tts", "synthesize|--model|m|--text|hi|--out|o.wav|--speakr|x", "error: unknown flag '--speakr'; did you mean --speaker?")]
    [InlineData("qwen3tts-coordinator", "--train_jsonl|x|--heartbeat|5", "error: unknown flag '--heartbeat'; did you mean --heartbeat_timeout?")]
    public void An_unknown_flag_or_command_suggests_the_nearest(string exe, string args, string expected) =>
        AssertUserError(Run(Dll(exe), args.Split('|')), expected);

    [Fact]
    public void Output_paths_are_refused_before_any_work()
    {
        string file = Path.Combine(dir, "a-file");
        File.WriteAllText(file, "x");
        string under = Path.Combine(file, "sub", "out");
        string model = Path.Combine(dir, "no-model");

        AssertUserError(Run(TestPaths.RankDll, ["--train_jsonl", Demo, "--init_model_path", model, "--output_model_path", file]),
            $"error: --output_model_path: {file} is a file, not a folder");
        AssertUserError(Run(TestPaths.RankDll, ["--train_jsonl", Demo, "--init_model_path", model, "--output_model_path", under]),
            $"error: --output_model_path: {under} lies under {file}, which is a file");
        // From a --config file: checked as it is bound, still before anything starts.
        string config = Path.Combine(dir, "config.json");
        File.WriteAllText(config, $"{{\"output_model_path\": \"{file}\"}}");
        AssertUserError(Run(TestPaths.RankDll, ["--train_jsonl", Demo, "--init_model_path", model, "--config", config]),
            $"error: --output_model_path: {file} is a file, not a folder");
        AssertUserError(Run(TestPaths.CliDll, ["init-model", "--config", "tiny", "--out", under]),
            $"error: --out: {under} lies under {file}, which is a file");
        AssertUserError(Run(TestPaths.CliDll, ["synthesize", "--model", model, "--text", "hi", "--out", dir]),
            $"error: --out: {dir} is a folder, not a file");
        AssertUserError(Run(TestPaths.CoordinatorDll, ["--train_jsonl", Demo, "--output_model_path", file]),
            $"error: --output_model_path: {file} is a file, not a folder");
        // /proc takes no new files, even for root: "not writable" is found by trying.
        AssertUserError(Run(TestPaths.CliDll, ["init-model", "--config", "tiny", "--out", "/proc/qwen3tts-out"]),
            "error: --out: /proc/qwen3tts-out: /proc is not writable (cannot create files there)");
        Assert.Equal(new[] { config, file }.Order(), Directory.GetFileSystemEntries(dir).Order()); // nothing was written
    }

    [Fact]
    public void Bad_data_names_the_file_without_a_trace()
    {
        string parquet = Path.Combine(dir, "train.parquet");
        var codes = Enumerable.Range(0, 20).Select(f => Enumerable.Range(0, 16).Select(g => (long?)((f + g) % 2048)).ToArray()).ToArray<long?[]?>();
        ArrowParquet.Write(parquet, Enumerable.Range(0, 8).Select(i => new ParquetRow(Text: $"sentence {i}", Codes: codes)).ToList());
        byte[] bytes = File.ReadAllBytes(parquet);
        string truncated = Path.Combine(dir, "truncated.parquet");
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);

        foreach (var (dll, args) in new (string, string[])[]
                 {
                     (TestPaths.CliDll, ["info", truncated]),
                     (TestPaths.RankDll, ["--train_jsonl", truncated, "--init_model_path", Path.Combine(dir, "m"), "--output_model_path", Path.Combine(dir, "out")]),
                     (TestPaths.CoordinatorDll, ["--train_jsonl", truncated, "--output_model_path", Path.Combine(dir, "coord")]),
                 })
        {
            var r = Run(dll, args);
            Assert.True(r.Exit == 2, $"{Path.GetFileName(dll)}: exit {r.Exit}\n{r.Stderr}");
            Assert.StartsWith($"error: {truncated}", r.ErrorLines.Single(l => l.StartsWith("error:", StringComparison.Ordinal)));
            AssertNoStackTrace(r);
        }

        // A malformed JSONL line in a real run: the file and line, from the rank as from info.
        string good = TrainingFixture.DemoData(2, tag: "entry-data");
        string jsonl = Path.Combine(Path.GetDirectoryName(good)!, "bad.jsonl"); // beside it: the same relative ref_audio
        File.WriteAllLines(jsonl, [File.ReadLines(good).First(), "{\"text\": \"no codes\""]);
        var rank = Run(TestPaths.RankDll, ["--train_jsonl", jsonl, "--init_model_path", TrainingFixture.TinyModel(3, "entry-model"),
            "--output_model_path", Path.Combine(dir, "run"), "--mixed_precision", "fp32"]);
        Assert.True(rank.Exit == 2, $"exit {rank.Exit}\n{rank.Stderr}");
        string line = rank.ErrorLines.Single(l => l.StartsWith("error:", StringComparison.Ordinal));
        Assert.True(line.StartsWith($"error: {jsonl}:2", StringComparison.Ordinal), line);
        AssertNoStackTrace(rank);
    }

    [Fact]
    public void Bad_configs_name_the_file_without_a_trace()
    {
        // A --config of flag values that is not JSON.
        string flags = Path.Combine(dir, "flags.json");
        File.WriteAllText(flags, "{\"batch_size\": 2,");
        var r = Run(TestPaths.RankDll, ["--train_jsonl", Demo, "--init_model_path", dir, "--config", flags]);
        AssertUserError(r, r.ErrorLines[0]);
        Assert.StartsWith($"error: --config {flags}: not valid JSON", r.ErrorLines[0]);

        // A model folder whose config.json is broken: the trainer and inspect both name the file.
        string model = Path.Combine(dir, "model");
        Directory.CreateDirectory(model);
        File.WriteAllText(Path.Combine(model, "config.json"), "{\"talker_config\": 7}");
        foreach (var (dll, args) in new (string, string[])[]
                 {
                     (TestPaths.CliDll, ["inspect", model]),
                     (TestPaths.RankDll, ["--train_jsonl", Demo, "--init_model_path", model, "--output_model_path", Path.Combine(dir, "out")]),
                 })
        {
            var e = Run(dll, args);
            Assert.True(e.Exit == 2, $"{Path.GetFileName(dll)}: exit {e.Exit}\n{e.Stderr}");
            string line = e.ErrorLines.Single(l => l.StartsWith("error:", StringComparison.Ordinal));
            Assert.Contains("config.json", line);
            AssertNoStackTrace(e);
        }
    }

    [Theory]
    [InlineData("qwen3tts", "info|x.jsonl")]
    [InlineData("qwen3tts-rank", "--train_jsonl|x")]
    [InlineData("qwen3tts-coordinator", "--train_jsonl|x")]
    [InlineData("qwen3tts-bench", "resample")]
    public void A_bug_exits_70_with_please_report_and_the_trace(string exe, string args)
    {
        var r = Run(Dll(exe), args.Split('|'), new Dictionary<string, string> { [EntryPoint.SimulateBugVariable] = "1" });
        Assert.Equal(ExitCodes.InternalError, r.Exit);
        Assert.StartsWith("error: internal error (a bug; please report it", r.ErrorLines[0]);
        Assert.Contains(r.ErrorLines, l => l.TrimStart().StartsWith("at Qwen3Tts.Entry.EntryPoint.", StringComparison.Ordinal));
    }

    [Fact]
    public void Debug_adds_the_trace_to_a_user_error()
    {
        string missing = Path.Combine(dir, "missing.jsonl");
        var plain = Run(TestPaths.CliDll, ["info", missing]);
        AssertUserError(plain, $"error: {missing}: no such training data file or folder");
        var debug = Run(TestPaths.CliDll, ["info", missing, "--debug"]);
        Assert.Equal(2, debug.Exit);
        Assert.Equal(plain.ErrorLines[0], debug.ErrorLines[0]);
        Assert.Contains(debug.ErrorLines, l => l.TrimStart().StartsWith("at Qwen3Tts.", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("INT")]
    [InlineData("TERM")]
    public async Task The_coordinator_stops_cleanly_on_a_signal(string signal)
    {
        // Signals reach the service through PosixSignalRegistration (not Console.CancelKeyPress, which sets up the terminal).
        var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])[TestPaths.CoordinatorDll, "--train_jsonl", Demo, "--output_model_path", Path.Combine(dir, "coord")])
            start.ArgumentList.Add(a);
        using var process = System.Diagnostics.Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            var ready = Task.Run(() =>
            {
                for (string? line; (line = process.StandardOutput.ReadLine()) is not null;)
                    if (line.Contains("Ctrl+C stops")) return true;
                return false;
            });
            bool isReady = await ready.WaitAsync(TimeSpan.FromMinutes(1));
            Assert.True(isReady, $"the coordinator never got ready: {(process.HasExited ? await stderr : "")}");
            System.Diagnostics.Process.Start("kill", ["-" + signal, process.Id.ToString()])!.WaitForExit();
            Assert.True(process.WaitForExit(TimeSpan.FromSeconds(30)), $"still running 30 s after SIG{signal}");
            Assert.Equal(0, process.ExitCode);
            Assert.Equal("", await stderr);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    [Fact]
    public void Output_on_a_pseudo_terminal_carries_no_escape_codes()
    {
        // A launcher's pseudo-terminal (mpiexec, srun) is where .NET's console set-up codes (ESC[?1h ESC=) reached the logs.
        if (!File.Exists("/usr/bin/script")) { Assert.Fail("/usr/bin/script (util-linux) is missing"); return; }
        string command = $"dotnet {TestPaths.CliDll} info {Demo}; dotnet {TestPaths.RankDll} --train_jsonl x --batch_size abc";
        var r = RunProcess("/usr/bin/script", ["-qec", command, "/dev/null"], new Dictionary<string, string> { ["TERM"] = "xterm-256color" }, TimeSpan.FromMinutes(2));
        Assert.Contains("records   16", r.Stdout);
        Assert.Contains("--batch_size: 'abc' is not a whole number", r.Stdout);
        Assert.DoesNotContain('\u001b', r.Stdout);
    }
}
