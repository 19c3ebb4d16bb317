using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Qwen3Tts.Tests.Observability;

/// <summary>A WandB server on 127.0.0.1 (HttpListener) implementing UpsertBucket and file_stream the way the real one
/// is used, and checking every request: method, path, Basic auth, the GraphQL variables' shape (config values wrapped
/// as {"value": v}), file_stream offsets contiguous per file, history steps increasing, nothing after completion.
/// Each broken expectation is answered 400 and recorded in <see cref="Violations"/>.</summary>
sealed class FakeWandbServer : IDisposable
{
    public const string Entity = "test-entity";

    public enum Health { Up, Unavailable, Refusing }

    public sealed class Run
    {
        public required string Project { get; init; }
        public List<string> History { get; } = [];
        public List<long> HistoryOffsets { get; } = [];
        public List<string> Output { get; } = [];
        public string? Summary { get; set; }
        public int? ExitCode { get; set; }
        public int Completions { get; set; }
        public List<JsonObject> Upserts { get; } = [];
        /// <summary>Run files stored through the signed upload URLs, by name.</summary>
        public Dictionary<string, byte[]> Files { get; } = [];
    }

    readonly string expectedAuth;
    readonly Lock gate = new();
    readonly CancellationTokenSource stop = new();
    HttpListener listener;
    Health health = Health.Up;

    public string BaseUrl { get; }
    public int Port { get; }
    public List<string> Violations { get; } = [];
    public Dictionary<string, Run> Runs { get; } = [];
    public int Requests { get; private set; }
    public int Rejected { get; private set; }

