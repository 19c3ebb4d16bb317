using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Rank.Distributed;
using Qwen3Tts.Rank.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Distributed;

/// <summary>The TCP communicator's collectives as properties, with 2–4 ranks as threads of this process on 127.0.0.1
/// (each test on its own free port), and qwen3tts-rank as two real processes meeting at MASTER_ADDR:MASTER_PORT.</summary>
public class TcpCommunicatorTests(ITestOutputHelper output)
{
    static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    static TcpSettings Settings(int port, string? token = "job-secret", double rendezvousSeconds = 30, double collectiveSeconds = 60) =>
        new("127.0.0.1", port, TimeSpan.FromSeconds(rendezvousSeconds), TimeSpan.FromSeconds(collectiveSeconds), token);

    /// <summary>Runs <paramref name="body"/> on every rank, each on its own thread, and returns the results by rank.</summary>
    static T[] OnRanks<T>(int n, Func<int, T> body)
    {
        var tasks = Enumerable.Range(0, n).Select(r => Task.Factory.StartNew(() => body(r), TaskCreationOptions.LongRunning)).ToArray();
        Assert.True(Task.WaitAll(tasks, Limit), $"ranks still running after {Limit.TotalSeconds} s");
        return tasks.Select(t => t.Result).ToArray();
    }

    static TcpCommunicator[] World(int n)
    {
        int port = FreePort();
        return OnRanks(n, r => TcpCommunicator.Connect(r, n, r, Settings(port)));
    }

