using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace Qwen3Tts.Tests.Hub;

/// <summary>A Hugging Face Hub on loopback for the tests: the repo listing (<c>/api/{models|datasets}/{id}/revision/{rev}</c>
/// with blob ids, sizes and LFS sha256s), <c>resolve/{commit}/{path}</c> with ETags, LFS files redirected to a CDN path,
/// and Range requests. It checks each request's bearer token and records every request; faults are set per test: a
/// file cut off after some bytes once, a file served corrupted, statuses answered before the real reply.</summary>
sealed class HubStandIn : IDisposable
{
    readonly HttpListener listener = new();
    readonly Dictionary<string, (string Commit, Dictionary<string, byte[]> Files)> repos = new();
    readonly Task loop;

    public HubStandIn(string? token)
    {
        Token = token;
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        Endpoint = $"http://127.0.0.1:{port}";
        listener.Prefixes.Add(Endpoint + "/");
        listener.Start();
        loop = Task.Run(Serve);
    }

    public string Endpoint { get; }
    public string? Token { get; }

    /// <summary>Every request: method, path and query, Range header, Authorization header.</summary>
    public ConcurrentQueue<(string Method, string Path, string? Range, string? Authorization)> Requests { get; } = new();

    /// <summary>Files (by path in the repo) whose first download stops after this many bytes.</summary>
    public ConcurrentDictionary<string, long> CutOnce { get; } = new();

    /// <summary>Files served with their first byte flipped (the listing keeps the true sha256).</summary>
    public ConcurrentDictionary<string, bool> Corrupt { get; } = new();

    /// <summary>Statuses answered, in order, before any real reply.</summary>
    public ConcurrentQueue<HttpStatusCode> Fail { get; } = new();

    /// <summary>Files of 1 kB and more are LFS files (as safetensors and parquet are on the Hub).</summary>
    const int LfsFrom = 1024;

    public void Add(string kind, string id, string commit, string folder, string revision = "main")
    {
        var files = Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .ToDictionary(f => Path.GetRelativePath(folder, f).Replace(Path.DirectorySeparatorChar, '/'), File.ReadAllBytes);
        repos[$"{kind}/{id}@{revision}"] = (commit, files);
    }

    static string GitBlobId(byte[] data) =>
        Convert.ToHexStringLower(SHA1.HashData([.. System.Text.Encoding.ASCII.GetBytes($"blob {data.Length}\0"), .. data]));

