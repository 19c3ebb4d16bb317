using System.Diagnostics;
using System.Diagnostics.Metrics;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Qwen3Tts.Coordinator.Observability;

/// <summary>Every environment variable the telemetry setup reads (the OpenTelemetry SDK's standard names).</summary>
public static class OtelEnv
{
    /// <summary>The collector's base URL (e.g. http://otel-collector:4318); unset: nothing is exported.</summary>
    public const string Endpoint = "OTEL_EXPORTER_OTLP_ENDPOINT";
    /// <summary>http/protobuf (default) or grpc.</summary>
    public const string Protocol = "OTEL_EXPORTER_OTLP_PROTOCOL";
    /// <summary>Groups every rank's telemetry under one run; by default WANDB_RUN_ID, else the caller's fallback.</summary>
    public const string RunId = "QWEN3TTS_RUN_ID";
}

/// <summary>The phases of one optimizer step, each timed and traced from outside the math it wraps.</summary>
public enum TrainPhase { Data, Forward, Backward, Communication, Optimizer }

/// <summary>The training metrics and spans: one <see cref="Meter"/> and one <see cref="ActivitySource"/> named
/// <see cref="Name"/>. Recording is near free when nothing listens (no <see cref="TelemetrySetup"/> providers):
/// instruments without a listener drop values and <see cref="ActivitySource.StartActivity(string, ActivityKind)"/> returns null.</summary>
public static class Telemetry
{
    public const string Name = "Qwen3Tts.Training";

    public static readonly ActivitySource Source = new(Name);
    public static readonly Meter Meter = new(Name);

    /// <summary>Span names: one <see cref="StepSpan"/> per optimizer step, the phases as its children.</summary>
    public const string StepSpan = "train.step", CheckpointSpan = "checkpoint.save", EvalSpan = "eval";

    public static string SpanName(TrainPhase phase) => PhaseNames[(int)phase];

    static readonly string[] PhaseNames = ["data", "forward", "backward", "communication", "optimizer"];
    static readonly KeyValuePair<string, object?>[] PhaseTags = PhaseNames.Select(n => new KeyValuePair<string, object?>("phase", n)).ToArray();

    // Seconds: from sub-millisecond phases of the tiny model to minutes-long checkpoint writes.
    static readonly InstrumentAdvice<double> SecondsBuckets = new()
    {
        HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    };

    public static readonly Gauge<double> Loss = Meter.CreateGauge<double>("qwen3tts.train.loss", description: "mean label-token loss of the last optimizer step (attribute component: total, talker, sub_talker)");
    public static readonly Gauge<double> LearningRate = Meter.CreateGauge<double>("qwen3tts.train.learning_rate", description: "learning rate of the last optimizer step");
    public static readonly Gauge<double> GradNorm = Meter.CreateGauge<double>("qwen3tts.train.grad_norm", description: "global gradient norm before clipping");
    public static readonly Gauge<double> SamplesPerSecond = Meter.CreateGauge<double>("qwen3tts.train.samples_per_second", "{sample}/s", "global samples of the last step over its duration");
    public static readonly Gauge<double> TokensPerSecond = Meter.CreateGauge<double>("qwen3tts.train.tokens_per_second", "{token}/s", "global label tokens of the last step over its duration");
    public static readonly Counter<long> Steps = Meter.CreateCounter<long>("qwen3tts.train.steps", "{step}", "optimizer steps taken");
    public static readonly Counter<long> Samples = Meter.CreateCounter<long>("qwen3tts.train.samples", "{sample}", "global samples consumed");
    public static readonly Histogram<double> StepDuration = Meter.CreateHistogram("qwen3tts.train.step.duration", "s", "wall time of one optimizer step", advice: SecondsBuckets);
    public static readonly Histogram<double> PhaseDuration = Meter.CreateHistogram("qwen3tts.train.phase.duration", "s", "wall time of one step phase (attribute phase: data, forward, backward, communication, optimizer)", advice: SecondsBuckets);
    public static readonly Gauge<double> EvalLoss = Meter.CreateGauge<double>("qwen3tts.eval.loss", description: "validation loss over every label token");
    public static readonly Histogram<double> CheckpointDuration = Meter.CreateHistogram("qwen3tts.checkpoint.save.duration", "s", "wall time of one checkpoint save (every rank verifies; rank 0 writes)", advice: SecondsBuckets);
    public static readonly ObservableGauge<long> WorkingSet = Meter.CreateObservableGauge("qwen3tts.process.memory.working_set", () => Environment.WorkingSet, "By", "physical memory of the process (native tensors included)");
    public static readonly ObservableGauge<long> ManagedHeap = Meter.CreateObservableGauge("qwen3tts.process.memory.managed_heap", () => GC.GetTotalMemory(false), "By", "bytes on the managed heap");

