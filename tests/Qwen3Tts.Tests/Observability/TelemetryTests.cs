using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Qwen3Tts.Coordinator.Observability;
using Qwen3Tts.Model;
using Qwen3Tts.Rank.Training;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Observability;

/// <summary>The training telemetry: what a run records, which resource it carries, and that it goes out over OTLP
/// only when OTEL_EXPORTER_OTLP_ENDPOINT is set.</summary>
public class TelemetryTests
{
    static readonly string DemoDir = Path.Combine(TestPaths.RepoRoot, "assets", "demo");
    static readonly ActivitySource TestSource = new("Qwen3Tts.Tests.Telemetry");
    static readonly IReadOnlyDictionary<string, string> NoEnv = new Dictionary<string, string>();

    static string TrainSubset(int records)
    {
        string dir = TestPaths.NewTempDir("otel-data");
        File.Copy(Path.Combine(DemoDir, "ref_voice.wav"), Path.Combine(dir, "ref_voice.wav"));
        string path = Path.Combine(dir, "train.jsonl");
        File.WriteAllLines(path, File.ReadLines(Path.Combine(DemoDir, "train.jsonl")).Take(records));
        return path;
    }

    static TrainingOptions TinyRun(string output)
    {
        string model = TestPaths.NewTempDir("otel-model");
        ModelDirectory.CreateRandom(model, "tiny", 0, ScalarType.Float32);
        return new()
        {
            TrainData = TrainSubset(4),
            ValidationData = Path.Combine(DemoDir, "validation.jsonl"),
            MaxEvalSamples = 2,
            InitModelPath = model,
            OutputModelPath = output,
            MixedPrecision = "fp32",
            LoggingSteps = 1,
            NumEpochs = 1,
            BatchSize = 2,
            GradientAccumulationSteps = 1,
            EvalSteps = 1,
            WarmupSteps = 0,
            LrScheduler = "constant",
        };
    }

    [Fact]
    public void A_training_run_records_its_metrics_and_one_span_per_step_with_the_five_phases()
    {
        var metrics = new List<Metric>();
        var spans = new List<Activity>();
        using var telemetry = TelemetrySetup.Start("qwen3tts-test", rank: 0, worldSize: 1, runId: "run-42", NoEnv,
            m => m.AddInMemoryExporter(metrics), t => t.AddSource(TestSource.Name).AddInMemoryExporter(spans));
        Assert.Null(telemetry.OtlpEndpoint);

        // Test classes run in parallel and the instruments are process-wide: this run's spans are the ones under this root.
        TrainingResult result;
        ActivityTraceId trace;
        using (var root = TestSource.StartActivity("test"))
        {
            Assert.NotNull(root);
            trace = root.TraceId;
            result = new Trainer(TinyRun(TestPaths.NewTempDir("otel-run")), TextWriter.Null).Run();
        }
        telemetry.TracerProvider!.ForceFlush();
        telemetry.MeterProvider!.ForceFlush();

        Assert.Equal(2, result.GlobalStep);
        var ours = spans.Where(s => s.TraceId == trace).ToList();
        var steps = ours.Where(s => s.DisplayName == Telemetry.StepSpan).ToList();
        Assert.Equal(result.GlobalStep, steps.Count);
        foreach (var step in steps)
        {
            var children = ours.Where(s => s.ParentSpanId == step.SpanId).Select(s => s.DisplayName).ToList();
            Assert.Equal(["data", "forward", "backward", "communication", "optimizer"], children);
        }
        Assert.Equal(3, ours.Count(s => s.DisplayName == Telemetry.EvalSpan)); // after each step and at the epoch's end
        Assert.Contains(ours, s => s.DisplayName == Telemetry.CheckpointSpan && ((string?)s.GetTagItem("qwen3tts.checkpoint.dir"))!.EndsWith("last"));

        var names = metrics.Select(m => m.Name).ToHashSet();
        foreach (var name in new[]
        {
            "qwen3tts.train.loss", "qwen3tts.train.learning_rate", "qwen3tts.train.grad_norm", "qwen3tts.train.samples_per_second",
            "qwen3tts.train.tokens_per_second", "qwen3tts.train.steps", "qwen3tts.train.samples", "qwen3tts.train.step.duration",
            "qwen3tts.train.phase.duration", "qwen3tts.eval.loss", "qwen3tts.checkpoint.save.duration",
            "qwen3tts.process.memory.working_set", "qwen3tts.process.memory.managed_heap",
        })
            Assert.Contains(name, names);
        var phases = new HashSet<string>();
        foreach (var point in metrics.First(m => m.Name == "qwen3tts.train.phase.duration").GetMetricPoints())
            foreach (var tag in point.Tags)
                if (tag.Key == "phase") phases.Add((string)tag.Value!);
        Assert.Equal(["backward", "communication", "data", "forward", "optimizer"], phases.Order());

        var resource = telemetry.TracerProvider.GetResource().Attributes.ToDictionary(a => a.Key, a => a.Value);
        Assert.Equal("qwen3tts-test", resource["service.name"]);
        Assert.Equal("0", resource["service.instance.id"]);
        Assert.Equal(0L, resource["qwen3tts.rank"]);
        Assert.Equal(1L, resource["qwen3tts.world_size"]);
        Assert.Equal("run-42", resource["qwen3tts.run_id"]);
        Assert.Equal(resource, telemetry.MeterProvider.GetResource().Attributes.ToDictionary(a => a.Key, a => a.Value));
    }