    async Task Serve()
    {
        while (listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await listener.GetContextAsync(); }
            catch (Exception) { return; }
            try { Handle(context); }
            catch (Exception) { try { context.Response.Abort(); } catch (Exception) { } }
        }
    }

    void Handle(HttpListenerContext context)
    {
        var request = context.Request;
        var response = context.Response;
        string path = request.Url!.AbsolutePath;
        Requests.Enqueue((request.HttpMethod, request.Url.PathAndQuery, request.Headers["Range"], request.Headers["Authorization"]));
        if (Token is not null && request.Headers["Authorization"] != $"Bearer {Token}" && !path.StartsWith("/cdn/", StringComparison.Ordinal))
        {
            Reply(response, HttpStatusCode.Unauthorized);
            return;
        }
        if (Fail.TryDequeue(out var status))
        {
            Reply(response, status);
            return;
        }
        var segments = path.Trim('/').Split('/');
        if (segments[0] == "api" && segments.Length >= 6 && segments[4] == "revision")
        {
            string key = $"{segments[1]}/{segments[2]}/{segments[3]}@{Uri.UnescapeDataString(string.Join('/', segments[5..]))}";
            if (!repos.TryGetValue(key, out var repo)) { Reply(response, HttpStatusCode.NotFound); return; }
            var siblings = new JsonArray(repo.Files.OrderBy(f => f.Key, StringComparer.Ordinal).Select(f => (JsonNode)new JsonObject
            {
                ["rfilename"] = f.Key, ["blobId"] = GitBlobId(f.Value), ["size"] = f.Value.Length,
                ["lfs"] = f.Value.Length >= LfsFrom ? new JsonObject { ["sha256"] = Convert.ToHexStringLower(SHA256.HashData(f.Value)), ["size"] = f.Value.Length, ["pointerSize"] = 134 } : null,
            }).ToArray());
            Send(response, System.Text.Encoding.UTF8.GetBytes(new JsonObject { ["sha"] = repo.Commit, ["siblings"] = siblings }.ToJsonString()), null, "application/json");
            return;
        }
        if (segments[0] == "cdn")
        {
            var data = repos.Values.SelectMany(r => r.Files).First(f => Convert.ToHexStringLower(SHA256.HashData(f.Value)) == segments[1]);
            Send(response, Serve(data.Key, data.Value), request.Headers["Range"], "application/octet-stream", data.Key);
            return;
        }
        // {kind?}/{owner}/{name}/resolve/{commit}/{path...}
        int resolve = Array.IndexOf(segments, "resolve");
        if (resolve < 2) { Reply(response, HttpStatusCode.NotFound); return; }
        string kind = resolve == 3 && segments[0] == "datasets" ? "datasets" : "models";
        string id = $"{segments[resolve - 2]}/{segments[resolve - 1]}";
        string file = string.Join('/', segments[(resolve + 2)..]);
        var found = repos.Where(r => r.Key.StartsWith($"{kind}/{id}@", StringComparison.Ordinal) && r.Value.Commit == segments[resolve + 1]).Select(r => r.Value).FirstOrDefault();
        if (found.Files is null || !found.Files.TryGetValue(file, out var bytes))
        {
            Reply(response, HttpStatusCode.NotFound);
            return;
        }
        if (bytes.Length >= LfsFrom)
        {
            response.StatusCode = (int)HttpStatusCode.Found;
            response.RedirectLocation = $"{Endpoint}/cdn/{Convert.ToHexStringLower(SHA256.HashData(bytes))}";
            response.Close();
            return;
        }
        response.Headers["ETag"] = $"\"{GitBlobId(bytes)}\"";
        Send(response, Serve(file, bytes), request.Headers["Range"], "application/octet-stream", file);
    }

    byte[] Serve(string file, byte[] bytes)
    {
        if (!Corrupt.ContainsKey(file)) return bytes;
        var copy = (byte[])bytes.Clone();
        copy[0] ^= 0xFF;
        return copy;
    }

    void Send(HttpListenerResponse response, byte[] data, string? range, string type, string? file = null)
    {
        long from = 0;
        if (range is { } r && r.StartsWith("bytes=", StringComparison.Ordinal))
        {
            from = long.Parse(r["bytes=".Length..].TrimEnd('-'), System.Globalization.CultureInfo.InvariantCulture);
            if (from >= data.Length) { Reply(response, HttpStatusCode.RequestedRangeNotSatisfiable); return; }
            response.StatusCode = (int)HttpStatusCode.PartialContent;
            response.Headers["Content-Range"] = $"bytes {from}-{data.Length - 1}/{data.Length}";
        }
        response.ContentType = type;
        response.ContentLength64 = data.Length - from;
        if (file is not null && CutOnce.TryRemove(file, out long cut))
        {
            response.OutputStream.Write(data, (int)from, (int)Math.Min(cut, data.Length - from));
            response.OutputStream.Flush();
            response.Abort(); // the connection drops mid-body
            return;
        }
        response.OutputStream.Write(data, (int)from, (int)(data.Length - from));
        response.Close();
    }

    static void Reply(HttpListenerResponse response, HttpStatusCode status)
    {
        response.StatusCode = (int)status;
        response.ContentLength64 = 0;
        response.Close();
    }

    public void Dispose()
    {
        listener.Stop();
        listener.Close();
        try { loop.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
    }
}
