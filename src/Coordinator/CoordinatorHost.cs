using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using Qwen3Tts.Coordinator.Observability;

namespace Qwen3Tts.Coordinator;

public sealed record CoordinatorHostOptions(CoordinatorOptions Coordinator)
{
    /// <summary>The address to listen on (an IP address; default loopback only).</summary>
    public string ListenAddress { get; init; } = "127.0.0.1";
    /// <summary>0: pick a free port (see <see cref="CoordinatorHost.Address"/>).</summary>
    public int Port { get; init; }
    /// <summary>The run's bearer token; null: generate one (embedded use; hand <see cref="CoordinatorHost.Token"/> to the ranks).</summary>
    public string? Token { get; init; }
    /// <summary>A PKCS#12 (.pfx) certificate: serve HTTPS (HTTP/2 over TLS) instead of HTTP/2 cleartext.</summary>
    public string? CertificatePath { get; init; }
    public string? CertificatePassword { get; init; }
    /// <summary>A second, plain HTTP/1.1 port on <see cref="ListenAddress"/> serving GET /metrics in the Prometheus text format
    /// (meter <see cref="CoordinatorMetrics.Name"/>), without the bearer token, as Prometheus scrapes by convention; nothing else
    /// is served there. 0: off.</summary>
    public int MetricsPort { get; init; }
    /// <summary>Where log lines go; null: nowhere.</summary>
    public TextWriter? Log { get; init; }
}

/// <summary>The coordinator as a Kestrel gRPC server, embeddable in-process (tests, a one-process run) or run standalone by
/// qwen3tts-coordinator. Start it, read <see cref="Address"/> and <see cref="Token"/>, dispose it to stop.</summary>
public sealed class CoordinatorHost : IAsyncDisposable
{
    readonly WebApplication app;
    readonly ITimer livenessTimer;
    readonly CoordinatorMetrics? metrics;
    readonly MeterProvider? meterProvider;

    CoordinatorHost(WebApplication app, CoordinatorState state, CoordinatorToken token, Uri address, Uri? metricsAddress,
        ITimer livenessTimer, CoordinatorMetrics? metrics, MeterProvider? meterProvider)
    {
        (this.app, State, this.token, Address, MetricsAddress, this.livenessTimer, this.metrics, this.meterProvider) =
            (app, state, token, address, metricsAddress, livenessTimer, metrics, meterProvider);
    }

    /// <summary>The Prometheus scrape URL (…/metrics); null when <see cref="CoordinatorHostOptions.MetricsPort"/> is 0.</summary>
    public Uri? MetricsAddress { get; }

    readonly CoordinatorToken token;

    public Uri Address { get; }
    /// <summary>The bearer token every call must carry. Not logged anywhere by the host.</summary>
    public string Token => token.Value;
    public CoordinatorState State { get; }

