using Qwen3Tts.Coordinator;
using Qwen3Tts.Coordinator.Client;
using Qwen3Tts.Coordinator.Planning;
using Qwen3Tts.Rank.Distributed;

namespace Qwen3Tts.Rank.Coordination;

/// <summary>One global batch as a rank sees it: the whole batch (for the loss weights) and the rank's share (what it trains).</summary>
public sealed record PlannedBatch(int[] Global, int[] Share);

/// <summary>What the trainer asks of its run's plan: the batches, in order, and where to report progress. The plan is the
/// coordinator's (<see cref="LeasedRunPlan"/>, embedded in rank 0 by default) or, with --coordinator off, computed
/// locally (<see cref="LocalRunPlan"/>); both give the same batches.</summary>
public interface IRunPlan : IDisposable
{
    /// <summary>"embedded coordinator at ...", "coordinator at ...", "local plan".</summary>
    string Description { get; }

    PlannedBatch Batch(int epoch, long batch);

    /// <summary>Every rank, after each optimizer step.</summary>
    void StepFinished(long step, IReadOnlyDictionary<string, double> metrics, PlanPosition after);

    /// <summary>Rank 0, after a checkpoint is on disk.</summary>
    void CheckpointSaved(long step, string dir, PlanPosition position);

    /// <summary>Why the coordinator asked this rank to stop (ranks agree on it through a collective before acting), or null.</summary>
    string? StopRequested { get; }

    /// <summary>Every rank, when training ended normally: closes the plan in step (an embedded coordinator stops only after
    /// every rank is done with it). Disposing without it (on a failure) never waits for other ranks.</summary>
    void Finish();
}

/// <summary>The plan computed in this process: no coordinator, no leases (--coordinator off).</summary>
public sealed class LocalRunPlan(PlanSettings settings, int rank, int worldSize) : IRunPlan
{
    readonly Dictionary<int, IReadOnlyList<int[]>> epochs = [];

    public string Description => "local plan (no coordinator)";

    public PlannedBatch Batch(int epoch, long batch)
    {
        if (!epochs.TryGetValue(epoch, out var plan))
        {
            epochs.Clear();
            epochs[epoch] = plan = settings.GlobalBatches(epoch, worldSize);
        }
        var global = plan[(int)batch];
        return new PlannedBatch(global, EpochPlan.Share(global, rank, worldSize));
    }

    public void StepFinished(long step, IReadOnlyDictionary<string, double> metrics, PlanPosition after) { }
    public void CheckpointSaved(long step, string dir, PlanPosition position) { }
    public string? StopRequested => null;
    public void Finish() { }
    public void Dispose() { }
}

/// <summary>Batches leased from a coordinator. <paramref name="embedded"/>: rank 0 runs it in-process (<paramref name="host"/>,
/// null on the other ranks), and <see cref="Finish"/> waits at a barrier for every rank to close its connection before it stops.</summary>
public sealed class LeasedRunPlan(CoordinatorConnection connection, ICommunicator comm, bool embedded, CoordinatorHost? host) : IRunPlan
{
    public string Description => embedded ? $"embedded coordinator at {connection.Address}" : $"coordinator at {connection.Address}";

    public PlannedBatch Batch(int epoch, long batch)
    {
        var leased = connection.Lease(epoch, batch);
        return new PlannedBatch(leased.GlobalBatch, leased.Samples);
    }

    public void StepFinished(long step, IReadOnlyDictionary<string, double> metrics, PlanPosition after) =>
        connection.ReportStep(step, metrics, after);

    public void CheckpointSaved(long step, string dir, PlanPosition position) =>
        connection.CommitCheckpoint(step, Path.GetFullPath(dir), position);

    public string? StopRequested => connection.Stop is { RankFailed: false } stop ? stop.Message : null;

    public void Finish()
    {
        connection.Dispose();
        if (embedded) comm.Barrier(); // every rank has stopped calling
        Dispose();
    }

    int disposed;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0) return;
        connection.Dispose();
        host?.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }
}
