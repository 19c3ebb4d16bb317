using System.Globalization;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Qwen3Tts.Protocol.V1;
using V1 = Qwen3Tts.Protocol.V1;

namespace Qwen3Tts.Coordinator.Client;

/// <summary>The coordinator stopped the run. <see cref="RankFailed"/>: a rank was declared dead (or the coordinator
/// became unreachable), so the job must end at once; otherwise it was asked to stop and ranks may checkpoint first.</summary>
public sealed class CoordinatorStopException(string reason, bool rankFailed) : IOException(reason) // another rank or the coordinator ended the run: one line, no trace
{
    public bool RankFailed { get; } = rankFailed;
}

/// <summary>One rank's side of the protocol: register, lease its share of each global batch (a few batches ahead),
/// report steps and checkpoints, and heartbeat from a background thread. Thread-safe: the training thread leases and
/// reports while the heartbeat thread runs; a stop seen by either is kept in <see cref="Stop"/>.</summary>
public sealed class CoordinatorConnection : IDisposable
{
    readonly GrpcChannel channel;
    readonly V1.Coordinator.CoordinatorClient api;
    readonly int rank, worldSize, lookahead;
    readonly TimeSpan heartbeatInterval, unreachableTimeout;
    readonly Dictionary<(int Epoch, long Batch), LeasedBatch> leased = [];
    readonly CancellationTokenSource closing = new();
    Thread? heartbeat;
    volatile CoordinatorStopException? stop;

    /// <summary>Raised once, on the heartbeat thread, when the run is stopped because a rank failed or the coordinator went
    /// silent: the training thread may be blocked in a collective with the dead rank, so the handler must end the process.</summary>
    public event Action<CoordinatorStopException>? Failed;

    /// <param name="lookahead">global batches leased per call.</param>
    /// <param name="unreachableTimeout">how long the coordinator may stay unreachable before the run counts as failed.</param>
    public CoordinatorConnection(Uri address, string token, int rank, int worldSize, TimeSpan heartbeatInterval, TimeSpan unreachableTimeout, int lookahead = 8)
    {
        if (string.IsNullOrWhiteSpace(token)) throw new ArgumentException("the coordinator token is empty");
        if (lookahead < 1) throw new ArgumentOutOfRangeException(nameof(lookahead), lookahead, "must be at least 1");
        (this.rank, this.worldSize, this.lookahead) = (rank, worldSize, lookahead);
        (this.heartbeatInterval, this.unreachableTimeout) = (heartbeatInterval, unreachableTimeout);
        Address = address;
        channel = GrpcChannel.ForAddress(address);
        string header = $"Bearer {token}";
        api = new V1.Coordinator.CoordinatorClient(channel.Intercept(metadata => { metadata.Add("authorization", header); return metadata; }));
    }

    public Uri Address { get; }

    /// <summary>The stop the coordinator asked for, once seen (null while the run goes on).</summary>
    public CoordinatorStopException? Stop => stop;

    /// <summary>Registers this rank, starting at <paramref name="start"/> (its checkpoint's position, or 0/0), checks that
    /// the coordinator plans exactly what this rank would (same samples, lengths, seed, global batch, window), and starts
    /// the heartbeat. Returns the run id.</summary>
    public string Register(PlanSettings expected, PlanPosition start)
    {
        var reply = Call(() => api.Register(new RegisterRequest
        {
            Rank = rank, WorldSize = worldSize, Host = Environment.MachineName, ProtocolVersion = ProtocolVersion.Current,
            Start = new V1.PlanPosition { Epoch = start.Epoch, NextBatch = start.NextBatch },
        }), "Register");
        var run = reply.Run;
        void Same<T>(string what, T coordinator, T mine)
        {
            if (!EqualityComparer<T>.Default.Equals(coordinator, mine))
                throw new InvalidOperationException($"the coordinator at {Address} plans run {reply.RunId} with {what} {coordinator}, this rank has {mine}: " +
                    "give the coordinator and every rank the same data, --max_train_samples, --seed, --batch_size and --bucket_window");
        }
        Same("sample count", run.SampleCount, expected.SampleCount);
        Same("seed", run.Seed, expected.Seed);
        Same("global batch", run.GlobalBatch, expected.BatchSizePerRank * worldSize);
        Same("bucket window", run.BucketWindow, expected.EffectiveWindow);
        Same("data fingerprint", run.DataFingerprint, expected.Fingerprint);
        heartbeat ??= StartHeartbeat();
        return reply.RunId;
    }