    [Fact]
    public void Without_an_endpoint_nothing_is_built_and_nothing_listens()
    {
        using var telemetry = TelemetrySetup.Start("qwen3tts-test", 3, 4, "run", NoEnv);
        Assert.Null(telemetry.MeterProvider);
        Assert.Null(telemetry.TracerProvider);
        Assert.Null(telemetry.OtlpEndpoint);
        Assert.Equal("3", telemetry.ResourceAttributes["service.instance.id"]);
        Assert.Equal(4L, telemetry.ResourceAttributes["qwen3tts.world_size"]);
    }

    [Fact]
    public void Without_an_endpoint_nothing_reaches_a_collector()
    {
        using var collector = new Collector();
        var spans = new List<Activity>();
        using (var telemetry = TelemetrySetup.Start("qwen3tts-test", 0, 1, "run", NoEnv, m => { }, t => t.AddInMemoryExporter(spans)))
        {
            Assert.Null(telemetry.OtlpEndpoint);
            using (Telemetry.Source.StartActivity(Telemetry.EvalSpan)) Telemetry.EvalLoss.Record(1.0);
        }
        Assert.NotEmpty(spans); // recorded, but not sent
        Assert.Empty(collector.Requests);
    }

    [Fact]
    public void With_an_endpoint_spans_and_metrics_are_posted_as_protobuf_to_the_signal_paths()
    {
        using var collector = new Collector();
        var env = new Dictionary<string, string> { [OtelEnv.Endpoint] = collector.Url };
        using (var telemetry = TelemetrySetup.Start("qwen3tts-test", 1, 2, "run", env))
        {
            Assert.Equal(OtlpExportProtocol.HttpProtobuf, telemetry.OtlpProtocol);
            using (Telemetry.Source.StartActivity(Telemetry.CheckpointSpan)) Telemetry.CheckpointDuration.Record(0.5);
        } // disposing flushes both exporters
        var requests = collector.Requests.ToList();
        Assert.Contains(requests, r => r is { Method: "POST", Path: "/v1/traces", ContentType: "application/x-protobuf", Bytes: > 0 });
        Assert.Contains(requests, r => r is { Method: "POST", Path: "/v1/metrics", ContentType: "application/x-protobuf", Bytes: > 0 });
    }

    [Theory]
    [InlineData(null, OtlpExportProtocol.HttpProtobuf)]
    [InlineData("http/protobuf", OtlpExportProtocol.HttpProtobuf)]
    [InlineData("grpc", OtlpExportProtocol.Grpc)]
    public void The_protocol_defaults_to_http_protobuf(string? protocol, OtlpExportProtocol expected)
    {
        var env = new Dictionary<string, string> { [OtelEnv.Endpoint] = "http://collector:4318" };
        if (protocol is not null) env[OtelEnv.Protocol] = protocol;
        Assert.Equal((new Uri("http://collector:4318"), expected), TelemetrySetup.Otlp(env));
    }

    [Fact]
    public void Bad_settings_are_named()
    {
        var bad = Assert.Throws<ArgumentException>(() => TelemetrySetup.Otlp(new Dictionary<string, string>
            { [OtelEnv.Endpoint] = "http://collector:4318", [OtelEnv.Protocol] = "http/json" }));
        Assert.Contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/json", bad.Message);
        Assert.Contains("OTEL_EXPORTER_OTLP_ENDPOINT", Assert.Throws<ArgumentException>(() =>
            TelemetrySetup.Otlp(new Dictionary<string, string> { [OtelEnv.Endpoint] = "collector" })).Message);
    }

    [Fact]
    public void Every_rank_uses_the_same_run_id()
    {
        Assert.Equal("ours", TelemetrySetup.RunId(new Dictionary<string, string> { [OtelEnv.RunId] = "ours", ["WANDB_RUN_ID"] = "w" }, "dir"));
        Assert.Equal("w", TelemetrySetup.RunId(new Dictionary<string, string> { ["WANDB_RUN_ID"] = "w" }, "dir"));
        Assert.Equal("dir", TelemetrySetup.RunId(NoEnv, "dir"));
    }

    /// <summary>A local OTLP/HTTP collector that records each request and answers 200.</summary>
    sealed class Collector : IDisposable
    {
        public sealed record Request(string Method, string Path, string? ContentType, long Bytes);

        readonly HttpListener listener = new();
        readonly Task loop;
        public ConcurrentQueue<Request> Requests { get; } = new();
        public string Url { get; }

        public Collector()
        {
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            int port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            Url = $"http://127.0.0.1:{port}";
            listener.Prefixes.Add(Url + "/");
            listener.Start();
            loop = Task.Run(async () =>
            {
                while (listener.IsListening)
                {
                    HttpListenerContext context;
                    try { context = await listener.GetContextAsync(); }
                    catch (Exception e) when (e is HttpListenerException or ObjectDisposedException) { return; }
                    using var body = new MemoryStream();
                    await context.Request.InputStream.CopyToAsync(body);
                    Requests.Enqueue(new(context.Request.HttpMethod, context.Request.Url!.AbsolutePath, context.Request.ContentType, body.Length));
                    context.Response.StatusCode = 200;
                    context.Response.Close();
                }
            });
        }

        public void Dispose()
        {
            listener.Stop();
            listener.Close();
            loop.Wait(TimeSpan.FromSeconds(5));
        }
    }
}
