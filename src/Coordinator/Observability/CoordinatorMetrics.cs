using System.Diagnostics.Metrics;

namespace Qwen3Tts.Coordinator.Observability;

/// <summary>The coordinator's own metrics: a <see cref="Meter"/> named <see cref="Name"/> whose instruments are all observed
/// from <see cref="CoordinatorState.Snapshot"/> when something collects (the Prometheus scrape endpoint of
/// <see cref="CoordinatorHost"/>, see <see cref="CoordinatorHostOptions.MetricsPort"/>). One instance per host, disposed
/// with it. Every measurement carries <c>run_id</c>: a listener on the meter name sees every host in the process
/// (tests run several), and the label keeps their series apart.</summary>
public sealed class CoordinatorMetrics : IDisposable
{
    public const string Name = "Qwen3Tts.Coordinator";

    /// <summary>Instrument names; the Prometheus exporter writes them with '_' for '.', and counters with a _total suffix.</summary>
    public const string RegisteredRanks = "qwen3tts.coordinator.ranks.registered",
        LiveRanks = "qwen3tts.coordinator.ranks.live",
        DeadRanks = "qwen3tts.coordinator.ranks.dead",
        Epoch = "qwen3tts.coordinator.epoch",
        NextBatch = "qwen3tts.coordinator.next_batch",
        Stopped = "qwen3tts.coordinator.stopped",
        LeasesServed = "qwen3tts.coordinator.leases",
        HeartbeatsReceived = "qwen3tts.coordinator.heartbeats",
        RankLoss = "qwen3tts.coordinator.rank.loss";

    readonly Meter meter = new(Name);

    public CoordinatorMetrics(CoordinatorState state)
    {
        var run = new KeyValuePair<string, object?>("run_id", state.RunId);
        Measurement<long> Of(long value) => new(value, run);

        meter.CreateObservableGauge(RegisteredRanks, () => Of(state.Snapshot().RegisteredRanks), description: "ranks registered with the run");
        meter.CreateObservableGauge(LiveRanks, () => Of(state.Snapshot().LiveRanks), description: "registered ranks heard from within the heartbeat timeout");
        meter.CreateObservableGauge(DeadRanks, () => Of(state.Snapshot().DeadRanks), description: "registered ranks silent longer than the heartbeat timeout");
        meter.CreateObservableGauge(Epoch, () => Of(state.Snapshot().Position.Epoch), description: "epoch of the plan position every rank has reached");
        meter.CreateObservableGauge(NextBatch, () => Of(state.Snapshot().Position.NextBatch), description: "first global batch of that epoch some rank has not finished");
        meter.CreateObservableGauge(Stopped, () => Of(state.Snapshot().Stopped ? 1 : 0), description: "1 once the run is stopping (a dead rank or a Stop call), else 0");
        meter.CreateObservableCounter(LeasesServed, () => Of(state.Snapshot().LeasesServed), description: "LeaseBatches calls answered since the coordinator started");
        meter.CreateObservableCounter(HeartbeatsReceived, () => Of(state.Snapshot().HeartbeatsReceived), description: "Heartbeat calls received since the coordinator started");
        meter.CreateObservableGauge(RankLoss, () => state.Snapshot().LastLoss.Select(kv =>
            new Measurement<double>(kv.Value, run, new KeyValuePair<string, object?>("rank", kv.Key))),
            description: $"last {CoordinatorState.LossMetric} a rank reported (attribute rank)");
    }

    public void Dispose() => meter.Dispose();
}
