using System.Net;
using System.Net.Sockets;
using Refit;

namespace Qwen3Tts.Coordinator.Observability;

/// <summary>How the sender batches and retries. The defaults suit training; tests shorten the times.</summary>
public sealed record WandbUploadOptions
{
    /// <summary>How often pending rows are sent (sooner when <see cref="MaxLinesPerRequest"/> rows are waiting).</summary>
    public TimeSpan FlushInterval { get; init; } = TimeSpan.FromSeconds(1.5);
    public int MaxLinesPerRequest { get; init; } = 500;
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(60);
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>How long Finish waits for the last rows before leaving them to wandb-sync.</summary>
    public TimeSpan FinishTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Attempts per request before giving up; null retries until stopped (the live run), wandb-sync uses a bound.</summary>
    public int? MaxAttempts { get; init; }
    /// <summary>For tests and proxies; null uses a default SocketsHttpHandler.</summary>
    public HttpMessageHandler? Handler { get; init; }
}

/// <summary>A failure that retrying will not fix (key rejected, bad request, GraphQL error), or the last of a bounded
/// number of retries. Its message never contains the API key.</summary>
public sealed class WandbException(string message) : Qwen3Tts.Model.UserInputException(message);

/// <summary>Brings the server up to date with a <see cref="WandbRunFolder"/>: upserts the run, then sends pending lines
/// in order, each request retried with exponential backoff on network errors, timeouts, 5xx, 408 and 429.
/// One uploader per folder, used from one thread at a time.</summary>
sealed class WandbUploader(IWandbApi api, WandbRunFolder folder, WandbSettings settings, WandbUploadOptions options, Action<string> warn) : IDisposable
{
    // Signed-URL uploads: no BaseAddress, no Authorization header.
    readonly HttpClient uploads = options.Handler is { } handler
        ? new HttpClient(handler, disposeHandler: false) { Timeout = options.RequestTimeout }
        : new HttpClient { Timeout = options.RequestTimeout };

    public void Dispose() => uploads.Dispose();

    bool upserted, outage;

    public async Task PumpAsync(CancellationToken ct)
    {
        if (folder.Delivered && folder.State.CompleteSent) return; // upserting would mark a finished run running again
        if (!upserted)
        {
            await UpsertAsync(ct);
            upserted = true;
        }
        var state = folder.State;
        string entity = state.Entity ?? throw new WandbException("the server did not say which entity the run belongs to");
        while (folder.TakeBatch(options.MaxLinesPerRequest) is { } batch)
        {
            await WithRetries("file_stream", c => api.FileStreamAsync(entity, state.Project, state.RunId, batch.ToRequest(), c), ct);
            folder.Commit(batch);
        }
        if (folder.PendingFiles is { Count: > 0 } files) await UploadFilesAsync(entity, files, ct);
        state = folder.State;
        if (state.ExitCode is { } exitCode && !state.CompleteSent)
        {
            await WithRetries("file_stream complete",
                c => api.FileStreamAsync(entity, state.Project, state.RunId, new FileStreamRequest { Complete = true, ExitCode = exitCode }, c), ct);
            folder.Update(s => s with { CompleteSent = true });
        }
    }

    /// <summary>Asks for signed URLs, then PUTs each file (from a client without the API key: the URL is the credential,
    /// and the storage behind it must never see the key), recording each as uploaded once stored.</summary>
    async Task UploadFilesAsync(string entity, IReadOnlyList<string> files, CancellationToken ct)
    {
        var state = folder.State;
        GraphQlResponse<CreateRunFilesData>? response = null;
        await WithRetries("CreateRunFiles", async c => response = await api.CreateRunFilesAsync(
            new GraphQlRequest<CreateRunFilesVariables>(WandbApi.CreateRunFilesMutation, new CreateRunFilesVariables(entity, state.Project, state.RunId, files)), c), ct);
        if (response?.Errors is { Count: > 0 } errors)
            throw new WandbException(settings.Scrub($"CreateRunFiles for run {state.RunId} failed: " + string.Join("; ", errors.Select(e => e.Message))));
        var payload = response?.Data?.CreateRunFiles ?? throw new WandbException($"CreateRunFiles for run {state.RunId} returned nothing");
        var headers = (payload.UploadHeaders ?? []).Select(h => h.Split(':', 2)).Where(p => p.Length == 2).ToList();
        foreach (var file in payload.Files ?? [])
        {
            if (file.UploadUrl is not { Length: > 0 } url || !files.Contains(file.Name)) continue;
            await WithRetries($"upload of {file.Name}", async c =>
            {
                using var request = new HttpRequestMessage(HttpMethod.Put, url) { Content = new ByteArrayContent(await File.ReadAllBytesAsync(folder.FilePath(file.Name), c)) };
                foreach (var h in headers)
                    if (!request.Headers.TryAddWithoutValidation(h[0].Trim(), h[1].Trim())) request.Content.Headers.TryAddWithoutValidation(h[0].Trim(), h[1].Trim());
                using var reply = await uploads.SendAsync(request, c);
                reply.EnsureSuccessStatusCode();
            }, ct);
            folder.MarkUploaded(file.Name);
        }
    }

