using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Qwen3Tts.Coordinator;
using Qwen3Tts.Coordinator.Planning;
using Qwen3Tts.Protocol.V1;
using V1 = Qwen3Tts.Protocol.V1;

namespace Qwen3Tts.Tests.Coordinator;

/// <summary>The coordinator over real gRPC on loopback: Kestrel on a free port, Grpc.Net.Client ranks.</summary>
public sealed class CoordinatorServiceTests
{
    // 50 samples, 2 per rank × 3 ranks = global batch 6: 9 global batches, the last one 2 samples (rank 2's share of it is empty).
    const int Samples = 50, Seed = 7, BatchPerRank = 2, World = 3;
    const int Version = Qwen3Tts.Coordinator.ProtocolVersion.Current;

    static CoordinatorHostOptions Options(string dir, TimeSpan? heartbeatTimeout = null, string? token = "test-token-0123456789") =>
        new(new CoordinatorOptions(dir, new PlanSettings(Samples, Seed, BatchPerRank)) { HeartbeatTimeout = heartbeatTimeout ?? TimeSpan.FromSeconds(60) })
        {
            Token = token,
        };

    sealed class Client(GrpcChannel channel, V1.Coordinator.CoordinatorClient api) : IDisposable
    {
        public V1.Coordinator.CoordinatorClient Api => api;
        public void Dispose() => channel.Dispose();
    }

    static Client Connect(CoordinatorHost host, string? token)
    {
        var channel = GrpcChannel.ForAddress(host.Address);
        var invoker = token is null ? channel.CreateCallInvoker() : channel.Intercept(m => { m.Add("authorization", $"Bearer {token}"); return m; });
        return new Client(channel, new V1.Coordinator.CoordinatorClient(invoker));
    }

    static RegisterReply Register(Client c, int rank) =>
        c.Api.Register(new RegisterRequest { Rank = rank, WorldSize = World, Host = "test", ProtocolVersion = Version });

    /// <summary>A rank's loop: lease up to two global batches at a time, "train" each, report the step and the position after it.</summary>
    static List<V1.LeasedBatch> TrainEpoch(Client c, int rank, int epoch, long? stopAt = null)
    {
        var trained = new List<V1.LeasedBatch>();
        while (true)
        {
            var lease = c.Api.LeaseBatches(new LeaseBatchesRequest { ProtocolVersion = Version, Rank = rank, Epoch = epoch, MaxBatches = 2 });
            Assert.False(lease.Stop, lease.StopReason);
            if (lease.EpochDone) return trained;
            foreach (var batch in lease.Batches)
            {
                trained.Add(batch);
                c.Api.ReportStep(new ReportStepRequest
                {
                    ProtocolVersion = Version, Rank = rank, Step = trained.Count, Metrics = { ["train/loss"] = 1.0 / trained.Count },
                    Position = new V1.PlanPosition { Epoch = epoch, NextBatch = batch.Index + 1 },
                });
                if (batch.Index + 1 == stopAt) return trained;
            }
        }
    }

    static void AssertEpochTrainedExactlyOnce(IReadOnlyDictionary<int, List<V1.LeasedBatch>> byRank, IReadOnlyList<int[]> plan)
    {
        for (int rank = 0; rank < World; rank++)
            Assert.Equal(Enumerable.Range(0, plan.Count).Select(i => (long)i), byRank[rank].Select(b => b.Index)); // every batch once, in order
        for (int i = 0; i < plan.Count; i++)
            Assert.Equal(plan[i], Enumerable.Range(0, World).SelectMany(r => byRank[r][i].Samples)); // the shares, in rank order, are the batch
        var all = byRank.Values.SelectMany(l => l).SelectMany(b => b.Samples).Order();
        Assert.Equal(Enumerable.Range(0, Samples), all);
    }