    public static async Task<CoordinatorHost> StartAsync(CoordinatorHostOptions options, CancellationToken cancellationToken = default)
    {
        if (!IPAddress.TryParse(options.ListenAddress, out var ip))
            throw new ArgumentException($"--address {options.ListenAddress}: not an IP address (e.g. 127.0.0.1, or 0.0.0.0 for every interface)");
        if (options.CertificatePath is { } cert && !File.Exists(cert))
            throw new FileNotFoundException($"--tls_certificate {cert}: no such file", cert);
        if (options.MetricsPort is < 0 or > IPEndPoint.MaxPort)
            throw new ArgumentException($"--metrics-port {options.MetricsPort}: not a port (1..{IPEndPoint.MaxPort}, or 0 for no metrics endpoint)");
        if (options.MetricsPort != 0 && options.MetricsPort == options.Port)
            throw new ArgumentException($"--metrics-port {options.MetricsPort} is the gRPC --port; give the metrics endpoint a port of its own");

        var state = new CoordinatorState(options.Coordinator);
        var log = options.Log is { } writer ? TextWriter.Synchronized(writer) : null;
        if (log is not null) state.Event += line => log.WriteLine($"coordinator: {line}");
        var token = options.Token is { } given ? new CoordinatorToken(given) : CoordinatorToken.Generate();

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = typeof(CoordinatorHost).Assembly.GetName().Name });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(ip, options.Port, listen =>
            {
                listen.Protocols = HttpProtocols.Http2;
                if (options.CertificatePath is { } path) listen.UseHttps(path, options.CertificatePassword);
            });
            // Prometheus scrapes over HTTP/1.1 without TLS by default; the token and certificate stay on the gRPC port.
            if (options.MetricsPort != 0) kestrel.Listen(ip, options.MetricsPort, listen => listen.Protocols = HttpProtocols.Http1);
        });
        CoordinatorMetrics? metrics = null;
        MeterProvider? meterProvider = null;
        if (options.MetricsPort != 0)
        {
            metrics = new CoordinatorMetrics(state);
            meterProvider = Sdk.CreateMeterProviderBuilder()
                .ConfigureResource(resource => resource.AddService("qwen3tts-coordinator")) // target_info{service_name=...}
                .AddMeter(CoordinatorMetrics.Name)
                .AddPrometheusExporter(prometheus => prometheus.ScrapeResponseCacheDurationMilliseconds = 0) // every scrape reads the state now
                .Build();
        }
        builder.Services.AddSingleton(state);
        builder.Services.AddSingleton(token);
        builder.Services.AddGrpc(grpc =>
        {
            // Outermost first: no token, no further look; then the version; then the domain's refusals become statuses.
            grpc.Interceptors.Add<BearerTokenInterceptor>();
            grpc.Interceptors.Add<ProtocolVersionInterceptor>();
            grpc.Interceptors.Add<ErrorMappingInterceptor>();
        });
        var app = builder.Build();
        if (meterProvider is not null)
        {
            int metricsPort = options.MetricsPort;
            bool OnMetricsPort(Microsoft.AspNetCore.Http.HttpContext context) => context.Connection.LocalPort == metricsPort;
            app.UseOpenTelemetryPrometheusScrapingEndpoint(meterProvider,
                predicate: context => OnMetricsPort(context) && context.Request.Path == "/metrics", path: null, configureBranchedPipeline: null, optionsName: null);
            // The metrics port serves /metrics and nothing else (in particular not the gRPC service, which needs the token).
            app.Use((context, next) =>
            {
                if (!OnMetricsPort(context)) return next(context);
                context.Response.StatusCode = Microsoft.AspNetCore.Http.StatusCodes.Status404NotFound;
                return Task.CompletedTask;
            });
        }
        app.MapGrpcService<CoordinatorService>();
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch
        {
            meterProvider?.Dispose();
            metrics?.Dispose();
            await app.DisposeAsync();
            throw;
        }

        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Select(a => new Uri(a)).ToList();
        var address = addresses.First(a => a.Port != options.MetricsPort || options.MetricsPort == 0);
        Uri? metricsAddress = options.MetricsPort == 0 ? null : new Uri(addresses.First(a => a.Port == options.MetricsPort), "/metrics");
        // Declare silent ranks dead even when nobody calls: a few checks per timeout.
        var period = TimeSpan.FromTicks(Math.Max(options.Coordinator.HeartbeatTimeout.Ticks / 4, TimeSpan.FromMilliseconds(50).Ticks));
        var timer = options.Coordinator.Time.CreateTimer(_ => state.CheckLiveness(), null, period, period);
        log?.WriteLine($"coordinator: run {state.RunId} listening on {address} ({(options.CertificatePath is null ? "HTTP/2 cleartext" : "TLS")}); state in {options.Coordinator.OutputDir}");
        if (metricsAddress is not null) log?.WriteLine($"coordinator: Prometheus metrics at {metricsAddress} (plain HTTP, no token)");
        return new CoordinatorHost(app, state, token, address, metricsAddress, timer, metrics, meterProvider);
    }

    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => app.WaitForShutdownAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        await livenessTimer.DisposeAsync();
        await app.StopAsync();
        await app.DisposeAsync();
        meterProvider?.Dispose();
        metrics?.Dispose();
    }
}
