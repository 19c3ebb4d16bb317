using Qwen3Tts.Model;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Qwen3Tts.Coordinator.Planning;

namespace Qwen3Tts.Coordinator;

/// <summary>What fixes a run's data order: <c>EpochPlan.GlobalBatches(lengths, seed, epoch, batchSizePerRank × worldSize,
/// bucketWindow)</c>, or without lengths plain random batching of <see cref="SampleCount"/> samples.</summary>
public sealed record PlanSettings(int SampleCount, long Seed, int BatchSizePerRank)
{
    /// <summary>Per-sample lengths the plan groups by (<see cref="Data.TrainingRecord.PlanLength"/>); null: no grouping.</summary>
    public IReadOnlyList<int>? Lengths { get; init; }
    /// <summary>Global batches per length-sorting window; 0 or 1: random batching.</summary>
    public int BucketWindow { get; init; }

    /// <summary>Settings that group by <paramref name="lengths"/> (their count is the sample count).</summary>
    public static PlanSettings Bucketed(IReadOnlyList<int> lengths, long seed, int batchSizePerRank, int bucketWindow) =>
        new(lengths.Count, seed, batchSizePerRank) { Lengths = lengths, BucketWindow = bucketWindow };

    public PlanSettings Validated()
    {
        if (SampleCount < 1) throw new ArgumentOutOfRangeException(nameof(SampleCount), SampleCount, "the run needs at least one training sample");
        if (BatchSizePerRank < 1) throw new ArgumentOutOfRangeException(nameof(BatchSizePerRank), BatchSizePerRank, "--batch_size must be at least 1");
        if (BucketWindow < 0) throw new ArgumentOutOfRangeException(nameof(BucketWindow), BucketWindow, "--bucket_window must be 0 (random batching) or more");
        if (Lengths is not null && Lengths.Count != SampleCount)
            throw new ArgumentException($"{Lengths.Count} lengths for {SampleCount} samples");
        return this;
    }

    /// <summary>The effective window: grouping needs lengths.</summary>
    public int EffectiveWindow => Lengths is null ? 0 : BucketWindow;

    /// <summary>SHA-256 (hex, first 16 bytes) of the lengths as little-endian int32s; "" without lengths. Two ranks with the
    /// same fingerprint, seed, window and global batch compute the same plan.</summary>
    public string Fingerprint
    {
        get
        {
            if (Lengths is null) return "";
            var bytes = new byte[Lengths.Count * 4];
            for (int i = 0; i < Lengths.Count; i++) System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(i * 4), Lengths[i]);
            return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes).AsSpan(0, 16));
        }
    }

    /// <summary>The epoch's global batches for a world of <paramref name="worldSize"/> ranks.</summary>
    public IReadOnlyList<int[]> GlobalBatches(int epoch, int worldSize) =>
        Lengths is null ? EpochPlan.GlobalBatches(SampleCount, Seed, epoch, BatchSizePerRank * worldSize)
            : EpochPlan.GlobalBatches(Lengths, Seed, epoch, BatchSizePerRank * worldSize, BucketWindow);
}

