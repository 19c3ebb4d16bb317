using System.Diagnostics;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Rank.Distributed;
using Qwen3Tts.Rank.Training;
using static TorchSharp.torch;

namespace Qwen3Tts.Bench;

/// <summary>How much of a data-parallel training step is exposed gradient communication, under mpiexec: the
/// trainer's step (forward, backward, gradient sync, clip, AdamW) with <see cref="GradientSynchronizer.SynchronizeAll"/>
/// (no overlap) against <see cref="GradientSynchronizer.Launch"/> after backward + <see cref="GradientSynchronizer.WaitAll"/>
/// before clipping (the trainer's order), alternating step by step on one model. Rank 0 prints.</summary>
static class OverlapBench
{
    public static int Run(string[] args)
    {
        int steps = Option(args, "--steps", 4);
        string precision = Option(args, "--precision", "fp32");
        var configs = Option(args, "--configs", "tiny,mid").Split(',');
        using var comm = MpiCommunicator.Start();
        // One node: share the cores between the ranks instead of oversubscribing them.
        int threads = Option(args, "--threads", Math.Max(1, Environment.ProcessorCount / comm.WorldSize));
        set_num_threads(threads);
        bool print = comm.Rank == 0;
        if (print)
        {
            Console.WriteLine($"{comm.Backend}; {comm.WorldSize} ranks x {threads} torch threads on {Environment.ProcessorCount} cores; {precision}; " +
                              $"batch {TrainStepBench.Batch} per rank; default buckets ({BucketAssignment.FirstBucketCapMb} MB first, {BucketAssignment.DefaultCapMb} MB cap)");
            Console.WriteLine($"median over {steps} steps per mode (modes alternate step by step, after one warm-up step each)");
            Console.WriteLine("exposed = step time blocked on sync (all of SynchronizeAll; WaitAll incl. copy-back); in flight = summed launch->done of the reduces; pack = flattening");
            Console.WriteLine();
            Console.WriteLine($"{"config",-6} {"mode",-17} {"step ms",9} {"exposed ms",11} {"exposed",8} {"in flight ms",13} {"pack ms",8} {"buckets",8} {"MB",7} {"step vs sync-all",17}");
        }
        foreach (var name in configs)
        {
            var config = Qwen3TtsConfig.Parse(name == "mid" ? TrainStepBench.MidConfig() : Presets.ConfigJson(name), name);
            var rows = Measure(comm, config, precision, steps);
            if (!print) continue;
            double baseline = rows[0].Step;
            foreach (var (mode, step, t) in rows)
                Console.WriteLine($"{name,-6} {mode,-17} {step * 1e3,9:F1} {t.ExposedSeconds * 1e3,11:F1} {t.ExposedSeconds / step,8:P1} {t.InFlightSeconds * 1e3,13:F1} " +
                                  $"{t.PackSeconds * 1e3,8:F1} {t.Buckets,8} {t.Bytes / 1e6,7:F1} {baseline / step,16:F2}x");
        }
        return 0;
    }

    static List<(string Mode, double Step, SyncTimings Timings)> Measure(ICommunicator comm, Qwen3TtsConfig config, string precision, int steps)
    {
        using var model = new Qwen3TtsModel(config);
        ModelInit.Initialize(model, 0, 0.02);
        using var trainable = new TrainableModel(model, TrainableModel.ParsePrecision(precision));
        using var optimizer = new AdamW(trainable.MasterParameters, new AdamWOptions(Lr: 1e-5));
        using var sync = new GradientSynchronizer(trainable.MasterParameters, comm,
            computeParameters: trainable.Precision == MixedPrecision.Bf16 ? trainable.ComputeParameters : null);
        using var batch = TrainStepBench.SyntheticBatch(config);
        using var speakers = randn(TrainStepBench.Batch, config.Talker.HiddenSize);
        var masters = trainable.MasterParameters.Select(p => (Tensor)p.Parameter).ToList();
        var samples = new[] { new List<(double, SyncTimings)>(), new List<(double, SyncTimings)>() };
        for (int i = 0; i < 2 * (steps + 1); i++)
        {
            bool overlap = i % 2 == 1;
            using var scope = NewDisposeScope();
            comm.Barrier(); // both ranks start the step together, so one's late start is not counted as the other's sync
            var sw = Stopwatch.StartNew();
            var loss = SftObjective.Compute(trainable.ComputeTalker, batch, speakers, LossAlignment.Fixed);
            loss.Loss.backward();
            if (overlap)
            {
                sync.Launch();
                trainable.AccumulateGradsToMaster();
                sync.WaitAll();
            }
            else
            {
                trainable.AccumulateGradsToMaster();
                sync.SynchronizeAll();
            }
            GradClip.ClipGradNorm(masters, 1.0);
            optimizer.Step(1e-5);
            optimizer.ZeroGrad();
            trainable.CopyMasterToCompute();
            double seconds = sw.Elapsed.TotalSeconds;
            if (i >= 2) samples[overlap ? 1 : 0].Add((seconds, sync.LastStep));
        }
        return [Summary("SynchronizeAll", samples[0]), Summary("Launch+WaitAll", samples[1])];
    }

    /// <summary>Medians of each column separately (a step's parts need not come from the median step).</summary>
    static (string, double, SyncTimings) Summary(string mode, List<(double Step, SyncTimings T)> xs)
    {
        double M(Func<(double Step, SyncTimings T), double> f) => TrainStepBench.Median(xs.Select(f).ToList());
        var last = xs[^1].T;
        return (mode, M(x => x.Step), new SyncTimings(M(x => x.T.ExposedSeconds), M(x => x.T.PackSeconds), M(x => x.T.InFlightSeconds), last.Buckets, last.Bytes));
    }

    static T Option<T>(string[] args, string name, T fallback) where T : IParsable<T>
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? T.Parse(args[i + 1], null) : fallback;
    }
}