    /// <summary>The numbers of one finished optimizer step.</summary>
    public static void RecordStep(double loss, double talkerLoss, double subTalkerLoss, double lr, double gradNorm, int samples, long tokens, double seconds)
    {
        Loss.Record(loss, new KeyValuePair<string, object?>("component", "total"));
        Loss.Record(talkerLoss, new KeyValuePair<string, object?>("component", "talker"));
        Loss.Record(subTalkerLoss, new KeyValuePair<string, object?>("component", "sub_talker"));
        LearningRate.Record(lr);
        GradNorm.Record(gradNorm);
        Steps.Add(1);
        Samples.Add(samples);
        StepDuration.Record(seconds);
        SamplesPerSecond.Record(samples / Math.Max(1e-9, seconds));
        TokensPerSecond.Record(tokens / Math.Max(1e-9, seconds));
    }

    internal static void RecordPhase(TrainPhase phase, double seconds) => PhaseDuration.Record(seconds, PhaseTags[(int)phase]);
}

/// <summary>Times one optimizer step: a <see cref="Telemetry.StepSpan"/> span and a clock, with a child span and a
/// per-phase sum for each <see cref="Phase"/>. Used from one thread.</summary>
public sealed class StepTimer : IDisposable
{
    readonly Activity? span;
    readonly long start = Stopwatch.GetTimestamp();
    readonly double[] seconds = new double[5];

    public StepTimer(long step)
    {
        span = Telemetry.Source.StartActivity(Telemetry.StepSpan);
        span?.SetTag("qwen3tts.step", step);
    }

    /// <summary>Seconds spent in each <see cref="TrainPhase"/> so far (indexed by it).</summary>
    public IReadOnlyList<double> PhaseSeconds => seconds;

    public double ElapsedSeconds => Stopwatch.GetElapsedTime(start).TotalSeconds;

    /// <summary>Starts a phase; disposing it ends the child span and adds its time. <paramref name="span"/> false only
    /// adds the time (a phase's tail that runs apart from it, so that each phase stays one span per micro-step).</summary>
    public PhaseScope Phase(TrainPhase phase, bool span = true) =>
        new(this, phase, span ? Telemetry.Source.StartActivity(Telemetry.SpanName(phase)) : null);

    public void Dispose() => span?.Dispose();

    public readonly struct PhaseScope(StepTimer timer, TrainPhase phase, Activity? activity) : IDisposable
    {
        readonly long start = Stopwatch.GetTimestamp();

        public void Dispose()
        {
            double s = Stopwatch.GetElapsedTime(start).TotalSeconds;
            timer.seconds[(int)phase] += s;
            Telemetry.RecordPhase(phase, s);
            activity?.Dispose();
        }
    }
}

/// <summary>The OpenTelemetry providers of one process (one rank). The OTLP exporter is added only when
/// <see cref="OtelEnv.Endpoint"/> is set; with nothing to export and no extra configuration no provider is built,
/// so nothing listens and recording costs next to nothing.</summary>
public sealed class TelemetrySetup : IDisposable
{
    public MeterProvider? MeterProvider { get; }
    public TracerProvider? TracerProvider { get; }

    /// <summary>Where the OTLP exporter sends (the base endpoint), or null when it is not configured.</summary>
    public Uri? OtlpEndpoint { get; }
    public OtlpExportProtocol? OtlpProtocol { get; }

    /// <summary>The resource attributes every signal of this process carries.</summary>
    public IReadOnlyDictionary<string, object> ResourceAttributes { get; }

    TelemetrySetup(MeterProvider? meters, TracerProvider? tracer, Uri? endpoint, OtlpExportProtocol? protocol, IReadOnlyDictionary<string, object> attributes) =>
        (MeterProvider, TracerProvider, OtlpEndpoint, OtlpProtocol, ResourceAttributes) = (meters, tracer, endpoint, protocol, attributes);

