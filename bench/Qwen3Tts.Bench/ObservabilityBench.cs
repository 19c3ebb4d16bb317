using System.Diagnostics;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using Qwen3Tts.Coordinator.Observability;
using Qwen3Tts.Model;
using Qwen3Tts.Rank.Training;
using static TorchSharp.torch;

namespace Qwen3Tts.Bench;

/// <summary>Training throughput with observability off vs on (WandB offline rows + OpenTelemetry metrics and spans into
/// in-memory exporters, the same instrumentation an OTLP export uses), runs alternating so machine load hits both alike.</summary>
static class ObservabilityBench
{
    static int LoggingSteps = 10; // the trainer's default


    public static int Run(string[] args)
    {
        int rounds = BenchArgs.Int(args, "--rounds", 3);
        LoggingSteps = BenchArgs.Int(args, "--logging_steps", LoggingSteps);
        string root = Path.Combine(Path.GetTempPath(), $"qwen3tts-bench-obs-{Environment.ProcessId}");
        try
        {
            string model = Path.Combine(root, "model");
            ModelDirectory.CreateRandom(model, "tiny", 0, ScalarType.Float32);
            string demo = Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "assets", "demo");
            string data = Path.Combine(root, "train.jsonl");
            File.Copy(Path.Combine(demo, "ref_voice.wav"), Path.Combine(root, "ref_voice.wav"));
            File.WriteAllLines(data, Enumerable.Repeat(File.ReadAllLines(Path.Combine(demo, "train.jsonl")), 10).SelectMany(l => l)); // 160 samples

            var off = new List<double>();
            var on = new List<double>();
            long steps = 0;
            for (int r = 0; r < rounds + 1; r++) // round 0 warms up the JIT and caches
            {
                foreach (bool observed in new[] { false, true })
                {
                    var o = new TrainingOptions
                    {
                        TrainData = data, InitModelPath = model, OutputModelPath = Path.Combine(root, $"out-{r}-{observed}"),
                        MixedPrecision = "fp32", NumEpochs = 1, BatchSize = 4, GradientAccumulationSteps = 1, LoggingSteps = LoggingSteps,
                    };
                    var result = observed ? Observed(o) : new Trainer(o, TextWriter.Null) { Wandb = WandbSettings.Disabled }.Run();
                    steps = result.GlobalStep;
                    if (r > 0) (observed ? on : off).Add(result.TrainSeconds);
                    Directory.Delete(o.OutputModelPath, recursive: true);
                }
            }
            double a = Median(off), b = Median(on);
            Console.WriteLine($"tiny model, {steps} optimizer steps per run (batch 4, a metrics row and log line every {LoggingSteps} steps; OTel spans and metrics every step), median of {rounds} alternating runs:");
            Console.WriteLine($"{"observability",-44} {"train s",8} {"steps/s",8} {"overhead",9}");
            Console.WriteLine($"{"off",-44} {a,8:F2} {steps / a,8:F1} {"",9}");
            Console.WriteLine($"{"on (WandB offline + OTel metrics and spans)",-44} {b,8:F2} {steps / b,8:F1} {(b / a - 1),9:P1}");
            Console.WriteLine($"runs off: {string.Join(", ", off.Select(x => x.ToString("F2")))}; on: {string.Join(", ", on.Select(x => x.ToString("F2")))}");
            return 0;
        }
        finally
        {
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
        }
    }

    static TrainingResult Observed(TrainingOptions o)
    {
        var metrics = new List<Metric>();
        var spans = new List<Activity>();
        using var telemetry = TelemetrySetup.Start("qwen3tts-bench", 0, 1, "bench", new Dictionary<string, string>(),
            m => m.AddInMemoryExporter(metrics), t => t.AddInMemoryExporter(spans));
        return new Trainer(o, TextWriter.Null) { Wandb = new WandbSettings { Mode = WandbMode.Offline } }.Run();
    }

    static double Median(List<double> xs)
    {
        var s = xs.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}