    static void DisposeAll(IEnumerable<ICommunicator> comms)
    {
        foreach (var c in comms) c.Dispose();
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Sum_of_the_ranks_is_n_times_n_minus_1_over_2_in_every_dtype(int n)
    {
        int port = FreePort();
        var comms = OnRanks(n, r => TcpCommunicator.Connect(r, n, r, Settings(port)));
        try
        {
            var results = OnRanks(n, r =>
            {
                var comm = comms[r];
                Assert.Equal((r, n, "tcp"), (comm.Rank, comm.WorldSize, comm.Backend[..3]));
                var ok = new List<bool>();
                // 3 elements on 4 ranks leaves some ring chunks empty; 1_000_003 spans several 1 MiB frames.
                foreach (var count in new long[] { 1, 3, 1000, 1_000_003 })
                foreach (var dtype in new[] { ScalarType.Float32, ScalarType.Float64, ScalarType.Int64 })
                {
                    using var t = full(count, r, dtype: dtype);
                    comm.AllReduceSum(t);
                    ok.Add(t.eq(n * (n - 1) / 2).all().item<bool>());
                }
                comm.Barrier();
                return ok.All(x => x);
            });
            Assert.All(results, Assert.True);
        }
        finally { DisposeAll(comms); }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void Random_floats_sum_to_the_same_bits_on_every_rank(int n)
    {
        int port = FreePort();
        var comms = OnRanks(n, r => TcpCommunicator.Connect(r, n, r, Settings(port)));
        try
        {
            const int count = 777_777;
            var inputs = Enumerable.Range(0, n).Select(r =>
            {
                var g = new Generator(1000 + (ulong)r);
                return randn(count, generator: g) * Math.Pow(10, r);
            }).ToArray();
            var expected = inputs.Select(x => x.to(ScalarType.Float64)).Aggregate((a, b) => a + b);
            var results = OnRanks(n, r =>
            {
                var t = inputs[r].clone();
                comms[r].AllReduceSum(t);
                return t;
            });
            for (int r = 1; r < n; r++) Assert.True(results[0].bytes.SequenceEqual(results[r].bytes), $"rank {r}'s sum differs in its bits from rank 0's");
            Assert.True(results[0].to(ScalarType.Float64).allclose(expected, rtol: 1e-5, atol: 1e-3));
        }
        finally { DisposeAll(comms); }
    }

    [Fact]
    public void Broadcast_from_every_root_copies_tensors_and_bytes()
    {
        const int n = 3;
        var comms = World(n);
        try
        {
            Assert.All(OnRanks(n, r =>
            {
                bool ok = true;
                for (int root = 0; root < n; root++)
                {
                    // 2.4 MB: pipelined along the ring in several frames.
                    using var t = r == root ? arange(300_000, dtype: ScalarType.Float64) * (root + 1) : zeros(300_000, dtype: ScalarType.Float64);
                    comms[r].Broadcast(t, root);
                    ok &= t.eq(arange(300_000, dtype: ScalarType.Float64) * (root + 1)).all().item<bool>();
                    var bytes = r == root ? Enumerable.Range(0, 5000).Select(i => (byte)(i * 7 + root)).ToArray() : new byte[5000];
                    comms[r].Broadcast(bytes, root);
                    ok &= bytes.Select((b, i) => b == (byte)(i * 7 + root)).All(x => x);
                }
                return ok;
            }), Assert.True);
        }
        finally { DisposeAll(comms); }
    }

    [Fact]
    public void Async_reductions_run_in_submission_order()
    {
        const int n = 2;
        var comms = World(n);
        try
        {
            Assert.All(OnRanks(n, r =>
            {
                // Distinct sizes: run out of order, the frames' lengths would not match and the ranks would fail.
                var tensors = Enumerable.Range(1, 20).Select(i => full(i * 1000 + 1, (double)(i * (r + 1)), dtype: ScalarType.Float32)).ToArray();
                var tasks = tensors.Select(comms[r].AllReduceSumAsync).ToArray();
                Task.WaitAll(tasks);
                return tensors.Select((t, k) => t.eq(3 * (k + 1)).all().item<bool>()).All(x => x);
            }), Assert.True);
        }
        finally { DisposeAll(comms); }
    }

    [Fact]
    public void Unsupported_tensors_are_refused_before_any_communication()
    {
        var comms = World(2);
        try
        {
            Assert.Contains("bfloat16", Assert.Throws<CommunicatorException>(() => comms[0].AllReduceSum(ones(3, dtype: ScalarType.BFloat16))).Message);
            Assert.Contains("not contiguous", Assert.Throws<CommunicatorException>(() => comms[0].AllReduceSum(ones(3, 4).t())).Message);
            Assert.All(OnRanks(2, r => { comms[r].Barrier(); return true; }), Assert.True);
        }
        finally { DisposeAll(comms); }
    }

    [Fact]
    public void A_wrong_token_is_refused_and_never_printed()
    {
        int port = FreePort();
        var errors = OnRanks(2, r =>
        {
            var e = Record.Exception(() => TcpCommunicator.Connect(r, 2, r, Settings(port, token: r == 0 ? "right-token" : "wrong-token", rendezvousSeconds: 3)));
            return e?.Message ?? "";
        });
        output.WriteLine(string.Join("\n", errors));
        Assert.Contains("rank 0 refused this rank: job token mismatch", errors[1]);
        // Rank 0 waits past an impostor (another job's pod), then times out naming the missing rank.
        Assert.Contains("only 0 of 1 ranks joined", errors[0]);
        Assert.Contains("missing: 1", errors[0]);
        Assert.DoesNotContain(errors, m => m.Contains("right-token") || m.Contains("wrong-token"));
        Assert.DoesNotContain("right-token", Settings(port, token: "right-token").ToString());
    }

    [Fact]
    public void A_rank_closing_its_sockets_mid_collective_fails_the_others_within_seconds_naming_it()
    {
        const int n = 3;
        var comms = World(n);
        var clock = Stopwatch.StartNew();
        var errors = OnRanks(n, r =>
        {
            if (r == 2)
            {
                Thread.Sleep(300); // the others are inside the all-reduce by now, waiting for rank 2
                comms[2].Dispose();
                return "";
            }
            using var t = ones(2_000_000);
            return Record.Exception(() => comms[r].AllReduceSum(t))?.Message ?? "no error";
        });
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F2} s\n{string.Join("\n", errors)}");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");
        Assert.Contains("rank 2 disconnected", errors[0]);
        Assert.Contains("rank 2 disconnected", errors[1]);
        // Sticky: the next collective fails at once with the same cause.
        Assert.Contains("rank 2 disconnected", Assert.Throws<CommunicatorException>(() => comms[1].Barrier()).Message);
        DisposeAll(comms);
    }

