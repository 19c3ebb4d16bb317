using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Codec;
using static TorchSharp.torch;

namespace Qwen3Tts.Bench;

/// <summary>Memory per rank of ZeRO stages 0, 1 and 2, measured on real ranks: for each stage one `mpiexec -n 2
/// qwen3tts-rank` job (the trainer end to end on the bundled demo data, a few bf16 steps) with every rank under
/// /usr/bin/time, on the mid config (4 talker layers at the 0.6B widths) with its text embedding narrowed by
/// --text_hidden so that two stage-0 ranks fit this 24 GB machine. Printed per stage: rank 0's planned total, rank 0's
/// peak after its first step (the trainer's own line), each rank's whole-process peak (the final checkpoint
/// included) and the step time against stage 0's. Then stage 2 with and without --gradient_checkpointing all at a larger
/// batch (activations matter there): planned activations, rank 0's step-1 peak and the step time against the plain step.</summary>
static partial class MemoryBench
{
    public static int Run(string[] args)
    {
        int textHidden = BenchArgs.Int(args, "--text_hidden", 1024);
        int steps = BenchArgs.Int(args, "--steps", 4);
        int checkpointBatch = BenchArgs.Int(args, "--checkpoint_batch", 8);
        string launcher = args.SkipWhile(a => a != "--launcher").Skip(1).FirstOrDefault() ?? "openmpi";
        string mpiexec = $"/usr/bin/mpiexec.{launcher}";
        if (!File.Exists(mpiexec)) throw new ArgumentException($"--launcher {launcher}: {mpiexec} is not installed");
        string repo = RepoRoot();
        string rankDll = Path.Combine(AppContext.BaseDirectory, "qwen3tts-rank.dll");
        string work = Directory.CreateTempSubdirectory("qwen3tts-memory-bench").FullName;
        try
        {
            string model = MidModel(repo, work, textHidden);
            string data = Path.Combine(repo, "assets", "demo", "train.jsonl");
            Console.WriteLine($"mid config (4 talker layers, 2 code-predictor layers at the 0.6B widths), text_hidden_size {textHidden}; bf16; " +
                $"2 ranks ({launcher}), batch 2 per rank, {steps} steps on {Path.GetRelativePath(repo, data)}; OMP_NUM_THREADS=1 per rank");
            Console.WriteLine();
            Console.WriteLine($"{"stage",5} {"planned GB",11} {"step-1 peak GB",15} {"plan/peak",10} {"job peaks GB",15} {"step s",8} {"vs stage 0",11}");
            double? baseline = null;
            for (int stage = 0; stage <= 2; stage++)
            {
                var r = Job(mpiexec, launcher, rankDll, model, data, Path.Combine(work, $"stage{stage}"), stage, steps);
                baseline ??= r.StepSeconds;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{stage,5} {r.Planned,11:F2} {r.StepPeak,15:F2} {r.Planned / r.StepPeak,10:F2} {$"{r.RankPeaks.Min():F2}, {r.RankPeaks.Max():F2}",15} {r.StepSeconds,8:F2} {r.StepSeconds / baseline,10:F2}x"));
            }
            Console.WriteLine();
            Console.WriteLine($"gradient checkpointing, stage 2, batch {checkpointBatch} per rank:");
            Console.WriteLine($"{"layers recomputed",18} {"planned activations GB",23} {"step-1 peak GB",15} {"step s",8} {"vs plain",9}");
            double? plain = null;
            // The demo's records repeated, so that the larger batch still gives several steps within one epoch.
            string repeated = Directory.CreateDirectory(Path.Combine(work, "demo")).FullName;
            foreach (var file in Directory.GetFiles(Path.GetDirectoryName(data)!)) File.Copy(file, Path.Combine(repeated, Path.GetFileName(file)));
            var records = File.ReadAllLines(data).Where(l => l.Trim().Length > 0).ToArray();
            int copies = (2 * checkpointBatch * (steps + 1) + records.Length - 1) / records.Length;
            File.WriteAllLines(Path.Combine(repeated, "train.jsonl"), Enumerable.Repeat(records, copies).SelectMany(r => r));
            foreach (string mode in new[] { "off", "all" })
            {
                var r = Job(mpiexec, launcher, rankDll, model, Path.Combine(repeated, "train.jsonl"), Path.Combine(work, $"checkpointing-{mode}"), 2, steps, checkpointBatch, mode);
                plain ??= r.StepSeconds;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{(mode == "off" ? "none" : "all"),18} {r.Activations,23:F2} {r.StepPeak,15:F2} {r.StepSeconds,8:F2} {r.StepSeconds / plain,8:F2}x"));
            }
            Console.WriteLine();
            Console.WriteLine("planned: the trainer's memory plan for rank 0 (weights, gradients, optimizer, buckets, activations of the longest batch, runtime);");
            Console.WriteLine("step-1 peak: rank 0's peak resident set after its first step; job peaks: /usr/bin/time's maximum resident set of each");
            Console.WriteLine("rank over the whole job (rank 0's includes writing the final checkpoint); step s: seconds per step after the first (between their log lines).");
            return 0;
        }
        finally { Directory.Delete(work, recursive: true); }
    }