    async Task UpsertAsync(CancellationToken ct)
    {
        var state = folder.State;
        var variables = new UpsertBucketVariables
        {
            Id = state.BucketId,
            Name = state.RunId,
            Project = state.Project,
            Entity = state.Entity,
            GroupName = state.Group,
            DisplayName = state.DisplayName,
            Notes = state.Notes,
            JobType = state.JobType,
            Tags = state.Tags.Count > 0 ? state.Tags : null,
            Config = folder.LoadConfig(),
            Host = Environment.MachineName,
            Program = "qwen3tts",
            State = "running",
        };
        GraphQlResponse<UpsertBucketData>? response = null;
        await WithRetries("UpsertBucket", async c => response = await api.UpsertBucketAsync(new GraphQlRequest<UpsertBucketVariables>(WandbApi.UpsertBucketMutation, variables), c), ct);
        if (response?.Errors is { Count: > 0 } errors)
            throw new WandbException(settings.Scrub($"UpsertBucket for run {state.RunId} in project {state.Project} failed: " +
                string.Join("; ", errors.Select(e => e.Message))));
        var bucket = response?.Data?.UpsertBucket?.Bucket
            ?? throw new WandbException($"UpsertBucket for run {state.RunId} returned no bucket");
        folder.Update(s => s with
        {
            BucketId = bucket.Id ?? s.BucketId,
            Entity = bucket.Project?.Entity?.Name ?? s.Entity,
            Project = bucket.Project?.Name ?? s.Project,
        });
    }

    async Task WithRetries(string what, Func<CancellationToken, Task> send, CancellationToken ct)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                await send(ct);
                if (outage)
                {
                    outage = false;
                    warn($"wandb: {settings.BaseUrl} is reachable again; sending the rows kept in {folder.Directory}");
                }
                return;
            }
            catch (Exception e) when (!ct.IsCancellationRequested && IsTransient(e))
            {
                var reason = Describe(e);
                if (options.MaxAttempts is { } max && attempt >= max)
                    throw new WandbException(settings.Scrub($"{what} to {settings.BaseUrl} failed {attempt} times ({reason}); " +
                        $"the rows stay in {folder.Directory}, upload them later with `qwen3tts wandb-sync {folder.Directory}`"));
                if (!outage)
                {
                    outage = true;
                    warn(settings.Scrub($"wandb: {what} to {settings.BaseUrl} failed ({reason}); training goes on, rows are kept in {folder.Directory} and sent when it answers"));
                }
                await Task.Delay(Backoff(attempt), ct);
            }
            catch (ApiException e) when (!ct.IsCancellationRequested)
            {
                var fix = e.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden
                    ? $"; check {WandbEnv.ApiKey} and that it may write to project {folder.State.Project}" : "";
                throw new WandbException(settings.Scrub($"{what} to {settings.BaseUrl} was refused: {Describe(e)}{fix}"));
            }
        }
    }

    TimeSpan Backoff(int attempt)
    {
        double ms = options.InitialBackoff.TotalMilliseconds * Math.Pow(2, Math.Min(attempt - 1, 30));
        ms = Math.Min(ms, options.MaxBackoff.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(ms * (0.5 + Random.Shared.NextDouble() / 2)); // jitter: many ranks' runs do not retry in step
    }

    static bool IsTransient(Exception e) => e switch
    {
        ApiException api => IsTransientStatus(api.StatusCode),
        HttpRequestException http => http.StatusCode is null || IsTransientStatus(http.StatusCode.Value),
        TaskCanceledException or TimeoutException or IOException or SocketException => true,
        _ => false,
    };

    static bool IsTransientStatus(HttpStatusCode status) =>
        (int)status >= 500 || status is HttpStatusCode.TooManyRequests or HttpStatusCode.RequestTimeout;

    /// <summary>Status and reason only: exception messages can echo request details.</summary>
    static string Describe(Exception e) => e switch
    {
        ApiException api => $"HTTP {(int)api.StatusCode} {api.ReasonPhrase}",
        HttpRequestException http when http.StatusCode is { } s => $"HTTP {(int)s}",
        HttpRequestException http => http.HttpRequestError.ToString(),
        TaskCanceledException or TimeoutException => "timed out",
        _ => e.GetType().Name,
    };
}