    public FakeWandbServer(string apiKey)
    {
        expectedAuth = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("api:" + apiKey));
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        Port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        BaseUrl = $"http://127.0.0.1:{Port}";
        listener = Listen();
    }

    HttpListener Listen()
    {
        var l = new HttpListener();
        l.Prefixes.Add(BaseUrl + "/");
        l.Start();
        _ = Task.Run(() => Serve(l));
        return l;
    }

    /// <summary>Up: answers; Unavailable: 503 to everything; Refusing: nothing listens on the port.</summary>
    public Health State
    {
        get { lock (gate) return health; }
        set
        {
            lock (gate)
            {
                if (value == health) return;
                if (value == Health.Refusing) listener.Close();
                if (health == Health.Refusing) listener = Listen();
                health = value;
            }
        }
    }

    public int HistoryCount { get { lock (gate) return Runs.Values.SingleOrDefault()?.History.Count ?? 0; } }

    public Run Single()
    {
        lock (gate)
        {
            Assert.Single(Runs);
            return Runs.Values.Single();
        }
    }

    public void AssertNoViolations()
    {
        lock (gate) Assert.True(Violations.Count == 0, "the server saw bad requests:\n" + string.Join("\n", Violations));
    }

    async Task Serve(HttpListener l)
    {
        while (!stop.IsCancellationRequested && l.IsListening)
        {
            HttpListenerContext context;
            try { context = await l.GetContextAsync(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
            try { Handle(context); }
            catch (Exception e) { lock (gate) Violations.Add("server error: " + e); Reply(context, 500, "{}"); }
        }
    }

    /// <summary>The header the signed upload URLs require (the real ones carry their own signature).</summary>
    public const string UploadHeader = "X-Upload-Signature", UploadSignature = "signed-ok";

    void Handle(HttpListenerContext context)
    {
        var request = context.Request;
        string body;
        byte[] raw;
        using (var buffer = new MemoryStream()) { request.InputStream.CopyTo(buffer); raw = buffer.ToArray(); }
        body = Encoding.UTF8.GetString(raw);
        lock (gate)
        {
            Requests++;
            if (health == Health.Unavailable)
            {
                Rejected++;
                Reply(context, 503, "{\"error\":\"down for maintenance\"}");
                return;
            }
            string path = request.Url!.AbsolutePath;
            if (path.StartsWith("/upload/", StringComparison.Ordinal)) { Upload(context, raw); return; }
            if (request.HttpMethod != "POST") { Fail(context, $"{request.HttpMethod} {path}: expected POST"); return; }
            if (request.Headers["Authorization"] != expectedAuth)
            {
                Reply(context, 401, "{\"errors\":[{\"message\":\"invalid api key\"}]}");
                return;
            }
            if (!(request.ContentType ?? "").StartsWith("application/json", StringComparison.Ordinal))
            {
                Fail(context, $"{path}: content type {request.ContentType}, expected application/json");
                return;
            }
            if (request.ContentLength64 <= 0) { Fail(context, $"{path}: no Content-Length (chunked body)"); return; }
            var segments = path.Trim('/').Split('/');
            if (path == "/graphql" && body.Contains("mutation CreateRunFiles(", StringComparison.Ordinal)) CreateRunFiles(context, body);
            else if (path == "/graphql") Upsert(context, body);
            else if (segments is ["files", var entity, var project, var run, "file_stream"]) FileStream(context, entity, project, run, body);
            else Fail(context, $"unexpected path {path}");
        }
    }

    /// <summary>Signed URLs on this server (/upload/RUN/NAME) for every file asked for, as the real mutation answers.</summary>
    void CreateRunFiles(HttpListenerContext context, string body)
    {
        var variables = JsonNode.Parse(body)!["variables"]!.AsObject();
        string runId = variables["run"]!.GetValue<string>();
        if (variables["entity"]?.GetValue<string>() != Entity) { Fail(context, "CreateRunFiles: entity"); return; }
        if (!Runs.TryGetValue(runId, out var run) || run.Project != variables["project"]?.GetValue<string>()) { Fail(context, $"CreateRunFiles for unknown run {runId}"); return; }
        var files = new JsonArray();
        foreach (var name in variables["files"]!.AsArray().Select(f => f!.GetValue<string>()))
            files.Add(new JsonObject { ["name"] = name, ["uploadUrl"] = $"{BaseUrl}/upload/{runId}/{Uri.EscapeDataString(name)}" });
        Reply(context, 200, new JsonObject
        {
            ["data"] = new JsonObject
            {
                ["createRunFiles"] = new JsonObject
                {
                    ["runID"] = "bucket-" + runId, ["uploadHeaders"] = new JsonArray($"{UploadHeader}:{UploadSignature}"), ["files"] = files,
                },
            },
        }.ToJsonString());
    }

    /// <summary>A PUT to a signed URL: it must carry the upload header and never the API key.</summary>
    void Upload(HttpListenerContext context, byte[] body)
    {
        var segments = context.Request.Url!.AbsolutePath.Split('/', 4); // "", "upload", run, name
        if (context.Request.HttpMethod != "PUT") { Fail(context, "upload: expected PUT"); return; }
        if (context.Request.Headers["Authorization"] is not null) { Fail(context, "upload: the API key was sent to the storage URL"); return; }
        if (context.Request.Headers[UploadHeader] != UploadSignature) { Fail(context, "upload: the uploadHeaders were not sent"); return; }
        if (!Runs.TryGetValue(segments[2], out var run)) { Fail(context, $"upload for unknown run {segments[2]}"); return; }
        run.Files[Uri.UnescapeDataString(segments[3])] = body;
        Reply(context, 200, "");
    }

    void Upsert(HttpListenerContext context, string body)
    {
        var root = JsonNode.Parse(body)!.AsObject();
        if (root["query"]?.GetValue<string>() is not { } query || !query.Contains("upsertBucket(", StringComparison.Ordinal)
            || !query.Contains("mutation UpsertBucket(", StringComparison.Ordinal))
        { Fail(context, "graphql: not the UpsertBucket mutation"); return; }
        if (root["variables"] is not JsonObject variables) { Fail(context, "graphql: no variables object"); return; }
        if (variables["name"]?.GetValue<string>() is not { Length: > 0 } name) { Fail(context, "UpsertBucket: no run name"); return; }
        if (variables["project"]?.GetValue<string>() is not { Length: > 0 } project) { Fail(context, "UpsertBucket: no project"); return; }
        if (variables["entity"] is JsonValue e && e.GetValue<string>() != Entity) { Fail(context, $"UpsertBucket: entity {e}"); return; }
        foreach (var stringVariable in new[] { "id", "groupName", "displayName", "notes", "jobType", "state", "host", "program" })
            if (variables[stringVariable] is { } v && v.GetValueKind() != JsonValueKind.String) { Fail(context, $"UpsertBucket: {stringVariable} is not a string"); return; }
        if (variables["config"] is { } configNode)
        {
            // JSONString: a string holding a JSON object whose values are {"value": v}.
            if (configNode.GetValueKind() != JsonValueKind.String) { Fail(context, "UpsertBucket: config is not a JSONString"); return; }
            var config = JsonNode.Parse(configNode.GetValue<string>()) as JsonObject;
            if (config is null) { Fail(context, "UpsertBucket: config is not an object"); return; }
            foreach (var (key, value) in config)
                if (value is not JsonObject wrapped || wrapped.Count != 1 || !wrapped.ContainsKey("value"))
                { Fail(context, $"UpsertBucket: config key '{key}' is not wrapped as {{\"value\": v}}"); return; }
        }
        if (!Runs.TryGetValue(name, out var run)) Runs[name] = run = new Run { Project = project };
        run.Upserts.Add(variables.DeepClone().AsObject());
        run.Completions = 0; // a resumed run runs again
        var response = new JsonObject
        {
            ["data"] = new JsonObject
            {
                ["upsertBucket"] = new JsonObject
                {
                    ["bucket"] = new JsonObject
                    {
                        ["id"] = "bucket-" + name,
                        ["name"] = name,
                        ["displayName"] = variables["displayName"]?.DeepClone(),
                        ["project"] = new JsonObject
                        {
                            ["id"] = "project-" + project, ["name"] = project,
                            ["entity"] = new JsonObject { ["id"] = "entity-1", ["name"] = Entity },
                        },
                    },
                    ["inserted"] = run.Upserts.Count == 1,
                },
            },
        };
        Reply(context, 200, response.ToJsonString());
    }

    void FileStream(HttpListenerContext context, string entity, string project, string runId, string body)
    {
        if (entity != Entity) { Fail(context, $"file_stream: entity {entity}"); return; }
        if (!Runs.TryGetValue(runId, out var run)) { Fail(context, $"file_stream for run {runId} before UpsertBucket"); return; }
        if (run.Project != project) { Fail(context, $"file_stream: project {project}, run is in {run.Project}"); return; }
        var root = JsonNode.Parse(body)!.AsObject();
        if (run.Completions > 0) { Fail(context, $"file_stream for run {runId} after it completed"); return; }
        if (root["files"] is JsonObject files)
        {
            // Check everything first, then apply, so a bad request changes nothing.
            foreach (var (name, chunk) in files)
            {
                if (chunk?["offset"] is null || chunk["content"] is not JsonArray) { Fail(context, $"{name}: chunk without offset/content"); return; }
                long offset = chunk["offset"]!.GetValue<long>();
                long expected = name switch
                {
                    "wandb-history.jsonl" => run.History.Count,
                    "output.log" => run.Output.Count,
                    "wandb-summary.json" => 0,
                    _ => -1,
                };
                if (expected < 0) { Fail(context, $"unexpected file {name}"); return; }
                if (offset != expected) { Fail(context, $"{name}: offset {offset}, expected {expected}"); return; }
            }
            if (files["wandb-history.jsonl"] is { } history)
            {
                double lastStep = run.History.Count == 0 ? double.NegativeInfinity : JsonNode.Parse(run.History[^1])!["_step"]!.GetValue<double>();
                foreach (var line in history["content"]!.AsArray())
                {
                    var row = JsonNode.Parse(line!.GetValue<string>())!.AsObject();
                    foreach (var field in new[] { "_step", "_runtime", "_timestamp" })
                        if (row[field] is null) { Fail(context, $"history row without {field}: {row}"); return; }
                    double step = row["_step"]!.GetValue<double>();
                    if (step <= lastStep) { Fail(context, $"history step {step} after {lastStep}"); return; }
                    lastStep = step;
                }
                run.HistoryOffsets.Add(history["offset"]!.GetValue<long>());
                run.History.AddRange(history["content"]!.AsArray().Select(l => l!.GetValue<string>()));
            }
            if (files["wandb-summary.json"] is { } summary)
            {
                var content = summary["content"]!.AsArray();
                if (content.Count != 1) { Fail(context, "summary content is not one line"); return; }
                run.Summary = content[0]!.GetValue<string>();
                JsonNode.Parse(run.Summary);
            }
            if (files["output.log"] is { } output)
                run.Output.AddRange(output["content"]!.AsArray().Select(l => l!.GetValue<string>()));
        }
        if (root["complete"] is { } complete)
        {
            if (!complete.GetValue<bool>() || root["exitcode"] is null) { Fail(context, "complete without exitcode"); return; }
            run.Completions++;
            run.ExitCode = root["exitcode"]!.GetValue<int>();
        }
        Reply(context, 200, "{\"exitcode\":null,\"limits\":{}}");
    }

    void Fail(HttpListenerContext context, string violation)
    {
        Violations.Add(violation);
        Reply(context, 400, "{}");
    }

    static void Reply(HttpListenerContext context, int status, string json)
    {
        try
        {
            var bytes = Encoding.UTF8.GetBytes(json);
            context.Response.StatusCode = status;
            context.Response.ContentType = "application/json";
            context.Response.ContentLength64 = bytes.Length;
            context.Response.OutputStream.Write(bytes);
            context.Response.Close();
        }
        catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or IOException) { }
    }

    public void Dispose()
    {
        stop.Cancel();
        lock (gate) if (health != Health.Refusing) listener.Close();
    }
}
