using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Distributed;

/// <summary>Where and how the ranks of a TCP world meet. <see cref="Token"/> is a shared secret: only its hash goes on
/// the wire and it is never printed.</summary>
public sealed record TcpSettings(string? MasterAddr, int MasterPort, TimeSpan RendezvousTimeout, TimeSpan CollectiveTimeout, string? Token)
{
    public const int DefaultPort = 29500;
    public static readonly TimeSpan DefaultRendezvousTimeout = TimeSpan.FromSeconds(300);
    /// <summary>Long enough for rank 0 to write a 1.7B checkpoint while the others wait in a collective.</summary>
    public static readonly TimeSpan DefaultCollectiveTimeout = TimeSpan.FromSeconds(1800);

    /// <summary>From MASTER_ADDR, MASTER_PORT, QWEN3TTS_TCP_TIMEOUT_S and QWEN3TTS_COORDINATOR_TOKEN; flags win.</summary>
    public static TcpSettings From(IReadOnlyDictionary<string, string> env, string? masterAddr = null, int? masterPort = null, TimeSpan? rendezvousTimeout = null)
    {
        string? addr = masterAddr ?? (env.TryGetValue(EnvVars.MasterAddr, out var a) && !string.IsNullOrWhiteSpace(a) ? a.Trim() : null);
        int port = masterPort ?? Int(env, EnvVars.MasterPort) ?? DefaultPort;
        if (port is < 1 or > 65535)
            throw new CommunicatorException($"{EnvVars.MasterPort}={port} is not a TCP port (1..65535)");
        var collective = Int(env, EnvVars.TcpTimeoutSeconds) is { } s ? TimeSpan.FromSeconds(s) : DefaultCollectiveTimeout;
        if (collective <= TimeSpan.Zero)
            throw new CommunicatorException($"{EnvVars.TcpTimeoutSeconds} must be a positive number of seconds");
        var rendezvous = rendezvousTimeout ?? DefaultRendezvousTimeout;
        if (rendezvous <= TimeSpan.Zero)
            throw new ArgumentException($"--rendezvous_timeout must be positive, got {rendezvous.TotalSeconds} s");
        return new(addr, port, rendezvous, collective, env.TryGetValue(EnvVars.CoordinatorToken, out var t) && t.Length > 0 ? t : null);
    }

    /// <summary>Never prints the token.</summary>
    public override string ToString() =>
        $"TcpSettings {{ MasterAddr = {MasterAddr}, MasterPort = {MasterPort}, RendezvousTimeout = {RendezvousTimeout}, CollectiveTimeout = {CollectiveTimeout}, Token = {(Token is null ? "none" : "***")} }}";

    static int? Int(IReadOnlyDictionary<string, string> env, string name) =>
        !env.TryGetValue(name, out var text) || string.IsNullOrWhiteSpace(text) ? null
        : int.TryParse(text.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
        : throw new CommunicatorException($"{name}='{text}' is not an integer");
}

/// <summary>Collectives over plain TCP sockets, for processes that no MPI launcher started (torchrun-style RANK/WORLD_SIZE,
/// Kubernetes Indexed Jobs).
///
/// Rendezvous: rank 0 listens on MASTER_PORT; every other rank opens its own listener on an ephemeral port, connects to
/// MASTER_ADDR:MASTER_PORT (retrying with backoff while the name does not resolve or nobody listens, up to the
/// rendezvous timeout) and sends a hello (protocol version, rank, world size, SHA-256 of the job token, its port).
/// Rank 0 checks them (a wrong world size, version or duplicate rank fails the job; a wrong token is refused and
/// waited past: it is not one of ours) and sends everyone the table of addresses. Each rank then connects to its
/// successor on a logical ring (r → r+1 mod N); the control connections are closed.
///
/// All-reduce is the ring algorithm (reduce-scatter, then all-gather): each rank sends and receives 2(N−1)/N of the
/// buffer, whatever N. Each chunk is summed in one fixed order around the ring by its owner and then copied verbatim,
/// so every rank ends with the same bits, run after run. Broadcast pipelines 1 MiB frames along the ring from the root.
///
/// One owner thread runs the collectives in submission order (as in <see cref="MpiCommunicator"/>). Every frame says
/// which collective it belongs to and how long it is, so ranks calling different collectives fail with a message
/// rather than garbage. A failure (a peer's socket closing, a timeout, an abort frame) is sticky and is forwarded
/// along the ring as an abort frame naming the rank at fault, so every rank fails within seconds with
/// "rank N disconnected". Sockets use TCP keepalive (a vanished host is noticed in about 25 s) and a receive/send
/// timeout (<see cref="TcpSettings.CollectiveTimeout"/>).</summary>
public sealed unsafe class TcpCommunicator : ICommunicator
{
    public const int ProtocolVersion = 1;
    const int Magic = 0x54543351; // "Q3TT" little-endian
    const int FrameBytes = 1 << 20;
    const int HeaderBytes = 16;
    const int FrameData = 1, FrameAbort = 2;
    /// <summary>Exit code carried by a forwarded abort frame when the origin rank did not abort but disconnected.</summary>
    const int Disconnected = -1;
    static readonly TimeSpan AbortSendWait = TimeSpan.FromSeconds(2);