    [Fact]
    public async Task Three_ranks_complete_an_epoch_through_leases_training_every_sample_once()
    {
        string dir = TestPaths.NewTempDir("coordinator");
        await using var host = await CoordinatorHost.StartAsync(Options(dir));
        var clients = Enumerable.Range(0, World).Select(_ => Connect(host, host.Token)).ToArray();
        foreach (var (c, rank) in clients.Select((c, r) => (c, r))) Register(c, rank);

        var reply = clients[0].Api.GetEpochPlan(new GetEpochPlanRequest { ProtocolVersion = Version, Epoch = 0 });
        // What the trainer computes directly: EpochPlan.GlobalBatches(count, seed, epoch, batch_size × world_size).
        var direct = EpochPlan.GlobalBatches(Samples, Seed, 0, BatchPerRank * World);
        Assert.Equal(direct, reply.Batches.Select(b => b.Samples.ToArray()));
        Assert.Equal((World, Samples, (long)Seed, BatchPerRank * World), (reply.Run.WorldSize, reply.Run.SampleCount, reply.Run.Seed, reply.Run.GlobalBatch));
        Assert.Equal(host.State.RunId, reply.Run.RunId);

        var results = new ConcurrentDictionary<int, List<V1.LeasedBatch>>();
        await Task.WhenAll(Enumerable.Range(0, World).Select(rank => Task.Run(() => results[rank] = TrainEpoch(clients[rank], rank, 0))));
        AssertEpochTrainedExactlyOnce(results, direct);
        Assert.Equal(new Qwen3Tts.Coordinator.PlanPosition(0, direct.Count), host.State.Position);
        Assert.Equal(World * direct.Count, File.ReadAllLines(Path.Combine(dir, CoordinatorState.MetricsFileName)).Length);
        foreach (var c in clients) c.Dispose();
    }

    [Fact]
    public async Task A_restarted_coordinator_continues_the_epoch_without_losing_or_repeating_a_batch()
    {
        string dir = TestPaths.NewTempDir("coordinator");
        var plan = EpochPlan.GlobalBatches(Samples, Seed, 0, BatchPerRank * World);
        var before = new Dictionary<int, List<V1.LeasedBatch>>();
        string runId;
        await using (var first = await CoordinatorHost.StartAsync(Options(dir)))
        {
            runId = first.State.RunId;
            for (int rank = 0; rank < World; rank++)
            {
                using var c = Connect(first, first.Token);
                Register(c, rank);
                before[rank] = TrainEpoch(c, rank, 0, stopAt: 4 + rank % 2); // ranks stop at different batches: 4, 5, 4
            }
            var checkpoint = new CommitCheckpointRequest { ProtocolVersion = Version, Step = 4, Dir = Path.Combine(dir, "checkpoint-4"), Position = new V1.PlanPosition { Epoch = 0, NextBatch = 4 } };
            using (var c = Connect(first, first.Token)) c.Api.CommitCheckpoint(checkpoint);
        } // the coordinator goes away mid-epoch

        await using var second = await CoordinatorHost.StartAsync(Options(dir));
        Assert.Equal(runId, second.State.RunId);
        Assert.Equal(new Qwen3Tts.Coordinator.PlanPosition(0, 4), second.State.Position);
        Assert.Equal(4, Assert.Single(second.State.Checkpoints).Step);
        Assert.Contains("\"next_batch\": 4", File.ReadAllText(Path.Combine(dir, CoordinatorState.StateFileName)));
        var after = new Dictionary<int, List<V1.LeasedBatch>>();
        for (int rank = 0; rank < World; rank++)
        {
            using var c = Connect(second, second.Token);
            var registered = Register(c, rank);
            Assert.Equal((runId, 0, 4L), (registered.RunId, registered.Position.Epoch, registered.Position.NextBatch));
            if (rank == 1) // it finished batch 4 before the restart: asking for it again is refused, not trained twice
            {
                var refused = Assert.Throws<RpcException>(() => c.Api.LeaseBatches(new LeaseBatchesRequest { ProtocolVersion = Version, Rank = 1, Epoch = 0, FromBatch = 4 }));
                Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
                Assert.Contains("twice", refused.Status.Detail);
            }
            after[rank] = TrainEpoch(c, rank, 0); // no from_batch: continue where this rank stands
        }

        var union = Enumerable.Range(0, World).ToDictionary(r => r, r => before[r].Concat(after[r]).ToList());
        AssertEpochTrainedExactlyOnce(union, plan);
    }

