using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

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
    /// <summary>Where log lines go; null: nowhere.</summary>
    public TextWriter? Log { get; init; }
}

/// <summary>The coordinator as a Kestrel gRPC server, embeddable in-process (tests, a one-process run) or run standalone by
/// qwen3tts-coordinator. Start it, read <see cref="Address"/> and <see cref="Token"/>, dispose it to stop.</summary>
public sealed class CoordinatorHost : IAsyncDisposable
{
    readonly WebApplication app;
    readonly ITimer livenessTimer;

    CoordinatorHost(WebApplication app, CoordinatorState state, CoordinatorToken token, Uri address, ITimer livenessTimer)
    {
        (this.app, State, this.token, Address, this.livenessTimer) = (app, state, token, address, livenessTimer);
    }

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

        var state = new CoordinatorState(options.Coordinator);
        var log = options.Log is { } writer ? TextWriter.Synchronized(writer) : null;
        if (log is not null) state.Event += line => log.WriteLine($"coordinator: {line}");
        var token = options.Token is { } given ? new CoordinatorToken(given) : CoordinatorToken.Generate();

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = typeof(CoordinatorHost).Assembly.GetName().Name });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(ip, options.Port, listen =>
        {
            listen.Protocols = HttpProtocols.Http2;
            if (options.CertificatePath is { } path) listen.UseHttps(path, options.CertificatePassword);
        }));
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
        app.MapGrpcService<CoordinatorService>();
        await app.StartAsync(cancellationToken);

        string bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        var address = new Uri(bound);
        // Declare silent ranks dead even when nobody calls: a few checks per timeout.
        var period = TimeSpan.FromTicks(Math.Max(options.Coordinator.HeartbeatTimeout.Ticks / 4, TimeSpan.FromMilliseconds(50).Ticks));
        var timer = options.Coordinator.Time.CreateTimer(_ => state.CheckLiveness(), null, period, period);
        log?.WriteLine($"coordinator: run {state.RunId} listening on {address} ({(options.CertificatePath is null ? "HTTP/2 cleartext" : "TLS")}); state in {options.Coordinator.OutputDir}");
        return new CoordinatorHost(app, state, token, address, timer);
    }

    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => app.WaitForShutdownAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        await livenessTimer.DisposeAsync();
        await app.StopAsync();
        await app.DisposeAsync();
    }
}