    readonly TcpSettings _settings;
    readonly Socket? _next, _prev;
    readonly int _nextRank, _prevRank;
    readonly object _nextWrite = new(), _prevWrite = new(), _failureLock = new();
    readonly Thread? _owner, _sender;
    readonly BlockingCollection<Operation> _sends = new();
    readonly BlockingCollection<Operation> _queue = new();
    readonly byte[] _scratch = new byte[FrameBytes];
    readonly byte[] _header = new byte[HeaderBytes];
    int _op;
    volatile CommunicatorException? _failure;
    (int Origin, int Code)? _failedBy;
    int _disposed;

    public int Rank { get; }
    public int WorldSize { get; }
    public int LocalRank { get; }
    public string Backend { get; }

    sealed record Operation(Action Run, TaskCompletionSource Done);

    TcpCommunicator(int rank, int worldSize, int localRank, TcpSettings settings, Socket? next, Socket? prev)
    {
        (Rank, WorldSize, LocalRank, _settings, _next, _prev) = (rank, worldSize, localRank, settings, next, prev);
        _nextRank = (rank + 1) % worldSize;
        _prevRank = (rank + worldSize - 1) % worldSize;
        Backend = $"tcp (ring, rendezvous {settings.MasterAddr ?? "*"}:{settings.MasterPort})";
        _owner = new Thread(OwnerLoop) { IsBackground = true, Name = "tcp-collectives" };
        _owner.Start();
        _sender = new Thread(SenderLoop) { IsBackground = true, Name = "tcp-send" };
        _sender.Start();
    }

    /// <summary>The communicator for a world no MPI launcher started: settings from the environment and flags.</summary>
    public static TcpCommunicator Start(WorldInfo world, TcpSettings settings) =>
        Connect(world.Rank, world.WorldSize, world.LocalRank, settings);

    /// <summary>Rendezvous and ring set-up; returns when every rank is connected (or throws naming what is missing).</summary>
    public static TcpCommunicator Connect(int rank, int worldSize, int localRank, TcpSettings settings)
    {
        if (worldSize < 1 || rank < 0 || rank >= worldSize)
            throw new CommunicatorException($"rank {rank} is outside the world of {worldSize}");
        if (worldSize == 1) return new TcpCommunicator(0, 1, localRank, settings, null, null);
        if (rank != 0 && settings.MasterAddr is null)
            throw new CommunicatorException(
                $"rank {rank} of {worldSize}: {EnvVars.MasterAddr} is not set: set it (or --master_addr) to rank 0's host name, e.g. the Indexed Job's `<job>-0.<service>`");
        var deadline = DateTime.UtcNow + settings.RendezvousTimeout;
        var hash = TokenHash(settings.Token);
        var (next, prev) = rank == 0 ? RendezvousAsRoot(worldSize, settings, hash, deadline) : RendezvousAsPeer(rank, worldSize, settings, hash, deadline);
        foreach (var s in (Socket[])[next, prev]) Tune(s, settings.CollectiveTimeout);
        return new TcpCommunicator(rank, worldSize, localRank, settings, next, prev);
    }

    // ---------------------------------------------------------------------------------------------- rendezvous

