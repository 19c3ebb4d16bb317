using System.Net;
using System.Text;
using Qwen3Tts.Coordinator;
using Qwen3Tts.Coordinator.Client;
using Qwen3Tts.Rank.Distributed;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Coordination;

/// <summary>How a rank finds its plan (--coordinator): "embedded" (default: rank 0 hosts the coordinator in-process and
/// shares its address and a generated token with the other ranks through the communicator), an address such as
/// http://coordinator:50051 (a standalone qwen3tts-coordinator; token from --coordinator_token or
/// $QWEN3TTS_COORDINATOR_TOKEN), or "off" (every rank computes the same plan itself).</summary>
public static class RunPlans
{
    public const string Embedded = "embedded", Off = "off";

    /// <summary>The embedded coordinator's folder inside the output folder (its state and metrics files).</summary>
    public const string EmbeddedStateDir = "coordinator";

    /// <param name="start">where this rank's training starts: its checkpoint's position, or 0/0.</param>
    /// <param name="fresh">a new run (no resume): an embedded coordinator's state left by an earlier run is replaced.</param>
    /// <param name="onFailure">called on a background thread when the coordinator declares a rank dead or goes silent; must end the process.</param>
    public static IRunPlan Open(string coordinator, PlanSettings settings, PlanPosition start, bool fresh, ICommunicator comm,
        string outputDir, string? token, TimeSpan heartbeatTimeout, TextWriter log, Action<CoordinatorStopException> onFailure, bool allowNewGlobalBatch = false)
    {
        if (coordinator == Off) return new LocalRunPlan(settings, comm.Rank, comm.WorldSize);
        var interval = TimeSpan.FromTicks(Math.Max(heartbeatTimeout.Ticks / 6, TimeSpan.FromMilliseconds(100).Ticks));

        CoordinatorHost? host = null;
        Uri address;
        bool embedded = coordinator == Embedded;
        try
        {
            if (embedded)
            {
                bool oneHost = AllOnOneHost(comm);
                if (comm.Rank == 0)
                {
                    string stateDir = Path.Combine(outputDir, EmbeddedStateDir);
                    if (fresh) DeleteState(stateDir);
                    host = CoordinatorHost.StartAsync(new CoordinatorHostOptions(new CoordinatorOptions(stateDir, settings)
                    {
                        WorldSize = comm.WorldSize,
                        HeartbeatTimeout = heartbeatTimeout,
                        AllowNewGlobalBatch = allowNewGlobalBatch,
                    })
                    {
                        // Other nodes must reach rank 0; a single-node job keeps the port on loopback.
                        ListenAddress = oneHost ? IPAddress.Loopback.ToString() : IPAddress.Any.ToString(),
                        Token = token,
                        Log = log,
                    }).GetAwaiter().GetResult();
                }
                // rank 0 → everyone: "address\ntoken" (the token travels only through the communicator, never a log).
                string shared = comm.Rank == 0
                    ? $"{(oneHost ? host!.Address : new UriBuilder(host!.Address) { Host = AdvertisedHost() }.Uri)}\n{host.Token}"
                    : "";
                var parts = BroadcastString(comm, shared).Split('\n', 2);
                (address, token) = (new Uri(parts[0]), parts[1]);
            }
            else
            {
                if (!Uri.TryCreate(coordinator, UriKind.Absolute, out var given) || given.Scheme is not ("http" or "https"))
                    throw new ArgumentException($"--coordinator {coordinator}: expected embedded, off, or an address such as http://coordinator:50051");
                if (string.IsNullOrWhiteSpace(token))
                    throw new ArgumentException($"--coordinator {coordinator}: the coordinator needs its bearer token: --coordinator_token or ${CoordinatorEnvVars.Token}");
                address = given;
            }

            var connection = new CoordinatorConnection(address, token!, comm.Rank, comm.WorldSize, interval, heartbeatTimeout);
            connection.Failed += onFailure;
            try { connection.Register(settings, start); }
            catch { connection.Dispose(); throw; }
            return new LeasedRunPlan(connection, comm, embedded, host);
        }
        catch
        {
            host?.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw;
        }
    }

    /// <summary>Whether every rank runs on rank 0's host (then the embedded coordinator listens on loopback only).</summary>
    static bool AllOnOneHost(ICommunicator comm)
    {
        if (comm.WorldSize == 1) return true;
        string rank0 = BroadcastString(comm, comm.Rank == 0 ? Dns.GetHostName() : "");
        return comm.SumAcrossRanks([rank0 == Dns.GetHostName() ? 1.0 : 0.0])[0] == comm.WorldSize;
    }

    /// <summary>The name other nodes use to reach rank 0: $QWEN3TTS_COORDINATOR_ADVERTISE when set, else this host's
    /// fully qualified name (Kubernetes pods with a subdomain and Slurm nodes resolve it; a bare pod name often does not).</summary>
    static string AdvertisedHost()
    {
        if (Environment.GetEnvironmentVariable(AdvertiseVariable) is { Length: > 0 } given) return given;
        string name = Dns.GetHostName();
        try { return Dns.GetHostEntry(name).HostName is { Length: > 0 } fqdn ? fqdn : name; }
        catch (System.Net.Sockets.SocketException) { return name; }
    }

    /// <summary>Overrides the host name the embedded coordinator advertises to other nodes.</summary>
    public const string AdvertiseVariable = "QWEN3TTS_COORDINATOR_ADVERTISE";

    static string BroadcastString(ICommunicator comm, string value)
    {
        var length = BitConverter.GetBytes(comm.Rank == 0 ? Encoding.UTF8.GetByteCount(value) : 0);
        comm.Broadcast(length, root: 0);
        var bytes = comm.Rank == 0 ? Encoding.UTF8.GetBytes(value) : new byte[BitConverter.ToInt32(length)];
        comm.Broadcast(bytes, root: 0);
        return Encoding.UTF8.GetString(bytes);
    }

    static void DeleteState(string dir)
    {
        foreach (var name in new[] { CoordinatorState.StateFileName, CoordinatorState.MetricsFileName })
        {
            string path = Path.Combine(dir, name);
            if (File.Exists(path)) File.Delete(path);
        }
    }
}