    /// <summary>The run id shared by every rank: <see cref="OtelEnv.RunId"/>, else WANDB_RUN_ID, else <paramref name="fallback"/>.</summary>
    public static string RunId(IReadOnlyDictionary<string, string> env, string fallback) =>
        env.GetValueOrDefault(OtelEnv.RunId) is { Length: > 0 } id ? id
        : env.GetValueOrDefault(WandbEnv.RunId) is { Length: > 0 } wandbId ? wandbId
        : fallback;

    /// <param name="configureMetrics">extra metric readers (tests add an in-memory exporter); building a provider even without OTLP.</param>
    /// <param name="configureTraces">extra span processors or sources, likewise.</param>
    public static TelemetrySetup Start(string serviceName, int rank, int worldSize, string runId, IReadOnlyDictionary<string, string> env,
        Action<MeterProviderBuilder>? configureMetrics = null, Action<TracerProviderBuilder>? configureTraces = null)
    {
        var attributes = new Dictionary<string, object>
        {
            ["service.instance.id"] = rank.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["qwen3tts.rank"] = (long)rank,
            ["qwen3tts.world_size"] = (long)worldSize,
            ["qwen3tts.run_id"] = runId,
        };
        var (endpoint, protocol) = Otlp(env);
        if (endpoint is null && configureMetrics is null && configureTraces is null)
            return new TelemetrySetup(null, null, null, null, attributes);

        void Resource(ResourceBuilder r) => r.AddService(serviceName, serviceInstanceId: (string)attributes["service.instance.id"],
            autoGenerateServiceInstanceId: false).AddAttributes(attributes.Where(a => a.Key != "service.instance.id"));

        var metrics = Sdk.CreateMeterProviderBuilder().ConfigureResource(Resource).AddMeter(Telemetry.Name);
        var traces = Sdk.CreateTracerProviderBuilder().ConfigureResource(Resource).AddSource(Telemetry.Name);
        if (endpoint is not null)
        {
            // A programmatic endpoint is used as given, so the per-signal paths are added here as the spec does for the env var.
            metrics.AddOtlpExporter(x => (x.Endpoint, x.Protocol) = (SignalEndpoint(endpoint, protocol!.Value, "v1/metrics"), protocol.Value));
            traces.AddOtlpExporter(x => (x.Endpoint, x.Protocol) = (SignalEndpoint(endpoint, protocol!.Value, "v1/traces"), protocol.Value));
        }
        configureMetrics?.Invoke(metrics);
        configureTraces?.Invoke(traces);
        var all = new Dictionary<string, object>(attributes) { ["service.name"] = serviceName };
        return new TelemetrySetup(metrics.Build(), traces.Build(), endpoint, protocol, all);
    }

    /// <summary>The OTLP endpoint and protocol from the environment, or (null, null) when no endpoint is set.</summary>
    public static (Uri? Endpoint, OtlpExportProtocol? Protocol) Otlp(IReadOnlyDictionary<string, string> env)
    {
        if (env.GetValueOrDefault(OtelEnv.Endpoint) is not { Length: > 0 } raw) return (null, null);
        if (!Uri.TryCreate(raw, UriKind.Absolute, out var endpoint))
            throw new ArgumentException($"{OtelEnv.Endpoint}={raw} is not an absolute URL; set it to the collector's base URL, e.g. http://localhost:4318");
        var protocol = env.GetValueOrDefault(OtelEnv.Protocol)?.Trim().ToLowerInvariant() switch
        {
            null or "" or "http/protobuf" => OtlpExportProtocol.HttpProtobuf,
            "grpc" => OtlpExportProtocol.Grpc,
            var other => throw new ArgumentException($"{OtelEnv.Protocol}={other} is not supported; use http/protobuf (default) or grpc"),
        };
        return (endpoint, protocol);
    }

    static Uri SignalEndpoint(Uri endpoint, OtlpExportProtocol protocol, string path) =>
        protocol == OtlpExportProtocol.Grpc ? endpoint : new Uri(endpoint.AbsoluteUri.TrimEnd('/') + "/" + path);

    /// <summary>Flushes what is pending (the last metrics, the last spans) and stops the exporters.</summary>
    public void Dispose()
    {
        TracerProvider?.Dispose();
        MeterProvider?.Dispose();
    }
}