public sealed record CoordinatorOptions(string OutputDir, PlanSettings Plan)
{
    /// <summary>The world size; null: fixed by the first rank that registers.</summary>
    public int? WorldSize { get; init; }
    /// <summary>A resumed run may change the global batch of the saved state (--allow_new_global_batch); without it a
    /// resume at another world size must keep the global batch.</summary>
    public bool AllowNewGlobalBatch { get; init; }
    /// <summary>A rank silent (no Register/Heartbeat) longer than this is declared dead and the run is stopped.</summary>
    public TimeSpan HeartbeatTimeout { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>Global batches per lease when the rank does not say.</summary>
    public int DefaultLeaseBatches { get; init; } = 4;
    public TimeProvider Time { get; init; } = TimeProvider.System;
}

/// <summary>Where a run stands in its data: the epoch and how many of its global batches are finished.</summary>
public readonly record struct PlanPosition(int Epoch, long NextBatch) : IComparable<PlanPosition>
{
    public int CompareTo(PlanPosition other) => Epoch != other.Epoch ? Epoch.CompareTo(other.Epoch) : NextBatch.CompareTo(other.NextBatch);
    public override string ToString() => $"epoch {Epoch} batch {NextBatch}";
}

/// <summary>What makes a run the same run.</summary>
public sealed record RunIdentity(string RunId, int WorldSize, int SampleCount, long Seed, int GlobalBatch, int BucketWindow = 0, string DataFingerprint = "");

/// <param name="Samples">the rank's share.</param>
/// <param name="GlobalBatch">the whole global batch the share is cut from.</param>
public sealed record LeasedBatch(long Index, int[] Samples, int[] GlobalBatch);

/// <summary>A lease: the next global batches cut to one rank's share, or the stop signal.</summary>
public sealed record Lease(IReadOnlyList<LeasedBatch> Batches, bool EpochDone, long BatchesInEpoch, string? StopReason);

/// <summary>A moment's view of the run for metrics: counts since this coordinator started, the plan position, each rank's last loss.</summary>
public sealed record CoordinatorSnapshot(int RegisteredRanks, int LiveRanks, int DeadRanks, PlanPosition Position,
    long LeasesServed, long HeartbeatsReceived, IReadOnlyDictionary<int, double> LastLoss, bool Stopped);

public sealed record CommittedCheckpoint(long Step, string Dir, PlanPosition Position, DateTimeOffset CommittedAt);

/// <summary>Why a call was refused; the service edge maps it to a gRPC status.</summary>
public enum CoordinatorErrorKind { InvalidArgument, FailedPrecondition }

public sealed class CoordinatorException(CoordinatorErrorKind kind, string message) : Exception(message)
{
    public CoordinatorErrorKind Kind { get; } = kind;
}

/// <summary>The coordinator's run state, without transport: registered ranks and their liveness, the epoch plans,
/// each rank's position in the plan, committed checkpoints and the metrics cursor. Every change that matters after a
/// restart is written atomically (temp file + rename) to <see cref="StateFileName"/> in the output folder, and a new
/// instance on the same folder continues from it. Thread-safe (one lock; every call is short).</summary>
public sealed class CoordinatorState
{
    public const string StateFileName = "coordinator-state.json";
    public const string MetricsFileName = "coordinator-metrics.jsonl";

    static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    readonly CoordinatorOptions options;
    readonly TimeProvider time;
    readonly string statePath, metricsPath;
    readonly Lock gate = new();
    readonly Dictionary<int, long> lastSeen = [];               // rank → timestamp of its last Register/Heartbeat
    readonly Dictionary<int, IReadOnlyList<int[]>> plans = [];
    readonly StateFile file;
    readonly string worldSizeSource;
    readonly Dictionary<int, double> lastLoss = [];             // rank → train/loss of its last reported step (since start)
    long leasesServed, heartbeatsReceived;                       // since start (not persisted)
    string? stopReason;
    bool rankFailed;
    // Group commit: a change bumps `changes`; a call that must be durable waits until a flush has written a state at least
    // that new. One flush covers every change made before it started, so concurrent ranks share one fsync.
    readonly SemaphoreSlim flushLock = new(1, 1);
    readonly List<string> pendingMetricLines = [];
    long changes, durable;

    /// <summary>Raised outside the lock for events worth a log line: registrations, a dead rank, a stop, a checkpoint.</summary>
    public event Action<string>? Event;

    public CoordinatorState(CoordinatorOptions options)
    {
        this.options = options;
        options.Plan.Validated();
        if (options.HeartbeatTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(options), options.HeartbeatTimeout, "--heartbeat_timeout must be positive");
        if (options.WorldSize is < 1) throw new ArgumentOutOfRangeException(nameof(options), options.WorldSize, "--world_size must be at least 1");
        time = options.Time;
        Directory.CreateDirectory(options.OutputDir);
        statePath = Path.Combine(options.OutputDir, StateFileName);
        metricsPath = Path.Combine(options.OutputDir, MetricsFileName);

        file = File.Exists(statePath) ? Load(statePath, options) : new StateFile
        {
            RunId = Guid.NewGuid().ToString("N"),
            SampleCount = options.Plan.SampleCount,
            Seed = options.Plan.Seed,
            BatchSizePerRank = options.Plan.BatchSizePerRank,
            WorldSize = options.WorldSize,
            BucketWindow = options.Plan.EffectiveWindow,
            DataFingerprint = options.Plan.Fingerprint,
        };
        worldSizeSource = options.WorldSize is not null ? "configuration" : File.Exists(statePath) && file.WorldSize is not null ? $"{statePath}" : "the first registration";
        // Ranks known before a restart get a full timeout from now to call again.
        long now = time.GetTimestamp();
        foreach (int rank in file.Registered) lastSeen[rank] = now;
        if (!File.Exists(statePath)) Durable(Changed());
    }