    [Fact]
    public void Rendezvous_timeout_names_the_address()
    {
        int port = FreePort(); // nobody listens there
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<CommunicatorException>(() => TcpCommunicator.Connect(1, 2, 0, Settings(port, rendezvousSeconds: 2)));
        output.WriteLine(e.Message);
        Assert.Contains($"could not reach the rendezvous at 127.0.0.1:{port}", e.Message);
        Assert.Contains("--rendezvous_timeout", e.Message);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), $"took {clock.Elapsed}");

        var unresolvable = Assert.Throws<CommunicatorException>(() => TcpCommunicator.Connect(1, 2, 0,
            Settings(port, rendezvousSeconds: 2) with { MasterAddr = "qwen3tts-no-such-host.invalid" }));
        Assert.Contains("qwen3tts-no-such-host.invalid", unresolvable.Message);
    }

    [Fact]
    public void Worlds_without_an_MPI_launcher_use_TCP()
    {
        static IReadOnlyDictionary<string, string> Env(params (string, string)[] vars) => vars.ToDictionary(v => v.Item1, v => v.Item2);
        var torchrun = Env(("RANK", "1"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "trainer-0.trainer"));
        Assert.True(Communicators.UsesTcp(WorldDiscovery.Resolve(torchrun), torchrun));
        var indexed = Env(("JOB_COMPLETION_INDEX", "3"), ("WORLD_SIZE", "8"));
        Assert.True(Communicators.UsesTcp(WorldDiscovery.Resolve(indexed), indexed));
        var mpi = Env(("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2"));
        Assert.False(Communicators.UsesTcp(WorldDiscovery.Resolve(mpi), mpi));
        // torchrun's variables re-exported under mpirun: MPI still forms the world.
        var both = Env(("RANK", "1"), ("WORLD_SIZE", "2"), ("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2"));
        Assert.False(Communicators.UsesTcp(WorldDiscovery.Resolve(both), both));

        var s = TcpSettings.From(Env(("MASTER_ADDR", "a"), ("QWEN3TTS_COORDINATOR_TOKEN", "t")));
        Assert.Equal(("a", 29500, TimeSpan.FromSeconds(300), "t"), (s.MasterAddr, s.MasterPort, s.RendezvousTimeout, s.Token));
        Assert.Equal(("b", 1234), (TcpSettings.From(Env(("MASTER_ADDR", "a"), ("MASTER_PORT", "99")), "b", 1234).MasterAddr, 1234));
        Assert.Contains("MASTER_ADDR", Assert.Throws<CommunicatorException>(() => TcpCommunicator.Connect(1, 2, 0, TcpSettings.From(Env()))).Message);
    }

    [Fact]
    public void Throughput_of_a_25_MB_all_reduce_on_two_local_ranks()
    {
        var comms = World(2);
        try
        {
            const int count = 25 * 1000 * 1000 / 4;
            const int rounds = 10;
            var seconds = OnRanks(2, r =>
            {
                using var t = ones(count);
                comms[r].AllReduceSum(t); // warm-up
                var clock = Stopwatch.StartNew();
                for (int i = 0; i < rounds; i++) comms[r].AllReduceSum(t);
                double s = clock.Elapsed.TotalSeconds / rounds;
                Assert.True(t.eq(Math.Pow(2, rounds + 1)).all().item<bool>());
                return s;
            });
            double worst = seconds.Max();
            output.WriteLine($"25 MB float32 all-reduce, 2 ranks on 127.0.0.1: {worst * 1000:F1} ms each, {25 / worst:F0} MB/s of buffer " +
                             $"(ring: each rank sends {25.0 * 2 * (2 - 1) / 2:F0} MB per call)");
        }
        finally { DisposeAll(comms); }
    }

    // ------------------------------------------------------------------------------------- qwen3tts-rank end to end

    static string RankDll => TestPaths.RankDll;

    [Theory]
    [InlineData(0)]
    [InlineData(2)] // ZeRO-2: the ring's reduce-scatter and all-gather halves, unpacked on the ring's thread
    public void Two_rank_processes_over_TCP_equal_one_process_with_twice_the_batch(int zeroStage)
    {
        Assert.True(File.Exists(RankDll), $"qwen3tts-rank is not built: {RankDll}");
        string model = Training.TrainingFixture.TinyModel(31, "tcp-model");
        string data = Training.TrainingFixture.DemoData(8, tag: "tcp-data");
        string single = TestPaths.NewTempDir("tcp-single"), parallel = TestPaths.NewTempDir("tcp-parallel");

        // adam_epsilon 1e-3: AdamW must not magnify fp32 summation-order differences in near-zero gradients.
        new Trainer(new TrainingOptions
        {
            TrainData = data, InitModelPath = model, OutputModelPath = single, MixedPrecision = "fp32", NumEpochs = 1, BatchSize = 4,
            GradientAccumulationSteps = 1, Lr = 1e-3, LrScheduler = "constant", AdamEpsilon = 1e-3, BucketSizeMb = 1,
        }, TextWriter.Null).Run();

        int port = FreePort();
        var log = new System.Text.StringBuilder();
        string Text() { lock (log) return log.ToString(); } // the output handlers append from other threads
        var processes = Enumerable.Range(0, 2).Select(r =>
        {
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in (string[])[RankDll, "--train_jsonl", data, "--init_model_path", model, "--output_model_path", parallel,
                         "--mixed_precision", "fp32", "--num_epochs", "1", "--batch_size", "2", "--gradient_accumulation_steps", "1",
                         "--lr", "1e-3", "--lr_scheduler", "constant", "--adam_epsilon", "1e-3", "--bucket_size_mb", "1", "--rendezvous_timeout", "60",
                         "--zero_stage", zeroStage.ToString()])
                start.ArgumentList.Add(a);
            foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("OMPI_") || k.StartsWith("PMI") || k.StartsWith("SLURM_")).ToList())
                start.Environment.Remove(key);
            start.Environment[EnvVars.Rank] = r.ToString();
            start.Environment[EnvVars.WorldSize] = "2";
            start.Environment[EnvVars.MasterAddr] = "127.0.0.1";
            start.Environment[EnvVars.MasterPort] = port.ToString();
            start.Environment[EnvVars.CoordinatorToken] = "e2e-secret";
            var p = new Process { StartInfo = start };
            void OnLine(string? line) { if (line is not null) lock (log) log.AppendLine($"[{r}] {line}"); }
            p.OutputDataReceived += (_, e) => OnLine(e.Data);
            p.ErrorDataReceived += (_, e) => OnLine(e.Data);
            p.Start();
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            return p;
        }).ToArray();
        try
        {
            foreach (var p in processes)
                if (!p.WaitForExit(TimeSpan.FromMinutes(5))) Assert.Fail($"a rank did not finish in 5 minutes:\n{Text()}");
            foreach (var p in processes) p.WaitForExit();
            output.WriteLine(Text());
            Assert.True(processes.All(p => p.ExitCode == 0), $"exit codes {string.Join(", ", processes.Select(p => p.ExitCode))}:\n{Text()}");
            Assert.Contains("tcp (ring", Text());
            if (zeroStage > 0) Assert.Contains($"ZeRO stage {zeroStage}", Text());
            Assert.DoesNotContain("e2e-secret", Text());
        }
        finally
        {
            foreach (var p in processes)
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
                p.Dispose();
            }
        }

        using var scope = NewDisposeScope();
        using var a = CheckpointFiles.Open(Path.Combine(single, "last"));
        using var b = CheckpointFiles.Open(Path.Combine(parallel, "last"));
        foreach (var e in a.Entries)
            Assert.True(a.Read(e.Name).allclose(b.Read(e.Name), rtol: 0, atol: 1e-6), e.Name);
    }
}