    [Fact]
    public async Task A_rank_that_stops_heartbeating_is_declared_dead_within_the_timeout_and_everyone_is_told_to_stop()
    {
        var timeout = TimeSpan.FromSeconds(1);
        await using var host = await CoordinatorHost.StartAsync(Options(TestPaths.NewTempDir("coordinator"), timeout));
        var clients = Enumerable.Range(0, World).Select(_ => Connect(host, host.Token)).ToArray();
        for (int rank = 0; rank < World; rank++) Register(clients[rank], rank);
        var silent = Stopwatch.StartNew(); // rank 1 never calls again

        HeartbeatReply? stopped = null;
        while (stopped is null && silent.Elapsed < timeout * 5)
        {
            foreach (int rank in new[] { 0, 2 })
            {
                var beat = await clients[rank].Api.HeartbeatAsync(new HeartbeatRequest { Rank = rank, Step = 1, ProtocolVersion = Version });
                if (beat.Stop) stopped = beat;
            }
            await Task.Delay(100);
        }
        Assert.NotNull(stopped);
        Assert.True(silent.Elapsed < timeout + TimeSpan.FromSeconds(1), $"detected after {silent.Elapsed.TotalSeconds:F2} s with a {timeout.TotalSeconds} s timeout");
        Assert.StartsWith("rank 1 missed heartbeats for ", stopped.StopReason);

        // Sticky: every later heartbeat and lease says stop with the same reason, to every rank.
        var lease = clients[2].Api.LeaseBatches(new LeaseBatchesRequest { ProtocolVersion = Version, Rank = 2, Epoch = 0 });
        Assert.True(lease.Stop);
        Assert.Equal(stopped.StopReason, lease.StopReason);
        Assert.True(stopped.RankFailed && lease.RankFailed); // a failure: ranks end the job instead of checkpointing
        Assert.Empty(lease.Batches);
        var late = clients[1].Api.Heartbeat(new HeartbeatRequest { Rank = 1, Step = 1, ProtocolVersion = Version });
        Assert.True(late.Stop);
        Assert.Equal(stopped.StopReason, late.StopReason);
        foreach (var c in clients) c.Dispose();
    }

    [Fact]
    public async Task Stop_reaches_every_rank_through_its_heartbeat()
    {
        await using var host = await CoordinatorHost.StartAsync(Options(TestPaths.NewTempDir("coordinator")));
        using var c = Connect(host, host.Token);
        Register(c, 0);
        c.Api.Stop(new StopRequest { ProtocolVersion = Version, Reason = "operator: out of budget" });
        var beat = c.Api.Heartbeat(new HeartbeatRequest { Rank = 0, ProtocolVersion = Version });
        Assert.Equal((true, "operator: out of budget", false), (beat.Stop, beat.StopReason, beat.RankFailed));
        // A requested stop still hands out batches: the ranks agree to stop in the collective of the step they are in.
        var lease = c.Api.LeaseBatches(new LeaseBatchesRequest { ProtocolVersion = Version, Rank = 0, Epoch = 0, MaxBatches = 1 });
        Assert.Equal((true, false, 1), (lease.Stop, lease.RankFailed, lease.Batches.Count));
    }

    [Fact]
    public async Task A_client_without_the_token_is_unauthenticated_and_no_token_shows_in_the_error()
    {
        await using var host = await CoordinatorHost.StartAsync(Options(TestPaths.NewTempDir("coordinator"), token: null)); // embedded: generated
        Assert.Equal(64, host.Token.Length);
        const string wrong = "not-the-token-5f3a";
        foreach (string? token in new[] { null, wrong })
        {
            using var c = Connect(host, token);
            var e = Assert.Throws<RpcException>(() => Register(c, 0));
            Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
            Assert.DoesNotContain(host.Token, e.ToString());
            Assert.DoesNotContain(wrong, e.ToString());
        }
        using var good = Connect(host, host.Token);
        Assert.Equal(host.State.RunId, Register(good, 0).RunId);
    }