    public string RunId => file.RunId;
    public int? WorldSize { get { lock (gate) return file.WorldSize; } }
    public string? StopReason { get { lock (gate) return stopReason; } }
    /// <summary>The stop is a failure (a rank was declared dead), not a request: ranks end the job at once.</summary>
    public bool RankFailed { get { lock (gate) return rankFailed; } }
    public IReadOnlyList<CommittedCheckpoint> Checkpoints { get { lock (gate) return file.Checkpoints.Select(c => c.ToRecord()).ToList(); } }

    /// <summary>The run identity; refused until the world size is known.</summary>
    public RunIdentity Identity { get { lock (gate) return IdentityLocked(); } }

    /// <param name="start">where the rank's training starts (its checkpoint's position, or 0/0 when fresh): its cursor moves
    /// there, back if need be, since batches after that checkpoint went into weights that were not kept. Null keeps the cursor.</param>
    public (RunIdentity Run, PlanPosition Position) Register(int rank, int worldSize, string host, PlanPosition? start = null)
    {
        var (result, version) = RegisterCore(rank, worldSize, host, start);
        Durable(version);
        return result;
    }

    /// <summary><see cref="Register"/> for the service: the reply waits for the shared flush without blocking a thread.</summary>
    public async Task<(RunIdentity Run, PlanPosition Position)> RegisterAsync(int rank, int worldSize, string host, PlanPosition? start)
    {
        var (result, version) = RegisterCore(rank, worldSize, host, start);
        await DurableAsync(version).ConfigureAwait(false);
        return result;
    }

    ((RunIdentity, PlanPosition), long) RegisterCore(int rank, int worldSize, string host, PlanPosition? start)
    {
        long version = 0;
        string? note = null;
        (RunIdentity, PlanPosition) result;
        lock (gate)
        {
            if (worldSize < 1) throw Invalid($"rank {rank} registers world size {worldSize}; it must be at least 1");
            if (file.WorldSize is { } fixedSize && fixedSize != worldSize)
                throw Precondition($"rank {rank} registers world size {worldSize}, but this run's world size is {fixedSize} (fixed by {worldSizeSource}); start every rank with the same world size");
            if (rank < 0 || rank >= worldSize) throw Invalid($"rank {rank} is outside 0..{worldSize - 1} (world size {worldSize})");
            if (start is { } s && (s.Epoch < 0 || s.NextBatch < 0)) throw Invalid($"rank {rank} registers start position {s}; it cannot be negative");
            file.WorldSize = worldSize;
            lastSeen[rank] = time.GetTimestamp();
            bool changed = false;
            if (!file.Registered.Contains(rank))
            {
                file.Registered.Add(rank);
                file.Registered.Sort();
                changed = true;
                note = $"rank {rank} registered from {host} ({file.Registered.Count}/{worldSize})";
            }
            if (start is { } from)
            {
                var had = file.Ranks.TryGetValue(rank, out var c) ? c.ToPosition() : (PlanPosition?)null;
                if (had != from)
                {
                    file.Ranks[rank] = new Cursor { Epoch = from.Epoch, NextBatch = from.NextBatch };
                    changed = true;
                    if (had is { } h && h.CompareTo(from) > 0)
                        note = (note is null ? "" : note + "; ") + $"rank {rank} starts again at {from} (it had reached {h}): the batches in between are trained again, their updates were not checkpointed";
                }
            }
            if (changed) version = Changed();
            result = (IdentityLocked(), PositionLocked());
        }
        if (note is not null) Event?.Invoke(note);
        return (result, version);
    }