    static (Socket Next, Socket Prev) RendezvousAsRoot(int n, TcpSettings settings, byte[] hash, DateTime deadline)
    {
        using var listener = Listen(settings.MasterPort, $"rank 0 of {n}: cannot listen on port {settings.MasterPort} ({EnvVars.MasterPort})");
        var joined = new Dictionary<int, (Socket Socket, string Host, int Port)>();
        try
        {
            while (joined.Count < n - 1)
            {
                var s = Accept(listener, deadline, () =>
                    $"rank 0 of {n}: only {joined.Count} of {n - 1} ranks joined the rendezvous on port {settings.MasterPort} within {settings.RendezvousTimeout.TotalSeconds:F0} s " +
                    $"(missing: {string.Join(", ", Enumerable.Range(1, n - 1).Where(r => !joined.ContainsKey(r)))}). Check that every rank runs, that {EnvVars.MasterAddr} names this host, " +
                    $"and raise --rendezvous_timeout if pods start slowly");
                try
                {
                    var hello = ReadHello(s, deadline);
                    string? refusal = hello.Kind != HelloJoin ? "expected a rendezvous hello"
                        : !CryptographicOperations.FixedTimeEquals(hello.TokenHash, hash) ? $"job token mismatch ({EnvVars.CoordinatorToken} differs from rank 0's)"
                        : null;
                    if (refusal is not null)
                    {
                        Console.Error.WriteLine($"rank 0 of {n}: refused a connection from {s.RemoteEndPoint} claiming rank {hello.Rank}: {refusal}");
                        Refuse(s, refusal);
                        continue;
                    }
                    string? fatal = hello.Version != ProtocolVersion ? $"protocol version {hello.Version} but rank 0 speaks {ProtocolVersion} (mixed images?)"
                        : hello.WorldSize != n ? $"world size {hello.WorldSize} but rank 0 has {n} ({EnvVars.WorldSize} differs between ranks)"
                        : hello.Rank < 1 || hello.Rank >= n ? $"rank {hello.Rank} is outside 1..{n - 1}"
                        : joined.ContainsKey(hello.Rank) ? $"rank {hello.Rank} joined twice (from {joined[hello.Rank].Socket.RemoteEndPoint} and {s.RemoteEndPoint}): two processes have the same RANK"
                        : null;
                    if (fatal is not null)
                    {
                        Refuse(s, fatal);
                        throw new CommunicatorException($"rank 0 of {n}: rendezvous failed: a rank from {s.RemoteEndPoint} reports {fatal}");
                    }
                    var host = ((IPEndPoint)s.RemoteEndPoint!).Address;
                    joined[hello.Rank] = (s, (host.IsIPv4MappedToIPv6 ? host.MapToIPv4() : host).ToString(), hello.Port);
                }
                catch (Exception e) when (e is SocketException or IOException)
                {
                    Console.Error.WriteLine($"rank 0 of {n}: dropped a connection during its hello: {e.Message}");
                    s.Dispose();
                }
            }
            // The table: rank 0's entry is empty (the others reach it at MASTER_ADDR:MASTER_PORT).
            var table = new MemoryStream();
            using (var w = new BinaryWriter(table, Encoding.UTF8, leaveOpen: true))
            {
                w.Write(0);
                w.Write(n);
                w.Write("");
                w.Write(settings.MasterPort);
                for (int r = 1; r < n; r++) { w.Write(joined[r].Host); w.Write(joined[r].Port); }
            }
            foreach (var (_, entry) in joined) SendAll(entry.Socket, table.ToArray());
            // Ring: connect to rank 1's listener; accept rank n-1 on the rendezvous port.
            var next = Task.Run(() => ConnectRing(0, n, joined[1].Host, joined[1].Port, hash, deadline, settings));
            var prev = AcceptRing(listener, 0, n, hash, deadline, settings);
            return (Join(next), prev);
        }
        finally
        {
            foreach (var (_, entry) in joined) entry.Socket.Dispose();
        }
    }

