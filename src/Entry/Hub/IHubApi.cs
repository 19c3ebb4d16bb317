using System.Text.Json.Serialization;
using Refit;

namespace Qwen3Tts.Entry.Hub;

/// <summary>The two Hub endpoints a download needs, as huggingface_hub uses them: a repo's file listing at a revision
/// (with blob ids, sizes and LFS sha256s) and <c>resolve/{revision}/{path}</c> for each file (which may redirect to a
/// CDN; a Range header resumes it). The bearer token is set on the HttpClient by <see cref="HubApi.Create"/>.</summary>
public interface IHubApi
{
    /// <param name="kind">"models" or "datasets".</param>
    [Get("/api/{kind}/{**id}/revision/{revision}?blobs=true")]
    Task<HubRepoInfo> RepoInfoAsync(string kind, string id, string revision, CancellationToken cancellationToken = default);

    [Get("/{**path}")]
    Task<HttpResponseMessage> ResolveAsync(string path, [Header("Range")] string? range, CancellationToken cancellationToken = default);
}

public sealed record HubRepoInfo(
    [property: JsonPropertyName("sha")] string? Sha,
    [property: JsonPropertyName("siblings")] IReadOnlyList<HubSibling>? Siblings);

/// <summary>One file of a listing: its path, git blob id, size and, for an LFS file, the content's sha256 (its etag).</summary>
public sealed record HubSibling(
    [property: JsonPropertyName("rfilename")] string Path,
    [property: JsonPropertyName("blobId")] string? BlobId,
    [property: JsonPropertyName("size")] long? Size,
    [property: JsonPropertyName("lfs")] HubLfs? Lfs)
{
    /// <summary>The blob's name in the cache, as huggingface_hub names it: the LFS sha256, else the git blob id.</summary>
    public string? Etag => Lfs?.Sha256 ?? BlobId;
}

public sealed record HubLfs(
    [property: JsonPropertyName("sha256")] string Sha256,
    [property: JsonPropertyName("size")] long Size);

public static class HubApi
{
    public const string DefaultEndpoint = "https://huggingface.co";

    /// <summary>A client for <paramref name="endpoint"/> (HF_ENDPOINT: a mirror, or the tests' stand-in), sending
    /// <paramref name="token"/> as a bearer token when given. Redirects are followed (to a CDN, the token is not sent on).</summary>
    public static IHubApi Create(string endpoint, string? token, HttpMessageHandler? handler = null, TimeSpan? timeout = null)
    {
        var http = handler is null ? new HttpClient() : new HttpClient(handler, disposeHandler: false);
        http.BaseAddress = new Uri(endpoint.TrimEnd('/'));
        http.Timeout = timeout ?? TimeSpan.FromMinutes(30);
        http.DefaultRequestHeaders.UserAgent.ParseAdd("qwen3tts-distributed/1.0");
        if (!string.IsNullOrEmpty(token)) http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        return RestService.For<IHubApi>(http, new RefitSettings(new SystemTextJsonContentSerializer()));
    }
}