    [Fact]
    public async Task A_protocol_version_mismatch_is_refused_naming_both_versions()
    {
        await using var host = await CoordinatorHost.StartAsync(Options(TestPaths.NewTempDir("coordinator")));
        using var c = Connect(host, host.Token);
        var e = Assert.Throws<RpcException>(() => c.Api.Register(new RegisterRequest { Rank = 0, WorldSize = World, ProtocolVersion = Version + 1 }));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains($"version {Version + 1}", e.Status.Detail);
        Assert.Contains($"version {Version}", e.Status.Detail);

        Register(c, 0);
        var unset = Assert.Throws<RpcException>(() => c.Api.Heartbeat(new HeartbeatRequest { Rank = 0 }));
        Assert.Equal(StatusCode.FailedPrecondition, unset.StatusCode);
        Assert.Contains("0 (not set)", unset.Status.Detail);
    }

    [Fact]
    public async Task The_first_registration_fixes_the_world_size()
    {
        await using var host = await CoordinatorHost.StartAsync(Options(TestPaths.NewTempDir("coordinator")));
        using var c = Connect(host, host.Token);
        var early = Assert.Throws<RpcException>(() => c.Api.GetEpochPlan(new GetEpochPlanRequest { ProtocolVersion = Version }));
        Assert.Equal(StatusCode.FailedPrecondition, early.StatusCode);
        Register(c, 0);
        var e = Assert.Throws<RpcException>(() => c.Api.Register(new RegisterRequest { Rank = 1, WorldSize = World + 1, ProtocolVersion = Version }));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains($"world size is {World}", e.Status.Detail);
        var outside = Assert.Throws<RpcException>(() => c.Api.Register(new RegisterRequest { Rank = World, WorldSize = World, ProtocolVersion = Version }));
        Assert.Equal(StatusCode.InvalidArgument, outside.StatusCode);
    }

    [Fact]
    public async Task With_a_certificate_the_coordinator_serves_TLS()
    {
        string dir = TestPaths.NewTempDir("coordinator");
        using var rsa = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(System.Net.IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        string pfx = Path.Combine(dir, "coordinator.pfx");
        File.WriteAllBytes(pfx, certificate.Export(X509ContentType.Pfx, "pfx-password"));

        await using var host = await CoordinatorHost.StartAsync(Options(Path.Combine(dir, "run")) with { CertificatePath = pfx, CertificatePassword = "pfx-password" });
        Assert.Equal("https", host.Address.Scheme);
        string expected = certificate.GetCertHashString();
        var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, presented, _, _) => presented?.GetCertHashString() == expected; // pinned: it is self-signed
        using var channel = GrpcChannel.ForAddress(host.Address, new GrpcChannelOptions { HttpHandler = handler });
        var api = new V1.Coordinator.CoordinatorClient(channel.Intercept(m => { m.Add("authorization", $"Bearer {host.Token}"); return m; }));
        Assert.Equal(host.State.RunId, api.Register(new RegisterRequest { Rank = 0, WorldSize = World, ProtocolVersion = Version }).RunId);
    }

    [Fact]
    public void Restarting_with_another_seed_is_refused_because_the_data_order_would_change()
    {
        string dir = TestPaths.NewTempDir("coordinator");
        _ = new CoordinatorState(new CoordinatorOptions(dir, new PlanSettings(Samples, Seed, BatchPerRank)));
        var e = Assert.Throws<InvalidOperationException>(() => new CoordinatorState(new CoordinatorOptions(dir, new PlanSettings(Samples, Seed + 1, BatchPerRank))));
        Assert.Contains($"seed {Seed}", e.Message);
        Assert.Contains(CoordinatorState.StateFileName, e.Message);
    }
}