    sealed record Result(double Planned, double Activations, double StepPeak, double[] RankPeaks, double StepSeconds);

    static Result Job(string mpiexec, string launcher, string rankDll, string model, string data, string output, int stage, int steps,
        int batch = 2, string checkpointing = "off")
    {
        var start = new ProcessStartInfo(mpiexec) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (launcher == "openmpi")
        {
            foreach (var a in (string[])["--allow-run-as-root", "--oversubscribe"]) start.ArgumentList.Add(a);
            start.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
            start.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        }
        start.Environment["OMP_NUM_THREADS"] = "1";
        foreach (var a in (string[])["-n", "2", "/usr/bin/time", "-f", "rank peak %M KB", "dotnet", rankDll, "--train_jsonl", data,
                     "--init_model_path", model, "--output_model_path", output, "--mixed_precision", "bf16", "--zero_stage", $"{stage}",
                     "--num_epochs", "1", "--batch_size", $"{batch}", "--gradient_accumulation_steps", "1", "--logging_steps", "1",
                     "--gradient_checkpointing", checkpointing,
                     "--stop_after_steps", $"{steps}", "--coordinator", "off", "--lr_scheduler", "constant"])
            start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        // Each step's line as it arrives: the time between the first and the last step line over the steps between them.
        var stdout = new System.Text.StringBuilder();
        var clock = Stopwatch.StartNew();
        var stepLines = new List<(int Step, double At)>();
        while (process.StandardOutput.ReadLine() is { } line)
        {
            stdout.AppendLine(line);
            if (StepLine().Match(line) is { Success: true } m) stepLines.Add((int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), clock.Elapsed.TotalSeconds));
        }
        process.WaitForExit();
        string log = stdout + stderr.Result;
        if (process.ExitCode != 0) throw new InvalidOperationException($"stage {stage}: mpiexec exited {process.ExitCode}:\n{log}");
        double Number(Regex pattern) => double.Parse(pattern.Match(log) is { Success: true } m ? m.Groups[1].Value
            : throw new InvalidOperationException($"stage {stage}: no '{pattern}' in the job's output:\n{log}"), CultureInfo.InvariantCulture);
        var peaks = RankPeak().Matches(log).Select(m => long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) * 1024 / 1e9).ToArray();
        if (peaks.Length != 2) throw new InvalidOperationException($"stage {stage}: expected two ranks' peaks:\n{log}");
        double stepSeconds = stepLines.Count < 2 ? double.NaN : (stepLines[^1].At - stepLines[0].At) / (stepLines[^1].Step - stepLines[0].Step);
        return new Result(Number(Planned()), Number(PlannedActivations()), Number(StepPeak()), peaks, stepSeconds);
    }

    /// <summary>The mid config with a narrower text embedding, written with random weights (fp32, as released).</summary>
    static string MidModel(string repo, string work, int textHidden)
    {
        string configDir = Directory.CreateDirectory(Path.Combine(work, "mid-config")).FullName;
        string reference = Path.Combine(repo, "assets", "reference", "Qwen3-TTS-12Hz-0.6B-Base");
        foreach (var file in Directory.GetFiles(reference)) File.Copy(file, Path.Combine(configDir, Path.GetFileName(file)));
        var json = TrainStepBench.MidConfig();
        json["talker_config"]!["text_hidden_size"] = textHidden;
        File.WriteAllText(Path.Combine(configDir, "config.json"), json.ToJsonString());
        // The demo data carries its codes: training never runs the codec, so a tiny one keeps the model folder small.
        string codec = Directory.CreateDirectory(Path.Combine(configDir, SpeechTokenizerConfig.FolderName)).FullName;
        File.WriteAllText(Path.Combine(codec, "config.json"), SpeechTokenizerConfig.ConfigJson("tiny").ToJsonString());
        string model = Path.Combine(work, "mid");
        ModelDirectory.CreateRandom(model, Path.Combine(configDir, "config.json"), 0, ScalarType.Float32);
        return model;
    }

    static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Qwen3Tts.Distributed.sln"))) return dir.FullName;
        throw new InvalidOperationException("run the bench from the repository's build output (assets/ is read from the repository)");
    }

    [GeneratedRegex(@"memory plan per rank: ~([0-9.]+) GB")] private static partial Regex Planned();
    [GeneratedRegex(@"memory plan per rank: .*activations ([0-9.]+),")] private static partial Regex PlannedActivations();
    [GeneratedRegex(@"memory after the first step: peak resident ([0-9.]+) GB")] private static partial Regex StepPeak();
    [GeneratedRegex(@"rank peak (\d+) KB")] private static partial Regex RankPeak();
    [GeneratedRegex(@"^epoch \d+ step (\d+)/")] private static partial Regex StepLine();
}