    static (Socket Next, Socket Prev) RendezvousAsPeer(int rank, int n, TcpSettings settings, byte[] hash, DateTime deadline)
    {
        using var listener = Listen(0, $"rank {rank} of {n}: cannot open a listening socket");
        int myPort = ((IPEndPoint)listener.LocalEndPoint!).Port;
        using var control = ConnectWithRetry(settings.MasterAddr!, settings.MasterPort, deadline, () =>
            $"rank {rank} of {n}: could not reach the rendezvous at {settings.MasterAddr}:{settings.MasterPort} ({EnvVars.MasterAddr}:{EnvVars.MasterPort}) " +
            $"within {settings.RendezvousTimeout.TotalSeconds:F0} s. Check that rank 0 is running, that the name resolves from here " +
            "(Kubernetes: the headless Service and the Job's subdomain), and raise --rendezvous_timeout if pods start slowly");
        var hello = new MemoryStream();
        using (var w = new BinaryWriter(hello, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(Magic); w.Write(ProtocolVersion); w.Write(HelloJoin); w.Write(rank); w.Write(n); w.Write(hash); w.Write(myPort);
        }
        SendAll(control, hello.ToArray());
        control.ReceiveTimeout = Remaining(deadline);
        string[] hosts = new string[n];
        int[] ports = new int[n];
        try
        {
            using var r = new BinaryReader(new NetworkStream(control, ownsSocket: false), Encoding.UTF8);
            if (r.ReadInt32() != 0) throw new CommunicatorException($"rank {rank} of {n}: rank 0 refused this rank: {r.ReadString()}");
            if (r.ReadInt32() != n) throw new CommunicatorException($"rank {rank} of {n}: rank 0 sent a table of another size");
            for (int i = 0; i < n; i++) { hosts[i] = r.ReadString(); ports[i] = r.ReadInt32(); }
        }
        catch (Exception e) when (e is IOException or SocketException or EndOfStreamException)
        {
            throw new CommunicatorException(
                $"rank {rank} of {n}: rank 0 at {settings.MasterAddr}:{settings.MasterPort} closed the rendezvous before sending the table ({e.Message}); see rank 0's log");
        }
        hosts[0] = settings.MasterAddr!;
        int succ = (rank + 1) % n;
        var next = Task.Run(() => ConnectRing(rank, n, hosts[succ], ports[succ], hash, deadline, settings));
        var prev = AcceptRing(listener, rank, n, hash, deadline, settings);
        return (Join(next), prev);
    }

    const int HelloJoin = 1, HelloRing = 2;

    sealed record Hello(int Version, int Kind, int Rank, int WorldSize, byte[] TokenHash, int Port);

    static Hello ReadHello(Socket s, DateTime deadline)
    {
        s.ReceiveTimeout = Math.Min(Remaining(deadline), 10_000);
        using var r = new BinaryReader(new NetworkStream(s, ownsSocket: false));
        if (r.ReadInt32() != Magic) throw new IOException("not a qwen3tts-rank (bad magic)");
        int version = r.ReadInt32(), kind = r.ReadInt32(), rank = r.ReadInt32(), size = r.ReadInt32();
        var hash = r.ReadBytes(32);
        int port = kind == HelloJoin ? r.ReadInt32() : 0;
        return new Hello(version, kind, rank, size, hash, port);
    }

    static void Refuse(Socket s, string reason)
    {
        try
        {
            var m = new MemoryStream();
            using (var w = new BinaryWriter(m, Encoding.UTF8, leaveOpen: true)) { w.Write(1); w.Write(reason); }
            SendAll(s, m.ToArray());
        }
        catch (Exception e) when (e is SocketException or IOException) { }
        finally { s.Dispose(); }
    }

    static Socket ConnectRing(int rank, int n, string host, int port, byte[] hash, DateTime deadline, TcpSettings settings)
    {
        int succ = (rank + 1) % n;
        var s = ConnectWithRetry(host, port, deadline, () =>
            $"rank {rank} of {n}: could not connect to rank {succ} at {host}:{port} within the rendezvous timeout ({settings.RendezvousTimeout.TotalSeconds:F0} s): " +
            "ranks must reach each other directly (pod-to-pod networking, no NAT between them)");
        var m = new MemoryStream();
        using (var w = new BinaryWriter(m, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(Magic); w.Write(ProtocolVersion); w.Write(HelloRing); w.Write(rank); w.Write(n); w.Write(hash);
        }
        SendAll(s, m.ToArray());
        s.ReceiveTimeout = Remaining(deadline);
        var ok = new byte[4];
        try { ReceiveAll(s, ok); }
        catch (Exception e) when (e is SocketException or IOException)
        {
            s.Dispose();
            throw new CommunicatorException($"rank {rank} of {n}: rank {succ} at {host}:{port} closed the ring connection ({e.Message})");
        }
        if (BinaryPrimitives.ReadInt32LittleEndian(ok) != 0)
        {
            s.Dispose();
            throw new CommunicatorException($"rank {rank} of {n}: rank {succ} at {host}:{port} refused the ring connection");
        }
        return s;
    }

    static Socket AcceptRing(Socket listener, int rank, int n, byte[] hash, DateTime deadline, TcpSettings settings)
    {
        int pred = (rank + n - 1) % n;
        while (true)
        {
            var s = Accept(listener, deadline, () =>
                $"rank {rank} of {n}: rank {pred} never connected to this rank's ring port within the rendezvous timeout ({settings.RendezvousTimeout.TotalSeconds:F0} s): " +
                "ranks must reach each other directly (pod-to-pod networking, no NAT between them)");
            try
            {
                var h = ReadHello(s, deadline);
                bool good = h.Kind == HelloRing && h.Version == ProtocolVersion && h.Rank == pred && h.WorldSize == n
                    && CryptographicOperations.FixedTimeEquals(h.TokenHash, hash);
                var reply = new byte[4];
                BinaryPrimitives.WriteInt32LittleEndian(reply, good ? 0 : 1);
                SendAll(s, reply);
                if (good) return s;
                Console.Error.WriteLine($"rank {rank} of {n}: refused a ring connection from {s.RemoteEndPoint} (claims rank {h.Rank}; expected rank {pred} with this job's token)");
            }
            catch (Exception e) when (e is SocketException or IOException) { }
            s.Dispose();
        }
    }

    static Socket Listen(int port, string what)
    {
        // Dual-stack where the kernel has IPv6, else IPv4 only (some clusters disable IPv6 in pods).
        bool v6 = Socket.OSSupportsIPv6;
        var l = new Socket(v6 ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (v6) l.DualMode = true;
            l.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            l.Bind(new IPEndPoint(v6 ? IPAddress.IPv6Any : IPAddress.Any, port));
            l.Listen(256);
            return l;
        }
        catch (SocketException e)
        {
            l.Dispose();
            throw new CommunicatorException($"{what}: {e.Message}");
        }
    }

    /// <summary>Poll, then a synchronous accept: sockets here never see an async call, so on Linux they stay truly
    /// blocking and their I/O needs no thread-pool thread (async-touched sockets complete through the pool, which a
    /// 2-core machine running blocked ranks can starve).</summary>
    static Socket Accept(Socket listener, DateTime deadline, Func<string> timeoutMessage)
    {
        while (DateTime.UtcNow < deadline)
            if (listener.Poll(TimeSpan.FromMilliseconds(Math.Min(Remaining(deadline), 500)), SelectMode.SelectRead))
                return listener.Accept();
        throw new CommunicatorException(timeoutMessage());
    }

    /// <summary>Resolves and connects until <paramref name="deadline"/>, backing off from 0.1 s to 5 s: in Kubernetes
    /// the Service's DNS record appears only once rank 0's pod is ready.</summary>
    static Socket ConnectWithRetry(string host, int port, DateTime deadline, Func<string> timeoutMessage)
    {
        var delay = TimeSpan.FromMilliseconds(100);
        string last = "no attempt";
        while (true)
        {
            Socket? s = null;
            try
            {
                var address = Dns.GetHostAddresses(host).OrderBy(a => a.AddressFamily == AddressFamily.InterNetwork ? 0 : 1).First();
                s = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                // Synchronous connect (see Accept); a black-holed address is cut off by disposing the socket.
                var attempt = s;
                using var cutoff = new Timer(_ => attempt.Dispose(), null, Math.Min(Remaining(deadline), 10_000), Timeout.Infinite);
                s.Connect(new IPEndPoint(address, port));
                s.NoDelay = true;
                return s;
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or InvalidOperationException)
            {
                s?.Dispose();
                last = e is SocketException se ? $"{se.SocketErrorCode}: {se.Message}" : "connect timed out";
            }
            if (DateTime.UtcNow + delay >= deadline) throw new CommunicatorException($"{timeoutMessage()} (last error: {last})");
            Thread.Sleep(delay);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
        }
    }

    static void Tune(Socket s, TimeSpan timeout)
    {
        s.NoDelay = true;
        s.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
        // A peer host that vanishes without a FIN/RST (power loss, network partition) is noticed in ~10 + 3 x 5 s.
        s.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, 10);
        s.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, 5);
        s.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, 3);
        s.SendBufferSize = s.ReceiveBufferSize = 4 << 20;
        s.ReceiveTimeout = s.SendTimeout = (int)Math.Min(int.MaxValue, timeout.TotalMilliseconds);
    }