    /// <summary>Records the rank's sign of life; the reason to stop when the run is stopping, else null.</summary>
    public string? Heartbeat(int rank)
    {
        lock (gate)
        {
            CheckRegistered(rank);
            heartbeatsReceived++;
            if (stopReason is null) lastSeen[rank] = time.GetTimestamp(); // a dead rank stays dead
        }
        return CheckLiveness();
    }

    /// <summary>Declares dead every rank silent longer than the timeout (the first one found stops the run); the stop reason, or null.</summary>
    public string? CheckLiveness()
    {
        string? declared = null;
        lock (gate)
        {
            if (stopReason is not null) return stopReason;
            long now = time.GetTimestamp();
            foreach (var (rank, seen) in lastSeen.OrderBy(kv => kv.Key))
            {
                var silent = time.GetElapsedTime(seen, now);
                if (silent <= options.HeartbeatTimeout) continue;
                rankFailed = true;
                stopReason = declared = string.Create(CultureInfo.InvariantCulture,
                    $"rank {rank} missed heartbeats for {silent.TotalSeconds:F1} s (timeout {options.HeartbeatTimeout.TotalSeconds:0.###} s); every rank stops");
                break;
            }
            if (declared is null) return null;
        }
        Event?.Invoke(declared);
        return declared;
    }

    public void Stop(string reason)
    {
        if (string.IsNullOrWhiteSpace(reason)) throw Invalid("Stop needs a reason (it is shown to every rank)");
        lock (gate)
        {
            if (stopReason is not null) return;
            stopReason = reason;
        }
        Event?.Invoke($"stop: {reason}");
    }

    /// <summary>The epoch's global batches, exactly <see cref="EpochPlan.GlobalBatches"/> with the run's numbers.</summary>
    public IReadOnlyList<int[]> Plan(int epoch)
    {
        lock (gate) return PlanLocked(epoch);
    }

    /// <summary>The next global batches of <paramref name="epoch"/> for <paramref name="rank"/>, cut to its share. Asking from
    /// position p acknowledges that the rank finished every batch before p. <paramref name="fromBatch"/> null continues after the
    /// rank's last finished batch. A position before one the rank already finished is refused: that batch would be trained twice.</summary>
    public Lease LeaseBatches(int rank, int epoch, long? fromBatch, int maxBatches)
    {
        string? reason = CheckLiveness();
        lock (gate)
        {
            CheckRegistered(rank);
            if (maxBatches < 0) throw Invalid($"max_batches {maxBatches} is negative");
            var plan = PlanLocked(epoch);
            // After a failure nothing more is handed out. A requested stop still serves the batches: the ranks need the
            // current step's to reach the collective where they agree to stop.
            if (reason is not null && rankFailed) return new Lease([], false, plan.Count, reason);
            long done = Progress(rank, epoch);
            long from = fromBatch ?? done;
            if (from < done)
                throw Precondition($"rank {rank} asks for epoch {epoch} from batch {from}, but it already finished batches up to {done} " +
                    $"(plan position {PositionLocked()}); leasing them again would train them twice");
            if (from > plan.Count)
                throw Invalid($"epoch {epoch} has {plan.Count} global batches; rank {rank} asks from batch {from}");
            Acknowledge(rank, new PlanPosition(epoch, from));
            leasesServed++;
            int take = (int)Math.Min(maxBatches == 0 ? options.DefaultLeaseBatches : maxBatches, plan.Count - from);
            var batches = Enumerable.Range(0, take)
                .Select(i => new LeasedBatch(from + i, EpochPlan.Share(plan[(int)from + i], rank, file.WorldSize!.Value), plan[(int)from + i]))
                .ToList();
            return new Lease(batches, from == plan.Count, plan.Count, reason);
        }
    }

    /// <summary>A finished optimizer step: its metrics are appended once per (rank, step) to <see cref="MetricsFileName"/>,
    /// and the position after it acknowledged. Returns the stop reason, or null.</summary>
    public string? ReportStep(int rank, long step, IReadOnlyDictionary<string, double> metrics, PlanPosition? position)
    {
        var (reason, version) = ReportStepCore(rank, step, metrics, position);
        Durable(version);
        return reason;
    }

