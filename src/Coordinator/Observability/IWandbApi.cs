using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Serialization;
using Refit;

namespace Qwen3Tts.Coordinator.Observability;

/// <summary>The two WandB server endpoints a run needs, as the official client uses them: the GraphQL
/// <c>UpsertBucket</c> mutation (create or resume a run) and the run's <c>file_stream</c> (history rows,
/// summary, console output, completion). Auth is HTTP Basic <c>api:&lt;key&gt;</c>, set on the HttpClient
/// by <see cref="WandbApi.Create"/>.</summary>
public interface IWandbApi
{
    [Post("/graphql")]
    Task<GraphQlResponse<UpsertBucketData>> UpsertBucketAsync([Body] GraphQlRequest<UpsertBucketVariables> request, CancellationToken cancellationToken = default);

    /// <summary>Each file's <c>offset</c> is the line number its <c>content</c> starts at; the server writes the lines
    /// there, so resending the same offset after a lost response does not duplicate rows.</summary>
    [Post("/files/{entity}/{project}/{run}/file_stream")]
    Task FileStreamAsync(string entity, string project, string run, [Body] FileStreamRequest request, CancellationToken cancellationToken = default);

    /// <summary>Signed upload URLs for run files (the official client's <c>CreateRunFiles</c>): each file is then PUT to its
    /// URL with <c>uploadHeaders</c> ("Name:Value" strings), without the API key.</summary>
    [Post("/graphql")]
    Task<GraphQlResponse<CreateRunFilesData>> CreateRunFilesAsync([Body] GraphQlRequest<CreateRunFilesVariables> request, CancellationToken cancellationToken = default);
}

public sealed record CreateRunFilesVariables(
    [property: JsonPropertyName("entity")] string Entity,
    [property: JsonPropertyName("project")] string Project,
    [property: JsonPropertyName("run")] string Run,
    [property: JsonPropertyName("files")] IReadOnlyList<string> Files);

public sealed record CreateRunFilesData([property: JsonPropertyName("createRunFiles")] CreateRunFilesPayload? CreateRunFiles);

public sealed record CreateRunFilesPayload(
    [property: JsonPropertyName("runID")] string? RunId,
    [property: JsonPropertyName("uploadHeaders")] IReadOnlyList<string>? UploadHeaders,
    [property: JsonPropertyName("files")] IReadOnlyList<RunFileUpload>? Files);

public sealed record RunFileUpload(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("uploadUrl")] string? UploadUrl);

public sealed record GraphQlRequest<TVariables>(
    [property: JsonPropertyName("query")] string Query,
    [property: JsonPropertyName("variables")] TVariables Variables);

public sealed record GraphQlResponse<TData>(
    [property: JsonPropertyName("data")] TData? Data,
    [property: JsonPropertyName("errors")] IReadOnlyList<GraphQlError>? Errors);

public sealed record GraphQlError([property: JsonPropertyName("message")] string? Message);

/// <summary>The variables of <see cref="WandbApi.UpsertBucketMutation"/>. <see cref="Name"/> is the run id;
/// <see cref="Id"/> the server's storage id of an existing run (null to create or to resume by name).
/// <see cref="Config"/> and <see cref="SummaryMetrics"/> are JSON text (GraphQL JSONString); config keys
/// are wrapped as <c>{"key": {"value": v}}</c> like the official client does.</summary>
public sealed record UpsertBucketVariables
{
    [JsonPropertyName("id")] public string? Id { get; init; }
    [JsonPropertyName("name")] public string? Name { get; init; }
    [JsonPropertyName("project")] public string? Project { get; init; }
    [JsonPropertyName("entity")] public string? Entity { get; init; }
    [JsonPropertyName("groupName")] public string? GroupName { get; init; }
    [JsonPropertyName("description")] public string? Description { get; init; }
    [JsonPropertyName("displayName")] public string? DisplayName { get; init; }
    [JsonPropertyName("notes")] public string? Notes { get; init; }
    [JsonPropertyName("commit")] public string? Commit { get; init; }
    [JsonPropertyName("config")] public string? Config { get; init; }
    [JsonPropertyName("host")] public string? Host { get; init; }
    [JsonPropertyName("debug")] public bool? Debug { get; init; }
    [JsonPropertyName("program")] public string? Program { get; init; }
    [JsonPropertyName("repo")] public string? Repo { get; init; }
    [JsonPropertyName("jobType")] public string? JobType { get; init; }
    [JsonPropertyName("state")] public string? State { get; init; }
    [JsonPropertyName("sweep")] public string? Sweep { get; init; }
    [JsonPropertyName("tags")] public IReadOnlyList<string>? Tags { get; init; }
    [JsonPropertyName("summaryMetrics")] public string? SummaryMetrics { get; init; }
}