    static int Remaining(DateTime deadline) => (int)Math.Clamp((deadline - DateTime.UtcNow).TotalMilliseconds, 1, int.MaxValue);

    static T Join<T>(Task<T> task)
    {
        try { return task.GetAwaiter().GetResult(); }
        catch (AggregateException e) when (e.InnerException is not null) { throw e.InnerException; }
    }

    /// <summary>SHA-256 over a domain tag and the token: what the hello carries instead of the token.</summary>
    static byte[] TokenHash(string? token) => SHA256.HashData(Encoding.UTF8.GetBytes("qwen3tts-tcp-v1\0" + (token ?? "")));

    static void SendAll(Socket s, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty) data = data[s.Send(data)..];
    }

    static void ReceiveAll(Socket s, Span<byte> data)
    {
        while (!data.IsEmpty)
        {
            int got = s.Receive(data);
            if (got == 0) throw new IOException("connection closed");
            data = data[got..];
        }
    }

    // ---------------------------------------------------------------------------------------------- owner thread

    void OwnerLoop()
    {
        foreach (var op in _queue.GetConsumingEnumerable())
        {
            try
            {
                if (_failure is { } f) throw new CommunicatorException(f.Message);
                op.Run();
                op.Done.SetResult();
            }
            catch (Exception e)
            {
                op.Done.SetException(e is CommunicatorException ? e : Fail(e, _prevRank, "collective"));
            }
        }
    }

    /// <summary>Sends to the successor while the owner thread receives from the predecessor (a dedicated thread, not
    /// the pool: the ring must progress even when every pool thread is blocked).</summary>
    void SenderLoop()
    {
        foreach (var op in _sends.GetConsumingEnumerable())
        {
            try { op.Run(); op.Done.SetResult(); }
            catch (Exception e) { op.Done.SetException(e); }
        }
    }

    Task Submit(Action run)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (WorldSize == 1) { done.SetResult(); return done.Task; }
        try
        {
            _queue.Add(new Operation(run, done));
        }
        catch (InvalidOperationException)
        {
            throw new ObjectDisposedException(nameof(TcpCommunicator), "the TCP communicator was disposed");
        }
        return done.Task;
    }

    void Wait(Task task)
    {
        if (Thread.CurrentThread == _owner)
            throw new InvalidOperationException("a synchronous collective was called on the communicator's own thread; it would wait for itself");
        task.GetAwaiter().GetResult();
    }

    public void AllReduceSum(Tensor tensor) => Wait(AllReduceSumAsync(tensor));

    /// <summary>The tensor must stay alive and untouched until the task completes.</summary>
    public Task AllReduceSumAsync(Tensor tensor)
    {
        var (data, count, type) = Describe(tensor, "AllReduceSum");
        if (count == 0) return Task.CompletedTask;
        return Submit(() => RingAllReduce((byte*)data, count, type));
    }

    public void Broadcast(Tensor tensor, int root = 0)
    {
        CheckRoot(root);
        var (data, count, type) = Describe(tensor, "Broadcast");
        if (count == 0) return;
        Wait(Submit(() => RingBroadcast((byte*)data, count * ElementSize(type), root)));
    }

    public void Broadcast(byte[] buffer, int root = 0)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        CheckRoot(root);
        if (buffer.Length == 0) return;
        Wait(Submit(() =>
        {
            fixed (byte* p = buffer) RingBroadcast(p, buffer.Length, root);
        }));
    }

    /// <summary>An all-reduce of one int64 per rank: every chunk's owner depends on every rank having arrived.</summary>
    /// <summary>The ring's reduce-scatter half, in place in <paramref name="input"/>; this rank's block is then copied out.</summary>
    public void ReduceScatterSum(Tensor input, Tensor output) => Wait(ReduceScatterSumAsync(input, output));

    /// <summary>The ring's reduce-scatter half in place, then this rank's block copied out, both on the ring's thread.</summary>
    public Task ReduceScatterSumAsync(Tensor input, Tensor output)
    {
        Partition.CheckReduceScatter(this, input, output);
        var (data, count, type) = Describe(input, "ReduceScatterSum");
        if (count == 0) return Task.CompletedTask;
        long block = output.numel();
        return Submit(() =>
        {
            RingReduceScatter((byte*)data, block * ElementSize(type), type);
            using var all = input.view(-1);
            using var mine = all.narrow(0, Rank * block, block);
            using var into = output.view(-1);
            into.copy_(mine);
        });
    }

    /// <summary>This rank's block copied into place, then the ring's all-gather half.</summary>
    public void AllGather(Tensor input, Tensor output)
    {
        Partition.CheckAllGather(this, input, output);
        var (data, count, type) = Describe(output, "AllGather");
        if (count == 0) return;
        long block = input.numel();
        using (var all = output.view(-1))
        using (var mine = all.narrow(0, Rank * block, block))
        using (var from = input.view(-1))
            mine.copy_(from);
        Wait(Submit(() => RingAllGather((byte*)data, block * ElementSize(type))));
    }

    public void Barrier()
    {
        var ones = new long[WorldSize];
        Wait(Submit(() =>
        {
            fixed (long* p = ones) RingAllReduce((byte*)p, ones.Length, ScalarType.Int64);
        }));
    }

    // ---------------------------------------------------------------------------------------------- ring algorithms

    static int ElementSize(ScalarType t) => t == ScalarType.Float32 ? 4 : 8;

    /// <summary>Reduce-scatter then all-gather over chunk c = elements [count·c/N, count·(c+1)/N). After step s of the
    /// reduce-scatter, rank r holds the partial sum of chunk (r−s−1) mod N over ranks r−s−1 … r; after N−1 steps it owns
    /// chunk (r+1) mod N summed over all ranks in ring order starting at rank r+2 (fixed), which the all-gather copies.</summary>
    void RingAllReduce(byte* data, long count, ScalarType type)
    {
        int n = WorldSize, r = Rank, size = ElementSize(type);
        int op = ++_op;
        long Start(int c) => count * c / n * size;
        long Length(int c) => Start(c + 1) - Start(c);
        for (int s = 0; s < n - 1; s++)
        {
            int send = Mod(r - s, n), recv = Mod(r - s - 1, n);
            Exchange(op, data + Start(send), Length(send), data + Start(recv), Length(recv), add: type);
        }
        for (int s = 0; s < n - 1; s++)
        {
            int send = Mod(r + 1 - s, n), recv = Mod(r - s, n);
            Exchange(op, data + Start(send), Length(send), data + Start(recv), Length(recv), add: null);
        }
    }

    /// <summary>The reduce-scatter half of the ring on N equal blocks, shifted one block from <see cref="RingAllReduce"/>'s
    /// so that rank r ends owning block r: step s sends block (r−s−1) mod N and adds block (r−s−2) mod N into place.</summary>
    void RingReduceScatter(byte* data, long blockBytes, ScalarType type)
    {
        int n = WorldSize, r = Rank;
        int op = ++_op;
        for (int s = 0; s < n - 1; s++)
        {
            int send = Mod(r - s - 1, n), recv = Mod(r - s - 2, n);
            Exchange(op, data + send * blockBytes, blockBytes, data + recv * blockBytes, blockBytes, add: type);
        }
    }

    /// <summary>The all-gather half: rank r starts owning block r; step s passes block (r−s) mod N on and receives (r−s−1) mod N.</summary>
    void RingAllGather(byte* data, long blockBytes)
    {
        int n = WorldSize, r = Rank;
        int op = ++_op;
        for (int s = 0; s < n - 1; s++)
        {
            int send = Mod(r - s, n), recv = Mod(r - s - 1, n);
            Exchange(op, data + send * blockBytes, blockBytes, data + recv * blockBytes, blockBytes, add: null);
        }
    }

    /// <summary>Sends one chunk to the successor while receiving one from the predecessor (both at once: with every rank
    /// sending first, chunks larger than the socket buffers would deadlock the ring).</summary>
    void Exchange(int op, byte* send, long sendBytes, byte* recv, long recvBytes, ScalarType? add)
    {
        nint sendPtr = (nint)send;
        var sending = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _sends.Add(new Operation(() => SendFrames(op, (byte*)sendPtr, sendBytes), sending));
        Exception? receiveError = null;
        try { ReceiveFrames(op, recv, recvBytes, add); }
        catch (Exception e) { receiveError = e; }
        try { sending.Task.GetAwaiter().GetResult(); }
        catch (Exception e) when (receiveError is null) { throw Fail(e, _nextRank, "sending to"); }
        catch (Exception) { }
        if (receiveError is not null) throw receiveError is CommunicatorException ? receiveError : Fail(receiveError, _prevRank, "receiving from");
    }

    /// <summary>Pipelined along the ring: root → root+1 → … → root−1, frame by frame.</summary>
    void RingBroadcast(byte* data, long bytes, int root)
    {
        int op = ++_op;
        try
        {
            if (Rank == root) { SendFrames(op, data, bytes); return; }
            bool forward = _nextRank != root;
            for (long at = 0; at < bytes; at += FrameBytes)
            {
                long len = Math.Min(FrameBytes, bytes - at);
                ReceiveFrames(op, data + at, len, add: null);
                if (forward) SendFrames(op, data + at, len);
            }
        }
        catch (Exception e) when (e is not CommunicatorException)
        {
            throw Fail(e, e is SocketException or IOException ? _prevRank : Rank, "broadcast with");
        }
    }

    /// <summary>Frames of at most 1 MiB (so an abort frame can go between them); a zero-length chunk still sends one
    /// frame, which keeps every step a synchronization (the barrier relies on it).</summary>
    void SendFrames(int op, byte* data, long bytes)
    {
        Span<byte> header = stackalloc byte[HeaderBytes];
        long at = 0;
        do
        {
            int len = (int)Math.Min(FrameBytes, bytes - at);
            WriteHeader(header, FrameData, op, len);
            lock (_nextWrite)
            {
                if (_failure is { } f) throw new CommunicatorException(f.Message);
                SendAll(_next!, header);
                SendAll(_next!, new ReadOnlySpan<byte>(data + at, len));
            }
            at += len;
        } while (at < bytes);
    }

    void ReceiveFrames(int op, byte* data, long bytes, ScalarType? add)
    {
        long at = 0;
        do
        {
            ReceiveAll(_prev!, _header);
            int type = BinaryPrimitives.ReadInt32LittleEndian(_header);
            int a = BinaryPrimitives.ReadInt32LittleEndian(_header.AsSpan(4));
            long len = BinaryPrimitives.ReadInt64LittleEndian(_header.AsSpan(8));
            if (type == FrameAbort) throw Failed(a, (int)len);
            long expected = Math.Min(FrameBytes, bytes - at);
            if (type != FrameData || a != op || len != expected)
                throw Fail(new IOException(
                    $"collective mismatch: rank {_prevRank} sent frame (type {type}, collective #{a}, {len} bytes) where collective #{op} expects {expected} bytes: " +
                    "every rank must call the same collectives in the same order with the same shapes"), _prevRank, "out of step with");
            if (add is { } t)
            {
                var chunk = _scratch.AsSpan(0, (int)len);
                ReceiveAll(_prev!, chunk);
                var dst = new Span<byte>(data + at, (int)len);
                switch (t)
                {
                    case ScalarType.Float32: AddInto(MemoryMarshal.Cast<byte, float>(dst), MemoryMarshal.Cast<byte, float>(chunk)); break;
                    case ScalarType.Float64: AddInto(MemoryMarshal.Cast<byte, double>(dst), MemoryMarshal.Cast<byte, double>(chunk)); break;
                    default: AddInto(MemoryMarshal.Cast<byte, long>(dst), MemoryMarshal.Cast<byte, long>(chunk)); break;
                }
            }
            else
            {
                ReceiveAll(_prev!, new Span<byte>(data + at, (int)len));
            }
            at += len;
        } while (at < bytes);
    }

    static void AddInto<T>(Span<T> dst, ReadOnlySpan<T> src) where T : unmanaged, INumber<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && Vector<T>.IsSupported)
        {
            for (; i <= dst.Length - Vector<T>.Count; i += Vector<T>.Count)
                (new Vector<T>(dst[i..]) + new Vector<T>(src[i..])).CopyTo(dst[i..]);
        }
        for (; i < dst.Length; i++) dst[i] += src[i];
    }

    static int Mod(int a, int n) => ((a % n) + n) % n;

    static void WriteHeader(Span<byte> h, int type, int a, long length)
    {
        BinaryPrimitives.WriteInt32LittleEndian(h, type);
        BinaryPrimitives.WriteInt32LittleEndian(h[4..], a);
        BinaryPrimitives.WriteInt64LittleEndian(h[8..], length);
    }

    // ---------------------------------------------------------------------------------------------- failures

    /// <summary>An abort frame arrived: rank <paramref name="origin"/> failed (or was seen disconnecting by a neighbour).</summary>
    CommunicatorException Failed(int origin, int code) => Record(origin, code,
        code == Disconnected ? $"rank {Rank} of {WorldSize}: rank {origin} disconnected; the job cannot continue"
        : $"rank {Rank} of {WorldSize}: rank {origin} aborted the job (exit code {code})");

    /// <summary>A socket error talking to <paramref name="peer"/>: that peer is gone (closed, reset, timed out).</summary>
    CommunicatorException Fail(Exception e, int peer, string doing)
    {
        if (_failure is { } f) return f;
        if (e is CommunicatorException ce) return ce;
        bool timeout = e is SocketException { SocketErrorCode: SocketError.TimedOut } || e.InnerException is SocketException { SocketErrorCode: SocketError.TimedOut };
        string message = timeout
            ? $"rank {Rank} of {WorldSize}: rank {peer} disconnected: no progress {doing} it for {_settings.CollectiveTimeout.TotalSeconds:F0} s ({EnvVars.TcpTimeoutSeconds}); it, or a rank before it on the ring, is hung"
            : e is IOException { Message: var m } && m.StartsWith("collective mismatch", StringComparison.Ordinal)
                ? $"rank {Rank} of {WorldSize}: {m}"
                : $"rank {Rank} of {WorldSize}: rank {peer} disconnected ({doing} it: {e.Message})";
        return Record(peer, Disconnected, message);
    }

    /// <summary>Makes the failure sticky and forwards it along the ring, so ranks that are not talking to the dead peer
    /// learn who failed instead of waiting for their own timeout.</summary>
    CommunicatorException Record(int origin, int code, string message)
    {
        var failure = new CommunicatorException(message);
        lock (_failureLock)
        {
            if (_failure is { } already) return already;
            _failedBy = (origin, code);
            _failure = failure;
        }
        if (origin != _nextRank) SendAbortFrame(_next, _nextWrite, origin, code);
        return failure;
    }

    static void SendAbortFrame(Socket? s, object writeLock, int origin, int code)
    {
        if (s is null) return;
        if (!Monitor.TryEnter(writeLock, AbortSendWait)) return; // blocked mid-frame: the peer sees the socket close instead
        try
        {
            Span<byte> h = stackalloc byte[HeaderBytes];
            WriteHeader(h, FrameAbort, origin, code);
            s.SendTimeout = (int)AbortSendWait.TotalMilliseconds;
            SendAll(s, h);
        }
        catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException) { }
        finally { Monitor.Exit(writeLock); }
    }

    /// <summary>Sends an abort frame naming the failing rank (this one, or the one whose failure reached it) to both
    /// neighbours, closes the sockets and exits. Called from any thread; does not wait for the owner thread.</summary>
    public void Abort(int exitCode)
    {
        var (origin, code) = _failedBy ?? (Rank, exitCode);
        Console.Error.WriteLine($"rank {Rank} of {WorldSize}: aborting the job with exit code {exitCode}" + (origin != Rank ? $" (rank {origin} failed first)" : ""));
        Console.Error.Flush();
        Console.Out.Flush();
        if (Volatile.Read(ref _disposed) == 0)
        {
            SendAbortFrame(_next, _nextWrite, origin, code);
            SendAbortFrame(_prev, _prevWrite, origin, code);
            CloseSockets();
        }
        Environment.Exit(exitCode);
    }

    void CloseSockets()
    {
        foreach (var s in (Socket?[])[_next, _prev])
        {
            if (s is null) continue;
            try { s.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
            s.Dispose();
        }
    }

    /// <summary>Runs the submitted collectives, then closes the ring.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _queue.CompleteAdding();
        if (Thread.CurrentThread != _owner) _owner?.Join();
        _sends.CompleteAdding();
        _sender?.Join();
        CloseSockets();
        _queue.Dispose();
        _sends.Dispose();
    }

    void CheckRoot(int root)
    {
        if (root < 0 || root >= WorldSize)
            throw new ArgumentOutOfRangeException(nameof(root), root, $"root must be a rank in 0..{WorldSize - 1}");
    }

    /// <summary>The data pointer, element count and dtype of a contiguous CPU tensor (as <see cref="MpiCommunicator"/>:
    /// TorchSharp 0.107 has no data_ptr(), so the byte span of a one-element view gives the first element's address).</summary>
    static (nint Data, long Count, ScalarType Type) Describe(Tensor tensor, string call)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.device_type != TorchSharp.DeviceType.CPU)
            throw new CommunicatorException($"{call}: the TCP communicator needs a CPU tensor, got one on {tensor.device}; copy it to the CPU");
        if (!tensor.is_contiguous())
            throw new CommunicatorException($"{call}: the tensor (shape [{string.Join(", ", tensor.shape)}]) is not contiguous; reduce a contiguous buffer (tensor.contiguous()) and copy back");
        var type = tensor.dtype switch
        {
            ScalarType.Float32 or ScalarType.Float64 or ScalarType.Int64 => tensor.dtype,
            ScalarType.BFloat16 => throw new CommunicatorException(
                $"{call}: the TCP communicator does not sum bfloat16; convert the tensor to float32 for the collective and back (as the gradient reducer does)"),
            var other => throw new CommunicatorException($"{call}: dtype {other} is not supported over TCP (float32, float64, int64)"),
        };
        long count = tensor.numel();
        if (count == 0) return (0, 0, type);
        using var flat = tensor.view(-1);
        using var first = flat.narrow(0, 0, 1);
        return ((nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(first.bytes)), count, type);
    }
}