    /// <summary><see cref="ReportStep"/> for the service (see <see cref="RegisterAsync"/>).</summary>
    public async Task<string?> ReportStepAsync(int rank, long step, IReadOnlyDictionary<string, double> metrics, PlanPosition? position)
    {
        var (reason, version) = ReportStepCore(rank, step, metrics, position);
        await DurableAsync(version).ConfigureAwait(false);
        return reason;
    }

    (string?, long) ReportStepCore(int rank, long step, IReadOnlyDictionary<string, double> metrics, PlanPosition? position)
    {
        long version = 0;
        string? reason = CheckLiveness();
        lock (gate)
        {
            CheckRegistered(rank);
            if (step < 0) throw Invalid($"rank {rank} reports step {step}; steps start at 0");
            bool changed = false;
            if (metrics.TryGetValue(LossMetric, out double loss)) lastLoss[rank] = loss;
            if (position is { } p)
            {
                var plan = PlanLocked(p.Epoch);
                if (p.NextBatch < 0 || p.NextBatch > plan.Count) throw Invalid($"rank {rank} reports position {p}, but epoch {p.Epoch} has {plan.Count} global batches");
                changed |= Acknowledge(rank, p);
            }
            if (!file.MetricsCursor.TryGetValue(rank, out long cursor) || step > cursor)
            {
                // Written by the next flush, before the state holding the cursor (see Flush).
                pendingMetricLines.Add(JsonSerializer.Serialize(new { rank, step, metrics }));
                file.MetricsCursor[rank] = step;
                changed = true;
            }
            if (changed) version = Changed();
        }
        return (reason, version);
    }

    public void CommitCheckpoint(long step, string dir, PlanPosition position)
    {
        Durable(CommitCheckpointCore(step, dir, position));
        Event?.Invoke($"checkpoint committed: step {step} at {position} in {dir}");
    }

    /// <summary><see cref="CommitCheckpoint"/> for the service (see <see cref="RegisterAsync"/>).</summary>
    public async Task CommitCheckpointAsync(long step, string dir, PlanPosition position)
    {
        await DurableAsync(CommitCheckpointCore(step, dir, position)).ConfigureAwait(false);
        Event?.Invoke($"checkpoint committed: step {step} at {position} in {dir}");
    }

    long CommitCheckpointCore(long step, string dir, PlanPosition position)
    {
        lock (gate)
        {
            if (string.IsNullOrWhiteSpace(dir)) throw Invalid("CommitCheckpoint needs the checkpoint's folder");
            if (step < 0) throw Invalid($"checkpoint step {step} is negative");
            var plan = PlanLocked(position.Epoch);
            if (position.NextBatch < 0 || position.NextBatch > plan.Count)
                throw Invalid($"checkpoint position {position} is outside epoch {position.Epoch} ({plan.Count} global batches)");
            file.Checkpoints.Add(new CheckpointEntry { Step = step, Dir = dir, Epoch = position.Epoch, NextBatch = position.NextBatch, CommittedAt = time.GetUtcNow() });
            return Changed();
        }
    }

    /// <summary>The plan position every rank has reached: the first batch some rank has not finished.</summary>
    public PlanPosition Position { get { lock (gate) return PositionLocked(); } }

    /// <summary>The ReportStep metric whose last value per rank <see cref="Snapshot"/> keeps (the trainer's name for the step loss).</summary>
    public const string LossMetric = "train/loss";

    /// <summary>The numbers the coordinator's metrics show, read under one lock. A rank is dead once silent longer than the
    /// heartbeat timeout (whether or not <see cref="CheckLiveness"/> has run since); every other registered rank is live.</summary>
    public CoordinatorSnapshot Snapshot()
    {
        lock (gate)
        {
            long now = time.GetTimestamp();
            int dead = lastSeen.Values.Count(seen => time.GetElapsedTime(seen, now) > options.HeartbeatTimeout);
            return new CoordinatorSnapshot(file.Registered.Count, file.Registered.Count - dead, dead, PositionLocked(),
                leasesServed, heartbeatsReceived, new SortedDictionary<int, double>(lastLoss), stopReason is not null);
        }
    }