    /// <summary>Global batch <paramref name="batch"/> of <paramref name="epoch"/> with this rank's share, leased with the
    /// next few. Throws <see cref="CoordinatorStopException"/> when a rank failed.</summary>
    public LeasedBatch Lease(int epoch, long batch)
    {
        ThrowIfFailed();
        lock (leased)
        {
            if (leased.Remove((epoch, batch), out var share)) return share;
            foreach (var key in leased.Keys.Where(k => k.Epoch != epoch || k.Batch < batch).ToList()) leased.Remove(key);
        }
        var reply = Call(() => api.LeaseBatches(new LeaseBatchesRequest
        {
            ProtocolVersion = ProtocolVersion.Current, Rank = rank, Epoch = epoch, FromBatch = batch, MaxBatches = lookahead,
        }), "LeaseBatches");
        Observe(reply.Stop, reply.StopReason, reply.RankFailed);
        ThrowIfFailed();
        if (reply.Batches.Count == 0 || reply.Batches[0].Index != batch)
            throw new InvalidOperationException($"the coordinator at {Address} leased no batch {batch} of epoch {epoch} ({reply.BatchesInEpoch} in the epoch)");
        lock (leased)
        {
            foreach (var b in reply.Batches.Skip(1)) leased[(epoch, b.Index)] = FromProto(b);
        }
        return FromProto(reply.Batches[0]);
    }

    /// <summary>Reports a finished optimizer step and the plan position after it.</summary>
    public void ReportStep(long step, IReadOnlyDictionary<string, double> metrics, PlanPosition after)
    {
        var request = new ReportStepRequest
        {
            ProtocolVersion = ProtocolVersion.Current, Rank = rank, Step = step,
            Position = new V1.PlanPosition { Epoch = after.Epoch, NextBatch = after.NextBatch },
        };
        foreach (var (name, value) in metrics) if (double.IsFinite(value)) request.Metrics[name] = value;
        var reply = Call(() => api.ReportStep(request), "ReportStep");
        Observe(reply.Stop, reply.StopReason, reply.RankFailed);
    }

    /// <summary>Rank 0: a checkpoint is on disk; resuming from it continues at <paramref name="position"/>.</summary>
    public void CommitCheckpoint(long step, string dir, PlanPosition position) =>
        Call(() => api.CommitCheckpoint(new CommitCheckpointRequest
        {
            ProtocolVersion = ProtocolVersion.Current, Step = step, Dir = dir,
            Position = new V1.PlanPosition { Epoch = position.Epoch, NextBatch = position.NextBatch },
        }), "CommitCheckpoint");

    /// <summary>Asks the coordinator to stop every rank (they checkpoint and exit).</summary>
    public void RequestStop(string reason) =>
        Call(() => api.Stop(new StopRequest { ProtocolVersion = ProtocolVersion.Current, Reason = reason }), "Stop");

    static LeasedBatch FromProto(V1.LeasedBatch b) => new(b.Index, [.. b.Samples], [.. b.GlobalBatch]);

    void ThrowIfFailed()
    {
        if (stop is { RankFailed: true } s) throw s;
    }

    void Observe(bool stopped, string reason, bool rankFailed)
    {
        if (!stopped || stop is not null) return;
        stop = new CoordinatorStopException(reason, rankFailed);
    }

    T Call<T>(Func<T> call, string what)
    {
        try { return call(); }
        catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Internal)
        {
            throw new IOException($"coordinator at {Address}: {what} failed ({e.StatusCode}: {e.Status.Detail})", e);
        }
        catch (RpcException e)
        {
            // Refusals carry the coordinator's own words (wrong world size, replayed batch, bad token, version).
            throw new InvalidOperationException($"coordinator at {Address} refused {what}: {e.Status.Detail} ({e.StatusCode})", e);
        }
    }

    Thread StartHeartbeat()
    {
        var thread = new Thread(HeartbeatLoop) { IsBackground = true, Name = $"coordinator heartbeat (rank {rank})" };
        thread.Start();
        return thread;
    }

    void HeartbeatLoop()
    {
        var lastOk = DateTime.UtcNow;
        while (!closing.Token.WaitHandle.WaitOne(heartbeatInterval))
        {
            try
            {
                var reply = api.Heartbeat(new HeartbeatRequest { ProtocolVersion = ProtocolVersion.Current, Rank = rank },
                    deadline: DateTime.UtcNow + unreachableTimeout, cancellationToken: closing.Token);
                lastOk = DateTime.UtcNow;
                Observe(reply.Stop, reply.StopReason, reply.RankFailed);
            }
            catch (RpcException) when (!closing.IsCancellationRequested)
            {
                var silent = DateTime.UtcNow - lastOk;
                if (silent > unreachableTimeout && stop is null)
                    stop = new CoordinatorStopException(string.Create(CultureInfo.InvariantCulture,
                        $"the coordinator at {Address} has been unreachable for {silent.TotalSeconds:F1} s (timeout {unreachableTimeout.TotalSeconds:0.###} s)"), rankFailed: true);
            }
            catch (RpcException) { return; }
            catch (ObjectDisposedException) { return; }
            if (stop is { RankFailed: true } failed)
            {
                Failed?.Invoke(failed);
                return;
            }
        }
    }

    int disposed;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0) return;
        closing.Cancel();
        heartbeat?.Join(TimeSpan.FromSeconds(5));
        channel.Dispose();
        closing.Dispose();
    }
}