public sealed record UpsertBucketData([property: JsonPropertyName("upsertBucket")] UpsertBucketPayload? UpsertBucket);

public sealed record UpsertBucketPayload(
    [property: JsonPropertyName("bucket")] WandbBucket? Bucket,
    [property: JsonPropertyName("inserted")] bool? Inserted);

public sealed record WandbBucket(
    [property: JsonPropertyName("id")] string? Id,
    [property: JsonPropertyName("name")] string? Name,
    [property: JsonPropertyName("displayName")] string? DisplayName,
    [property: JsonPropertyName("project")] WandbProject? Project);

public sealed record WandbProject(
    [property: JsonPropertyName("id")] string? Id,
    [property: JsonPropertyName("name")] string? Name,
    [property: JsonPropertyName("entity")] WandbEntity? Entity);

public sealed record WandbEntity(
    [property: JsonPropertyName("id")] string? Id,
    [property: JsonPropertyName("name")] string? Name);

/// <summary>A file_stream POST: new lines of some files, or (last) <c>complete</c> with the exit code.</summary>
public sealed record FileStreamRequest
{
    [JsonPropertyName("files")] public IReadOnlyDictionary<string, FileStreamChunk>? Files { get; init; }
    [JsonPropertyName("complete")] public bool? Complete { get; init; }
    [JsonPropertyName("exitcode")] public int? ExitCode { get; init; }
}

public sealed record FileStreamChunk(
    [property: JsonPropertyName("offset")] long Offset,
    [property: JsonPropertyName("content")] IReadOnlyList<string> Content);

/// <summary>File names on the server, the mutation text and the client factory.</summary>
public static class WandbApi
{
    public const string HistoryFile = "wandb-history.jsonl";
    public const string SummaryFile = "wandb-summary.json";
    public const string OutputFile = "output.log";

    public const string UpsertBucketMutation = """
        mutation UpsertBucket(
            $id: String, $name: String, $project: String, $entity: String, $groupName: String,
            $description: String, $displayName: String, $notes: String, $commit: String,
            $config: JSONString, $host: String, $debug: Boolean, $program: String,
            $repo: String, $jobType: String, $state: String, $sweep: String,
            $tags: [String!], $summaryMetrics: JSONString
        ) {
            upsertBucket(input: {
                id: $id, name: $name, groupName: $groupName, modelName: $project, entityName: $entity,
                description: $description, displayName: $displayName, notes: $notes, config: $config,
                commit: $commit, host: $host, debug: $debug, jobProgram: $program, jobRepo: $repo,
                jobType: $jobType, state: $state, sweep: $sweep, tags: $tags, summaryMetrics: $summaryMetrics
            }) {
                bucket { id name displayName project { id name entity { id name } } }
                inserted
            }
        }
        """;

    public const string CreateRunFilesMutation = """
        mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
            createRunFiles(input: { entityName: $entity, projectName: $project, runName: $run, files: $files }) {
                runID
                uploadHeaders
                files { name uploadUrl }
            }
        }
        """;

    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>An HttpClient for <paramref name="settings"/>' server with the Basic credential, and the Refit client on it.
    /// The caller disposes the HttpClient.</summary>
    public static (IWandbApi Api, HttpClient Http) Create(WandbSettings settings, TimeSpan requestTimeout, HttpMessageHandler? handler = null)
    {
        if (settings.ApiKey is null)
            throw new ArgumentException($"{WandbEnv.ApiKey} is not set; it is needed to upload to {settings.BaseUrl}");
        var http = handler is null ? new HttpClient() : new HttpClient(handler, disposeHandler: false);
        http.BaseAddress = new Uri(settings.BaseUrl + "/");
        http.Timeout = requestTimeout;
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", WandbSecret.BasicCredential(settings.ApiKey));
        // Buffered: send a Content-Length rather than a chunked body, as the official client does (proxies in front of
        // self-hosted servers may refuse chunked POSTs).
        var api = RestService.For<IWandbApi>(http, new RefitSettings(new SystemTextJsonContentSerializer(Json)) { Buffered = true });
        return (api, http);
    }
}