    // ---- under the lock

    RunIdentity IdentityLocked()
    {
        if (file.WorldSize is not { } world)
            throw Precondition("no rank has registered yet, so the world size (and with it the global batch) is unknown; register first or start the coordinator with --world_size");
        return new RunIdentity(file.RunId, world, file.SampleCount, file.Seed, file.BatchSizePerRank * world, file.BucketWindow, file.DataFingerprint);
    }

    IReadOnlyList<int[]> PlanLocked(int epoch)
    {
        if (epoch < 0) throw Invalid($"epoch {epoch} is negative");
        var run = IdentityLocked();
        if (!plans.TryGetValue(epoch, out var plan))
        {
            if (plans.Count > 8) plans.Remove(plans.Keys.Min());
            plans[epoch] = plan = options.Plan.GlobalBatches(epoch, run.WorldSize);
        }
        return plan;
    }

    /// <summary>How many of the epoch's batches the rank has finished.</summary>
    long Progress(int rank, int epoch)
    {
        if (!file.Ranks.TryGetValue(rank, out var cursor) || cursor.Epoch < epoch) return 0;
        return cursor.Epoch > epoch ? PlanLocked(epoch).Count : cursor.NextBatch;
    }

    PlanPosition PositionLocked()
    {
        if (file.WorldSize is not { } world) return new PlanPosition(0, 0);
        var min = Enumerable.Range(0, world).Select(r => file.Ranks.TryGetValue(r, out var c) ? c.ToPosition() : new PlanPosition(0, 0)).Min();
        return min;
    }

    /// <summary>Moves the rank's cursor forward; the next flush writes it (a lease does not wait for that: after a crash
    /// an older cursor only means the rank may ask from there again, never that a batch is handed out twice in a run).</summary>
    bool Acknowledge(int rank, PlanPosition position)
    {
        if (file.Ranks.TryGetValue(rank, out var cursor) && cursor.ToPosition().CompareTo(position) >= 0) return false;
        file.Ranks[rank] = new Cursor { Epoch = position.Epoch, NextBatch = position.NextBatch };
        Changed();
        return true;
    }

    void CheckRegistered(int rank)
    {
        if (!file.Registered.Contains(rank))
            throw Precondition($"rank {rank} has not registered with this run ({file.Registered.Count} of {file.WorldSize?.ToString(CultureInfo.InvariantCulture) ?? "?"} ranks have); call Register first");
    }

    /// <summary>Under the lock: the state changed; returns the version a durable call waits for.</summary>
    long Changed() => ++changes;

    void Durable(long version) => DurableAsync(version).GetAwaiter().GetResult();

    /// <summary>Completes once a state at least as new as <paramref name="version"/> is on disk (0: at once).</summary>
    async Task DurableAsync(long version)
    {
        while (Volatile.Read(ref durable) < version)
        {
            await flushLock.WaitAsync().ConfigureAwait(false);
            try
            {
                if (Volatile.Read(ref durable) < version) Flush();
            }
            finally { flushLock.Release(); }
        }
    }

    /// <summary>Writes every change so far: first the pending metrics lines (appended, flushed to disk), then the state
    /// (temp file, flushed, renamed over the old one). A crash leaves the old state or the new, never half of one, and a
    /// metrics line may repeat after a crash between the two, never go missing. Called by one flusher at a time.</summary>
    void Flush()
    {
        byte[] state;
        string[] lines;
        long upTo;
        lock (gate)
        {
            var position = PositionLocked();
            file.Position = new Cursor { Epoch = position.Epoch, NextBatch = position.NextBatch };
            state = JsonSerializer.SerializeToUtf8Bytes(file, Json);
            lines = [.. pendingMetricLines];
            pendingMetricLines.Clear();
            upTo = changes;
        }
        if (lines.Length > 0)
        {
            using var metrics = new FileStream(metricsPath, FileMode.Append, FileAccess.Write, FileShare.Read);
            metrics.Write(System.Text.Encoding.UTF8.GetBytes(string.Concat(lines.Select(l => l + "\n"))));
            metrics.Flush(flushToDisk: true);
        }
        AtomicFile.Write(statePath, stream => stream.Write(state));
        Volatile.Write(ref durable, upTo);
    }

