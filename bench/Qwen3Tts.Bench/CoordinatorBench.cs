using System.Diagnostics;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Qwen3Tts.Coordinator;
using Qwen3Tts.Coordinator.Planning;
using Qwen3Tts.Protocol.V1;
using V1 = Qwen3Tts.Protocol.V1;

namespace Qwen3Tts.Bench;

/// <summary>The coordinator under load: plan computation time (length-grouped against random batching, same data), then
/// several hundred simulated ranks on loopback, each its own gRPC channel, leasing one global batch at a time, reporting
/// the step and heartbeating, all at once. Prints p50/p99 latency per call.</summary>
static class CoordinatorBench
{
    public static int Run(string[] args)
    {
        int ranks = BenchArgs.Int(args, "--ranks", 256);
        PlanTimes();
        return LoadAsync(ranks).GetAwaiter().GetResult();
    }

    static void PlanTimes()
    {
        Console.WriteLine($"{"samples",10} {"global batch",12} {"random ms",10} {"grouped ms",11} {"ratio",6} {"padding random",15} {"padding grouped",16}");
        foreach (int n in new[] { 10_000, 100_000, 1_000_000 })
        {
            var rng = new Random(1);
            // Codec frames of 1–20 s clips at 12.5 Hz.
            var lengths = Enumerable.Range(0, n).Select(_ => rng.Next(13, 250)).ToArray();
            const int globalBatch = 64;
            double Time(Func<IReadOnlyList<int[]>> plan)
            {
                plan();
                double best = double.MaxValue;
                for (int i = 0; i < 3; i++)
                {
                    var sw = Stopwatch.StartNew();
                    plan();
                    best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
                }
                return best;
            }
            double random = Time(() => EpochPlan.GlobalBatches(n, 42, 0, globalBatch));
            double grouped = Time(() => EpochPlan.GlobalBatches(lengths, 42, 0, globalBatch, 32));
            double padRandom = EpochPlan.PaddingFraction(EpochPlan.GlobalBatches(n, 42, 0, globalBatch), lengths, 8);
            double padGrouped = EpochPlan.PaddingFraction(EpochPlan.GlobalBatches(lengths, 42, 0, globalBatch, 32), lengths, 8);
            Console.WriteLine($"{n,10} {globalBatch,12} {random,10:F1} {grouped,11:F1} {grouped / random,6:F2} {padRandom,15:P1} {padGrouped,16:P1}");
        }
        Console.WriteLine("(padding: share of codec frames computed that are padding, 8 ranks × 8 samples, window 32 global batches)");
        Console.WriteLine();
    }

    static async Task<int> LoadAsync(int ranks)
    {
        const int perRank = 2, batchesPerRank = 40;
        string dir = Path.Combine(Path.GetTempPath(), $"qwen3tts-coordinator-bench-{Environment.ProcessId}");
        var rng = new Random(2);
        var lengths = Enumerable.Range(0, ranks * perRank * batchesPerRank).Select(_ => rng.Next(13, 250)).ToArray();
        var settings = PlanSettings.Bucketed(lengths, 42, perRank, 32);
        const string token = "bench-token-0123456789abcdef";
        try
        {
            await using var host = await CoordinatorHost.StartAsync(new CoordinatorHostOptions(new CoordinatorOptions(dir, settings)
            {
                WorldSize = ranks,
                HeartbeatTimeout = TimeSpan.FromMinutes(5),
            }) { Token = token });

            var clients = Enumerable.Range(0, ranks).Select(_ =>
            {
                var channel = GrpcChannel.ForAddress(host.Address);
                return (channel, api: new V1.Coordinator.CoordinatorClient(channel.Intercept(m => { m.Add("authorization", $"Bearer {token}"); return m; })));
            }).ToList();
            const int version = Qwen3Tts.Coordinator.ProtocolVersion.Current;
            await Task.WhenAll(clients.Select((c, r) => c.api.RegisterAsync(new RegisterRequest { Rank = r, WorldSize = ranks, Host = "bench", ProtocolVersion = version }).ResponseAsync));

            var lease = new List<double>[ranks];
            var report = new List<double>[ranks];
            var beat = new List<double>[ranks];
            var wall = Stopwatch.StartNew();
            await Task.WhenAll(clients.Select((c, r) => Task.Run(async () =>
            {
                (lease[r], report[r], beat[r]) = ([], [], []);
                for (long b = 0; b < batchesPerRank; b++)
                {
                    var sw = Stopwatch.StartNew();
                    var reply = await c.api.LeaseBatchesAsync(new LeaseBatchesRequest { ProtocolVersion = version, Rank = r, Epoch = 0, FromBatch = b, MaxBatches = 1 });
                    lease[r].Add(sw.Elapsed.TotalMilliseconds);
                    if (reply.Batches.Count != 1) throw new InvalidOperationException($"rank {r}: no batch {b}");
                    sw.Restart();
                    await c.api.ReportStepAsync(new ReportStepRequest
                    {
                        ProtocolVersion = version, Rank = r, Step = b + 1, Metrics = { ["train/loss"] = 1.0 / (b + 1) },
                        Position = new V1.PlanPosition { Epoch = 0, NextBatch = b + 1 },
                    });
                    report[r].Add(sw.Elapsed.TotalMilliseconds);
                    sw.Restart();
                    await c.api.HeartbeatAsync(new HeartbeatRequest { ProtocolVersion = version, Rank = r, Step = b + 1 });
                    beat[r].Add(sw.Elapsed.TotalMilliseconds);
                }
            })));
            double seconds = wall.Elapsed.TotalSeconds;
            foreach (var (channel, _) in clients) channel.Dispose();

            Console.WriteLine($"{ranks} simulated ranks on loopback, {batchesPerRank} steps each (lease 1 batch, report, heartbeat), all concurrent; {Environment.ProcessorCount} cores");
            Console.WriteLine($"{"call",-14} {"calls",7} {"p50 ms",8} {"p99 ms",8} {"max ms",8}");
            foreach (var (name, samples) in new[] { ("LeaseBatches", lease), ("ReportStep", report), ("Heartbeat", beat) })
            {
                var all = samples.SelectMany(s => s).Order().ToArray();
                Console.WriteLine($"{name,-14} {all.Length,7} {Percentile(all, 0.50),8:F2} {Percentile(all, 0.99),8:F2} {all[^1],8:F2}");
            }
            long calls = 3L * ranks * batchesPerRank;
            Console.WriteLine($"{calls} calls in {seconds:F2} s: {calls / seconds:F0} calls/s; the plan position reached {host.State.Position}");
            Console.WriteLine("(a real step takes 0.1–10 s; a rank makes ~3 calls per step, so the coordinator's load is that rate × world size)");
            return 0;
        }
        finally
        {
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
        }
    }

    static double Percentile(double[] sorted, double q) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];
}
