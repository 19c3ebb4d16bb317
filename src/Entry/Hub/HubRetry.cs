using System.Net;
using Refit;

namespace Qwen3Tts.Entry.Hub;

/// <summary>How every Hub request is retried, downloads and uploads alike: 429, 408, 5xx, a dropped connection and a
/// timeout are transient and retried with exponential backoff (jittered); any other status is the caller's to refuse in
/// words. Messages carry a status and a kind, never an exception's own text, which can echo a request.</summary>
public sealed class HubRetry(TextWriter log, int attempts = 4, TimeSpan? firstBackoff = null)
{
    readonly TimeSpan backoff = firstBackoff ?? TimeSpan.FromSeconds(1);

    public int Attempts => attempts;

    /// <summary>Runs <paramref name="call"/> until it succeeds, fails for good, or has failed <see cref="Attempts"/> times.</summary>
    /// <param name="what">the request in words, for the log and the final message ("the commit of best/ to owner/name").</param>
    /// <param name="refuse">turns a status that retrying cannot fix into the exception to throw (or null to throw as it is).</param>
    public async Task<T> Run<T>(Func<Task<T>> call, string what, Func<HttpStatusCode, Exception?> refuse, CancellationToken ct)
    {
        for (int attempt = 1; ; attempt++)
        {
            try { return await call(); }
            catch (Exception e) when (!IsTransient(e) && Status(e) is { } status)
            {
                throw refuse(status) ?? new HubException($"{what}: the Hub answered HTTP {(int)status}{Reason(e)}");
            }
            catch (Exception e) when (attempt < attempts && IsTransient(e) && !ct.IsCancellationRequested)
            {
                log.WriteLine($"hub: {what}: {Describe(e)}; retrying (attempt {attempt + 1} of {attempts})");
                await Task.Delay(Backoff(attempt), ct);
            }
            catch (Exception e) when (IsTransient(e) && !ct.IsCancellationRequested)
            {
                throw new HubException($"{what} failed {attempts} times ({Describe(e)}); check the network and HF_ENDPOINT");
            }
        }
    }

    /// <summary>The wait before attempt <paramref name="attempt"/> + 1: the first backoff doubled each time, jittered to 50-100%.</summary>
    public TimeSpan Backoff(int attempt) => TimeSpan.FromMilliseconds(backoff.TotalMilliseconds * Math.Pow(2, attempt - 1) * (0.5 + Random.Shared.NextDouble() / 2));

    public static bool IsTransient(Exception e) => e switch
    {
        ApiException api => IsTransient(api.StatusCode),
        HttpRequestException http => http.StatusCode is not { } s || IsTransient(s),
        TaskCanceledException or TimeoutException or IOException => true,
        _ => false,
    };

    public static bool IsTransient(HttpStatusCode status) =>
        (int)status >= 500 || status is HttpStatusCode.TooManyRequests or HttpStatusCode.RequestTimeout;

    static HttpStatusCode? Status(Exception e) => e switch
    {
        ApiException api => api.StatusCode,
        HttpRequestException http => http.StatusCode,
        _ => null,
    };

    /// <summary>The Hub's own words for a refusal: the "error" field of its JSON reply, shortened.</summary>
    static string Reason(Exception e)
    {
        if (e is not ApiException { Content: { Length: > 0 } content }) return "";
        try
        {
            if (System.Text.Json.Nodes.JsonNode.Parse(content)?["error"]?.GetValue<string>() is { Length: > 0 } error)
                return $" ({(error.Length > 300 ? error[..300] + "..." : error)})";
        }
        catch (Exception parse) when (parse is System.Text.Json.JsonException or InvalidOperationException) { }
        return "";
    }

    /// <summary>Status and kind only: an exception's own text can echo a request.</summary>
    public static string Describe(Exception e) => e switch
    {
        ApiException api => $"HTTP {(int)api.StatusCode}",
        HttpRequestException { StatusCode: { } s } => $"HTTP {(int)s}",
        HttpRequestException http => http.HttpRequestError.ToString(),
        TaskCanceledException or TimeoutException => "timed out",
        _ => e.GetType().Name,
    };
}