    static StateFile Load(string path, CoordinatorOptions options)
    {
        StateFile? state;
        try { state = JsonSerializer.Deserialize<StateFile>(File.ReadAllText(path), Json); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: not a coordinator state file ({e.Message}); move it away to start a new run", e); }
        if (state is null || string.IsNullOrEmpty(state.RunId)) throw new InvalidDataException($"{path}: empty coordinator state; move it away to start a new run");
        var plan = options.Plan;
        void Same<T>(string what, T saved, T now)
        {
            if (!EqualityComparer<T>.Default.Equals(saved, now))
                throw new InvalidOperationException($"{path}: the run was planned with {what} {saved}, this coordinator has {now}; " +
                    "the data order would change mid-run. Use the same settings, or another output folder for a new run");
        }
        Same("sample count", state.SampleCount, plan.SampleCount);
        Same("seed", state.Seed, plan.Seed);
        Same("bucket window", state.BucketWindow, plan.EffectiveWindow);
        Same("data fingerprint (per-sample lengths)", state.DataFingerprint, plan.Fingerprint);
        if (options.WorldSize is { } w && state.WorldSize is { } saved && (saved != w || state.BatchSizePerRank != plan.BatchSizePerRank))
        {
            // A run resumed at another world size: the plan depends on the global batch only, so it is the same plan when
            // that is kept (or the trainer allowed a new one). The old ranks' cursors go; each rank registers its start.
            int before = state.BatchSizePerRank * saved, now = plan.BatchSizePerRank * w;
            if (before != now && !options.AllowNewGlobalBatch)
                throw new InvalidOperationException($"{path}: the run was planned with a global batch of {before} samples ({state.BatchSizePerRank} per rank x {saved} ranks), " +
                    $"this coordinator has {now} ({plan.BatchSizePerRank} x {w}); the data order would change mid-run. Keep the global batch, or another output folder for a new run");
            (state.WorldSize, state.BatchSizePerRank) = (w, plan.BatchSizePerRank);
            state.Registered.Clear();
            state.Ranks.Clear();
        }
        else Same("batch size per rank", state.BatchSizePerRank, plan.BatchSizePerRank);
        state.WorldSize ??= options.WorldSize;
        return state;
    }

    static CoordinatorException Invalid(string message) => new(CoordinatorErrorKind.InvalidArgument, message);
    static CoordinatorException Precondition(string message) => new(CoordinatorErrorKind.FailedPrecondition, message);

    sealed class StateFile
    {
        public string RunId { get; set; } = "";
        public int SampleCount { get; set; }
        public long Seed { get; set; }
        public int BatchSizePerRank { get; set; }
        public int BucketWindow { get; set; }
        public string DataFingerprint { get; set; } = "";
        public int? WorldSize { get; set; }
        public List<int> Registered { get; set; } = [];
        /// <summary>For a reader: the plan position every rank has reached (derived from <see cref="Ranks"/>; not read back).</summary>
        public Cursor? Position { get; set; }
        /// <summary>Per rank: the first batch it has not finished.</summary>
        public Dictionary<int, Cursor> Ranks { get; set; } = [];
        public List<CheckpointEntry> Checkpoints { get; set; } = [];
        /// <summary>Per rank: the last step whose metrics are in the metrics file.</summary>
        public Dictionary<int, long> MetricsCursor { get; set; } = [];
    }

    sealed class Cursor
    {
        public int Epoch { get; set; }
        public long NextBatch { get; set; }
        public PlanPosition ToPosition() => new(Epoch, NextBatch);
    }

    sealed class CheckpointEntry
    {
        public long Step { get; set; }
        public string Dir { get; set; } = "";
        public int Epoch { get; set; }
        public long NextBatch { get; set; }
        public DateTimeOffset CommittedAt { get; set; }
        public CommittedCheckpoint ToRecord() => new(Step, Dir, new PlanPosition(Epoch, NextBatch), CommittedAt);
    }
}
