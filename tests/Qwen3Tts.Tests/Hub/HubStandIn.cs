using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json.Nodes;

namespace Qwen3Tts.Tests.Hub;

/// <summary>A Hugging Face Hub on loopback for the tests: the repo listing (<c>/api/{models|datasets}/{id}/revision/{rev}</c>
/// with blob ids, sizes and LFS sha256s), <c>resolve/{commit}/{path}</c> with ETags, LFS files redirected to a CDN path,
/// and Range requests; and the publishing side: repo creation, preupload (LFS for .safetensors and files of 1 kB and more,
/// with the oid each file has in the repo), the git-lfs batch API with an object storage at /lfs-put/ (single PUT, or in
/// parts with a completion request when <see cref="PartBytes"/> is set) that checks each object's sha256 and size and
/// refuses a token, the verify action, and the ndjson commit API, whose commits the listing and resolve then serve.
/// It checks each request's bearer token and records every request; faults are set per test: a file cut off after some
/// bytes once, a file served corrupted, statuses answered before the real reply (to any request, or per route).</summary>
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

    /// <summary>Statuses answered, in order, before the real reply of one route: create, preupload, batch, put, verify, commit.</summary>
    public ConcurrentDictionary<string, ConcurrentQueue<HttpStatusCode>> FailAt { get; } = new();

    /// <summary>Every request answered 503 while set: the Hub is down.</summary>
    public bool Down { get; set; }

    /// <summary>When set, LFS objects are asked for in parts of this many bytes (the multipart transfer).</summary>
    public long? PartBytes { get; set; }

    /// <summary>The repos created: id and whether private.</summary>
    public ConcurrentQueue<(string Id, bool Private)> Created { get; } = new();

    /// <summary>Each commit made: repo, summary, and its lines (key "file" or "lfsFile", path, and for LFS the oid and size).</summary>
    public ConcurrentQueue<StandInCommit> Commits { get; } = new();

    /// <summary>The LFS storage: content by sha256, each checked against its oid and size as it arrived.</summary>
    public ConcurrentDictionary<string, byte[]> LfsObjects { get; } = new();

    readonly ConcurrentDictionary<(string Oid, int Part), byte[]> parts = new();

    /// <summary>Files of 1 kB and more are LFS files (as safetensors and parquet are on the Hub), and every .safetensors file.</summary>
    const int LfsFrom = 1024;

    public static bool IsLfs(string path, long size) => size >= LfsFrom || path.EndsWith(".safetensors", StringComparison.Ordinal);

    /// <summary>The files of a repo's main branch now (after the commits made to it).</summary>
    public IReadOnlyDictionary<string, byte[]> Files(string kind, string id) => repos[$"{kind}/{id}@main"].Files;

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
        bool storage = path.StartsWith("/cdn/", StringComparison.Ordinal) || path.StartsWith("/lfs-put/", StringComparison.Ordinal);
        if (Down) { Reply(response, HttpStatusCode.ServiceUnavailable); return; }
        if (Token is not null && request.Headers["Authorization"] != $"Bearer {Token}" && !storage)
        {
            Reply(response, HttpStatusCode.Unauthorized);
            return;
        }
        if (storage && request.Headers["Authorization"] is not null) // a presigned address refuses any other credentials, as S3 does
        {
            Reply(response, HttpStatusCode.BadRequest);
            return;
        }
        if (Fail.TryDequeue(out var status))
        {
            Reply(response, status);
            return;
        }
        if (Publishing(context, path)) return;
        var segments = path.Trim('/').Split('/');
        if (segments[0] == "api" && segments.Length >= 6 && segments[4] == "revision")
        {
            string key = $"{segments[1]}/{segments[2]}/{segments[3]}@{Uri.UnescapeDataString(string.Join('/', segments[5..]))}";
            if (!repos.TryGetValue(key, out var repo)) { Reply(response, HttpStatusCode.NotFound); return; }
            var siblings = new JsonArray(repo.Files.OrderBy(f => f.Key, StringComparer.Ordinal).Select(f => (JsonNode)new JsonObject
            {
                ["rfilename"] = f.Key, ["blobId"] = GitBlobId(f.Value), ["size"] = f.Value.Length,
                ["lfs"] = IsLfs(f.Key, f.Value.Length) ? new JsonObject { ["sha256"] = Convert.ToHexStringLower(SHA256.HashData(f.Value)), ["size"] = f.Value.Length, ["pointerSize"] = 134 } : null,
            }).ToArray());
            Send(response, System.Text.Encoding.UTF8.GetBytes(new JsonObject { ["sha"] = repo.Commit, ["siblings"] = siblings }.ToJsonString()), null, "application/json");
            return;
        }
        if (segments[0] == "cdn")
        {
            var data = repos.Values.SelectMany(r => r.Files).Concat(LfsObjects.Select(o => KeyValuePair.Create(o.Key, o.Value)))
                .First(f => Convert.ToHexStringLower(SHA256.HashData(f.Value)) == segments[1]);
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
        if (IsLfs(file, bytes.Length))
        {
            response.StatusCode = (int)HttpStatusCode.Found;
            response.RedirectLocation = $"{Endpoint}/cdn/{Convert.ToHexStringLower(SHA256.HashData(bytes))}";
            response.Close();
            return;
        }
        response.Headers["ETag"] = $"\"{GitBlobId(bytes)}\"";
        Send(response, Serve(file, bytes), request.Headers["Range"], "application/octet-stream", file);
    }

    /// <summary>The publishing routes; false for any other request.</summary>
    bool Publishing(HttpListenerContext context, string path)
    {
        var request = context.Request;
        var response = context.Response;
        var segments = path.Trim('/').Split('/');
        bool Failed(string route)
        {
            if (!FailAt.TryGetValue(route, out var queue) || !queue.TryDequeue(out var status)) return false;
            Reply(response, status);
            return true;
        }
        JsonNode Body() => JsonNode.Parse(ReadBody(request))!;
        void Json(JsonNode node, string type = "application/json") => Send(response, System.Text.Encoding.UTF8.GetBytes(node.ToJsonString()), null, type);
        string? Id(int at) => segments.Length > at + 1 ? $"{segments[at]}/{segments[at + 1]}" : null;

        if (request.HttpMethod == "POST" && path == "/api/repos/create")
        {
            if (Failed("create")) return true;
            var body = Body();
            string id = $"{body["organization"]}/{body["name"]}", key = $"{body["type"]}s/{id}@main";
            if (repos.ContainsKey(key)) { Reply(response, HttpStatusCode.Conflict); return true; }
            repos[key] = (NewCommit(), new Dictionary<string, byte[]> { [".gitattributes"] = "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"u8.ToArray() });
            Created.Enqueue((id, (string?)body["visibility"] == "private"));
            Json(new JsonObject { ["url"] = $"{Endpoint}/{id}" });
            return true;
        }
        if (request.HttpMethod == "POST" && segments is ["api", var kind, _, _, "preupload", ..])
        {
            if (Failed("preupload")) return true;
            if (!repos.TryGetValue($"{kind}/{Id(2)}@main", out var repo)) { Reply(response, HttpStatusCode.NotFound); return true; }
            var files = Body()["files"]!.AsArray().Select(f => (JsonNode)new JsonObject
            {
                ["path"] = (string)f!["path"]!,
                ["uploadMode"] = IsLfs((string)f["path"]!, (long)f["size"]!) ? "lfs" : "regular",
                ["shouldIgnore"] = false,
                ["oid"] = repo.Files.TryGetValue((string)f["path"]!, out var now)
                    ? IsLfs((string)f["path"]!, now.Length) ? Convert.ToHexStringLower(SHA256.HashData(now)) : GitBlobId(now) : null,
            }).ToArray();
            Json(new JsonObject { ["files"] = new JsonArray(files) });
            return true;
        }
        int git = Array.FindIndex(segments, x => x.EndsWith(".git", StringComparison.Ordinal));
        if (request.HttpMethod == "POST" && git >= 1 && segments[(git + 1)..] is ["info", "lfs", "objects", "batch"])
        {
            if (Failed("batch")) return true;
            if (request.ContentType?.StartsWith("application/vnd.git-lfs+json", StringComparison.Ordinal) != true) { Reply(response, HttpStatusCode.UnsupportedMediaType); return true; }
            var objects = Body()["objects"]!.AsArray().Select(o =>
            {
                string oid = (string)o!["oid"]!;
                long size = (long)o["size"]!;
                var reply = new JsonObject { ["oid"] = oid, ["size"] = size };
                if (LfsObjects.ContainsKey(oid)) return (JsonNode)reply; // stored already: no actions
                var upload = new JsonObject { ["href"] = $"{Endpoint}/lfs-put/{oid}" };
                if (PartBytes is long chunk)
                {
                    var header = new JsonObject { ["chunk_size"] = chunk.ToString(System.Globalization.CultureInfo.InvariantCulture) };
                    for (int i = 1; i <= (size + chunk - 1) / chunk; i++) header[i.ToString(System.Globalization.CultureInfo.InvariantCulture)] = $"{Endpoint}/lfs-put/{oid}/{i}";
                    upload = new JsonObject { ["href"] = $"{Endpoint}/lfs-complete/{oid}", ["header"] = header };
                }
                reply["actions"] = new JsonObject { ["upload"] = upload, ["verify"] = new JsonObject { ["href"] = $"{Endpoint}/lfs-verify/{oid}" } };
                return reply;
            }).ToArray();
            Json(new JsonObject { ["transfer"] = PartBytes is null ? "basic" : "multipart", ["objects"] = new JsonArray(objects) }, "application/vnd.git-lfs+json");
            return true;
        }
        if (request.HttpMethod == "PUT" && segments is ["lfs-put", var putOid, .. var part])
        {
            if (Failed("put")) return true;
            byte[] data = ReadBytes(request);
            if (part is [var number]) // one part: kept until the completion request
            {
                parts[(putOid, int.Parse(number, System.Globalization.CultureInfo.InvariantCulture))] = data;
                response.Headers["ETag"] = $"\"{Convert.ToHexStringLower(MD5.HashData(data))}\"";
                Reply(response, HttpStatusCode.OK);
                return true;
            }
            Store(response, putOid, data);
            return true;
        }
        if (request.HttpMethod == "POST" && segments is ["lfs-complete", var completeOid])
        {
            var body = Body();
            var pieces = body["parts"]!.AsArray().Select(p => parts[(completeOid, (int)p!["partNumber"]!)]).ToList();
            if (body["parts"]!.AsArray().Zip(pieces).Any(x => (string)x.First!["etag"]! != $"\"{Convert.ToHexStringLower(MD5.HashData(x.Second))}\""))
            {
                Reply(response, HttpStatusCode.BadRequest);
                return true;
            }
            Store(response, completeOid, [.. pieces.SelectMany(p => p)]);
            return true;
        }
        if (request.HttpMethod == "POST" && segments is ["lfs-verify", var verifyOid])
        {
            if (Failed("verify")) return true;
            var body = Body();
            Reply(response, LfsObjects.TryGetValue(verifyOid, out var stored) && (string)body["oid"]! == verifyOid && (long)body["size"]! == stored.Length
                ? HttpStatusCode.OK : HttpStatusCode.NotFound);
            return true;
        }
        if (request.HttpMethod == "POST" && segments is ["api", var commitKind, _, _, "commit", ..])
        {
            if (Failed("commit")) return true;
            string id = Id(2)!, key = $"{commitKind}/{id}@main";
            if (!repos.TryGetValue(key, out var repo)) { Reply(response, HttpStatusCode.NotFound); return true; }
            if (request.ContentType?.StartsWith("application/x-ndjson", StringComparison.Ordinal) != true) { Reply(response, HttpStatusCode.UnsupportedMediaType); return true; }
            var lines = ReadBody(request).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).ToList();
            if (lines.Count < 2 || (string)lines[0]["key"]! != "header") { Reply(response, HttpStatusCode.BadRequest); return true; }
            var files = new Dictionary<string, byte[]>(repo.Files);
            var entries = new List<(string Key, string Path, string? Oid, long? Size)>();
            foreach (var line in lines.Skip(1))
            {
                var value = line["value"]!;
                string filePath = (string)value["path"]!;
                switch ((string)line["key"]!)
                {
                    case "file":
                        files[filePath] = Convert.FromBase64String((string)value["content"]!);
                        entries.Add(("file", filePath, null, null));
                        break;
                    case "lfsFile":
                        string oid = (string)value["oid"]!;
                        // The pointer must name content the storage holds, with its size.
                        if ((string)value["algo"]! != "sha256" || !LfsObjects.TryGetValue(oid, out var content) || (long)value["size"]! != content.Length)
                        {
                            Reply(response, HttpStatusCode.UnprocessableEntity);
                            return true;
                        }
                        files[filePath] = content;
                        entries.Add(("lfsFile", filePath, oid, content.Length));
                        break;
                    default:
                        Reply(response, HttpStatusCode.BadRequest);
                        return true;
                }
            }
            string commit = NewCommit();
            repos[key] = (commit, files);
            Commits.Enqueue(new StandInCommit(id, (string)lines[0]["value"]!["summary"]!, entries, commit));
            Json(new JsonObject { ["commitUrl"] = $"{Endpoint}/{id}/commit/{commit}", ["commitOid"] = commit });
            return true;
        }
        return false;
    }

    /// <summary>An object arrives in the storage only when its content hashes to its oid.</summary>
    void Store(HttpListenerResponse response, string oid, byte[] data)
    {
        if (Convert.ToHexStringLower(SHA256.HashData(data)) != oid) { Reply(response, HttpStatusCode.BadRequest); return; }
        LfsObjects[oid] = data;
        Reply(response, HttpStatusCode.OK);
    }

    static string NewCommit() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));

    static byte[] ReadBytes(HttpListenerRequest request)
    {
        using var memory = new MemoryStream();
        request.InputStream.CopyTo(memory);
        return memory.ToArray();
    }

    static string ReadBody(HttpListenerRequest request) => System.Text.Encoding.UTF8.GetString(ReadBytes(request));

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

/// <summary>A commit the stand-in received.</summary>
sealed record StandInCommit(string Repo, string Summary, IReadOnlyList<(string Key, string Path, string? Oid, long? Size)> Files, string Commit);
