using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Qwen3Tts.Coordinator;
using Qwen3Tts.Protocol.V1;
using V1 = Qwen3Tts.Protocol.V1;

namespace Qwen3Tts.Tests.Coordinator;

/// <summary>The coordinator's Prometheus endpoint over real sockets: ranks talk gRPC (with the token) to the gRPC port, a
/// plain HttpClient (no token) scrapes GET /metrics on the metrics port.</summary>
public sealed partial class PrometheusEndpointTests
{
    const int Version = Qwen3Tts.Coordinator.ProtocolVersion.Current;
    const string Token = "test-token-0123456789";

    static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    static async Task<CoordinatorHost> StartAsync(string dir)
    {
        // The free port is released before Kestrel binds it; retry on the rare steal.
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                return await CoordinatorHost.StartAsync(new CoordinatorHostOptions(
                    new CoordinatorOptions(dir, new PlanSettings(20, 7, 2)) { WorldSize = 2 }) { Token = Token, MetricsPort = FreePort() });
            }
            catch (IOException) when (attempt < 3) { }
        }
    }

    static V1.Coordinator.CoordinatorClient Connect(GrpcChannel channel) =>
        new(channel.Intercept(m => { m.Add("authorization", $"Bearer {Token}"); return m; }));

    /// <summary>The value of the one sample of <paramref name="name"/> whose labels include every given pair.</summary>
    static double Sample(string text, string name, params (string Key, string Value)[] labels)
    {
        var values = text.Split('\n')
            .Select(line => SampleLine().Match(line))
            .Where(m => m.Success && m.Groups["name"].Value == name)
            .Where(m => labels.All(l => m.Groups["labels"].Value.Contains($"{l.Key}=\"{l.Value}\"", StringComparison.Ordinal)))
            .Select(m => double.Parse(m.Groups["value"].Value, CultureInfo.InvariantCulture))
            .ToList();
        Assert.True(values.Count == 1, $"expected one sample of {name} with {string.Join(",", labels)}, found {values.Count} in:\n{text}");
        return values[0];
    }

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>[^}]*)\})? (?<value>\S+)")]
    private static partial Regex SampleLine();

    [Fact]
    public async Task Metrics_port_serves_the_coordinators_state_in_the_Prometheus_text_format_without_a_token()
    {
        string dir = TestPaths.NewTempDir("prometheus");
        await using var host = await StartAsync(dir);
        Assert.NotNull(host.MetricsAddress);
        string run = host.State.RunId;

        using (var channel = GrpcChannel.ForAddress(host.Address))
        {
            var api = Connect(channel);
            for (int rank = 0; rank < 2; rank++)
                await api.RegisterAsync(new RegisterRequest { Rank = rank, WorldSize = 2, Host = "test", ProtocolVersion = Version });
            await api.HeartbeatAsync(new HeartbeatRequest { Rank = 1, Step = 0, ProtocolVersion = Version });
            var lease = await api.LeaseBatchesAsync(new LeaseBatchesRequest { ProtocolVersion = Version, Rank = 0, Epoch = 0, MaxBatches = 2 });
            Assert.Equal(2, lease.Batches.Count);
            await api.ReportStepAsync(new ReportStepRequest
            {
                ProtocolVersion = Version, Rank = 0, Step = 1, Metrics = { ["train/loss"] = 2.5 },
                Position = new V1.PlanPosition { Epoch = 0, NextBatch = 1 },
            });
        }

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        using var response = await http.GetAsync(host.MetricsAddress);
        string text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains(response.Content.Headers.ContentType!.Parameters, p => p.Name == "version" && p.Value == "0.0.4");

        (string, string) Run = ("run_id", run);
        Assert.Contains("# TYPE qwen3tts_coordinator_ranks_registered gauge", text);
        Assert.Contains("# TYPE qwen3tts_coordinator_leases_total counter", text);
        Assert.Equal(2, Sample(text, "qwen3tts_coordinator_ranks_registered", Run));
        Assert.Equal(2, Sample(text, "qwen3tts_coordinator_ranks_live", Run));
        Assert.Equal(0, Sample(text, "qwen3tts_coordinator_ranks_dead", Run));
        Assert.Equal(0, Sample(text, "qwen3tts_coordinator_epoch", Run));
        Assert.Equal(0, Sample(text, "qwen3tts_coordinator_next_batch", Run)); // rank 1 has finished nothing yet
        Assert.Equal(0, Sample(text, "qwen3tts_coordinator_stopped", Run));
        Assert.Equal(1, Sample(text, "qwen3tts_coordinator_leases_total", Run));
        Assert.Equal(1, Sample(text, "qwen3tts_coordinator_heartbeats_total", Run));
        Assert.Equal(2.5, Sample(text, "qwen3tts_coordinator_rank_loss", Run, ("rank", "0")));
        Assert.DoesNotContain("rank=\"1\"", text);

        // Nothing but GET /metrics on the metrics port; the gRPC port still wants its token.
        using var other = await http.GetAsync(new Uri(host.MetricsAddress!, "/"));
        Assert.Equal(HttpStatusCode.NotFound, other.StatusCode);
    }

    [Fact]
    public async Task Metrics_port_zero_serves_no_metrics()
    {
        string dir = TestPaths.NewTempDir("prometheus");
        await using var host = await CoordinatorHost.StartAsync(new CoordinatorHostOptions(new CoordinatorOptions(dir, new PlanSettings(20, 7, 2))) { Token = Token });
        Assert.Null(host.MetricsAddress);
    }
}
