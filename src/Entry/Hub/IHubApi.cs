using System.Text.Json.Serialization;
using Refit;

namespace Qwen3Tts.Entry.Hub;

/// <summary>The Hub endpoints this program uses, as huggingface_hub uses them: for a download a repo's file listing at a
/// revision (with blob ids, sizes and LFS sha256s) and <c>resolve/{revision}/{path}</c> for each file (which may redirect
/// to a CDN; a Range header resumes it); for publishing repo creation, preupload, the LFS batch API and the commit API.
/// The bearer token is set on the HttpClient by <see cref="HubApi.Create"/>.</summary>
public interface IHubApi
{
    /// <param name="kind">"models" or "datasets".</param>
    [Get("/api/{kind}/{**id}/revision/{revision}?blobs=true")]
    Task<HubRepoInfo> RepoInfoAsync(string kind, string id, string revision, CancellationToken cancellationToken = default);

    [Get("/{**path}")]
    Task<HttpResponseMessage> ResolveAsync(string path, [Header("Range")] string? range, CancellationToken cancellationToken = default);

    // ---- publishing, as huggingface_hub's create_repo and create_commit do it. Bodies are built by HubUploader
    // (exact JSON, ndjson, the git-lfs media type); replies are read as JSON.

    /// <summary>Creates a repo: {"name", "organization", "type", "visibility"?}. 409 means it exists (answered, not thrown).</summary>
    [Post("/api/repos/create")]
    Task<HttpResponseMessage> CreateRepoAsync([Body] HttpContent body, CancellationToken cancellationToken = default);

    /// <summary>Per file (path, size, a base64 sample of its first 512 bytes): upload as "lfs" or "regular", whether the
    /// repo's .gitignore skips it, and the oid the file has in the repo now (sha256 for LFS, git sha1 else).</summary>
    [Post("/api/{kind}/{**id}/preupload/{revision}")]
    Task<HubPreupload> PreuploadAsync(string kind, string id, string revision, [Body] HttpContent body, CancellationToken cancellationToken = default);

    /// <summary>The git-lfs batch API at <c>{id}.git/info/lfs/objects/batch</c> (datasets/ prefixed): per object, where to
    /// PUT it and how to verify it, or no actions when the storage has it already.</summary>
    [Post("/{**path}")]
    [Headers("Accept: application/vnd.git-lfs+json")]
    Task<HubLfsBatch> LfsBatchAsync(string path, [Body] HttpContent body, CancellationToken cancellationToken = default);

    /// <summary>A POST to a Hub address the batch reply gave (the verify action, the multipart completion).</summary>
    [Post("/{**path}")]
    Task<HttpResponseMessage> PostAsync(string path, [Body] HttpContent body, CancellationToken cancellationToken = default);

    /// <summary>One commit: ndjson lines, a header (summary, description) then a "file" (base64) or "lfsFile" (oid, size) per file.</summary>
    [Post("/api/{kind}/{**id}/commit/{revision}")]
    Task<HubCommit> CommitAsync(string kind, string id, string revision, [Body] HttpContent body, CancellationToken cancellationToken = default);
}

public sealed record HubPreupload([property: JsonPropertyName("files")] IReadOnlyList<HubPreuploadFile>? Files);

public sealed record HubPreuploadFile(
    [property: JsonPropertyName("path")] string Path,
    [property: JsonPropertyName("uploadMode")] string UploadMode,
    [property: JsonPropertyName("shouldIgnore")] bool ShouldIgnore,
    [property: JsonPropertyName("oid")] string? Oid);

public sealed record HubLfsBatch([property: JsonPropertyName("objects")] IReadOnlyList<HubLfsObject>? Objects);

public sealed record HubLfsObject(
    [property: JsonPropertyName("oid")] string Oid,
    [property: JsonPropertyName("size")] long Size,
    [property: JsonPropertyName("actions")] HubLfsActions? Actions,
    [property: JsonPropertyName("error")] HubLfsError? Error);

public sealed record HubLfsActions(
    [property: JsonPropertyName("upload")] HubLfsAction? Upload,
    [property: JsonPropertyName("verify")] HubLfsAction? Verify);

/// <summary>Where to send an object. A multipart upload's header holds "chunk_size" and one presigned address per part ("1", "2", ...).</summary>
public sealed record HubLfsAction(
    [property: JsonPropertyName("href")] string Href,
    [property: JsonPropertyName("header")] IReadOnlyDictionary<string, string>? Header);

public sealed record HubLfsError(
    [property: JsonPropertyName("code")] int Code,
    [property: JsonPropertyName("message")] string? Message);

public sealed record HubCommit(
    [property: JsonPropertyName("commitUrl")] string? CommitUrl,
    [property: JsonPropertyName("commitOid")] string? CommitOid);

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
