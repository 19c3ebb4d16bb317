using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace Qwen3Tts.Entry.Hub;

/// <summary>What one folder upload did.</summary>
/// <param name="CommitOid">the new commit, or null when nothing had changed (no commit was made).</param>
public sealed record HubUploadResult(HubRepo Repo, bool Created, string? CommitOid, string? CommitUrl, IReadOnlyList<string> Committed,
    IReadOnlyList<string> Unchanged, int LfsSent, long BytesSent);

/// <summary>Publishes a folder to a Hub repo as huggingface_hub's upload_folder does, through the commit API: the repo is
/// created when missing; a preupload request tells per file whether it goes to LFS storage and which version the repo holds
/// (files whose content is already there are left out); the LFS files' content goes through the git-lfs batch API
/// (sha256 and size announced, each object PUT to the address the Hub gives, single or in parts, then verified), and one
/// commit then adds every changed file: small ones inline (base64), LFS ones by pointer (sha256, size). Every request is
/// retried on 429/5xx and dropped connections (<see cref="HubRetry"/>); a refusal names the repo and the fix.
/// The token is on <see cref="IHubApi"/>'s HttpClient only: the LFS storage (presigned addresses) gets none, and no file
/// holding a secret value is ever sent.</summary>
public sealed class HubUploader(IHubApi api, HttpClient storage, string endpoint, TextWriter log, IReadOnlyList<(string Name, string Value)> secrets,
    int attempts = 4, TimeSpan? firstBackoff = null)
{
    readonly HubRetry retry = new(log, attempts, firstBackoff);
    const string LfsMediaType = "application/vnd.git-lfs+json";

    /// <summary>The most files one preupload or LFS batch request names (huggingface_hub's chunk size).</summary>
    const int BatchFiles = 256;

    /// <summary>The largest file sent inline in the commit (the Hub sends anything but small text files to LFS).</summary>
    const long MaxInlineBytes = 64L << 20;

    /// <summary>A part of a multipart LFS upload is read into memory; the Hub's parts are far smaller.</summary>
    const long MaxPartBytes = 512L << 20;

    /// <summary>How much of each file is searched for secret values: the whole of a config or a card, the JSON header of a
    /// safetensors file.</summary>
    const int SecretScanBytes = 1 << 20;

    /// <summary>A client for <paramref name="endpoint"/> with <paramref name="token"/>, and a token-free one for the LFS storage.</summary>
    public static HubUploader Create(string endpoint, string? token, TextWriter log, HttpMessageHandler? handler = null, int attempts = 4, TimeSpan? firstBackoff = null)
    {
        var storage = handler is null ? new HttpClient() : new HttpClient(handler, disposeHandler: false);
        storage.Timeout = TimeSpan.FromHours(2);
        return new HubUploader(HubApi.Create(endpoint, token, handler, TimeSpan.FromHours(2)), storage, endpoint, log,
            SecretValues.Current(("--hub_token", token)), attempts, firstBackoff);
    }

    /// <summary>Creates <paramref name="repo"/> (private when <paramref name="isPrivate"/>); true when it was created,
    /// false when it existed (its visibility is left as it is).</summary>
    public async Task<bool> CreateRepoAsync(HubRepo repo, bool isPrivate, CancellationToken ct = default)
    {
        string[] parts = repo.Id.Split('/');
        return await retry.Run(async () =>
        {
            var body = new JsonObject { ["name"] = parts[1], ["organization"] = parts[0], ["type"] = repo.Type == HubRepoType.Model ? "model" : "dataset" };
            if (isPrivate) body["visibility"] = "private";
            using var response = await api.CreateRepoAsync(Json(body), ct);
            if (response.StatusCode == HttpStatusCode.Conflict) return false; // it exists
            response.EnsureSuccessStatusCode();
            return true;
        }, $"creating {repo}", status => Refusal(status, repo), ct);
    }

    /// <summary>Commits every file under <paramref name="folder"/> whose content the repo's main branch lacks, in one commit.</summary>
    public async Task<HubUploadResult> UploadFolderAsync(HubRepo repo, string folder, string message, bool isPrivate = false, string? description = null,
        CancellationToken ct = default)
    {
        if (!Directory.Exists(folder)) throw new HubException($"{folder}: no such folder to upload");
        var files = LocalFiles(folder);
        if (files.Count == 0) throw new HubException($"{folder}: nothing to upload (the folder is empty)");
        bool created = await CreateRepoAsync(repo, isPrivate, ct);
        if (created) log.WriteLine($"hub: created the {(isPrivate ? "private" : "public")} repo {repo}");
        log.WriteLine(System.FormattableString.Invariant($"hub: uploading {folder} to {repo} ({files.Count} files, {files.Sum(f => f.Size) / 1e6:F1} MB)"));

        // ---- preupload: LFS or regular, and what the repo holds now
        string kind = repo.Type == HubRepoType.Model ? "models" : "datasets";
        var modes = new Dictionary<string, HubPreuploadFile>(StringComparer.Ordinal);
        foreach (var chunk in files.Chunk(BatchFiles))
        {
            var reply = await retry.Run(() => api.PreuploadAsync(kind, repo.Id, "main", Json(new JsonObject
            {
                ["files"] = new JsonArray(chunk.Select(f => (JsonNode)new JsonObject { ["path"] = f.Path, ["sample"] = Convert.ToBase64String(f.Sample), ["size"] = f.Size }).ToArray()),
            }), ct), $"the preupload check of {repo}", status => Refusal(status, repo), ct);
            foreach (var entry in reply.Files ?? []) modes[entry.Path] = entry;
        }
        var changed = new List<(LocalFile File, bool Lfs)>();
        var unchanged = new List<string>();
        foreach (var file in files)
        {
            if (!modes.TryGetValue(file.Path, out var mode))
                throw new HubException($"{repo}: the Hub's preupload reply does not name '{file.Path}'");
            if (mode.ShouldIgnore) { log.WriteLine($"hub: {repo}: '{file.Path}' is skipped (the repo's .gitignore)"); continue; }
            if (mode.UploadMode is not ("lfs" or "regular"))
                throw new HubException($"{repo}: the Hub asks for '{file.Path}' as '{mode.UploadMode}'; this client sends lfs and regular files");
            bool lfs = mode.UploadMode == "lfs" && file.Size > 0; // an empty file cannot go to LFS storage
            if (!lfs && file.Size > MaxInlineBytes) // sent inline (base64 in the commit): bounded
                throw new HubException($"{repo}: the Hub asks for '{file.Path}' ({file.Size / 1e6:F0} MB) inline; this client sends files over {MaxInlineBytes >> 20} MB through LFS only");
            string localOid = lfs ? file.Sha256 : GitBlobId(file.FullPath);
            if (mode.Oid == localOid) unchanged.Add(file.Path);
            else changed.Add((file, lfs));
        }
        if (changed.Count == 0)
        {
            log.WriteLine($"hub: {repo} already holds all {files.Count} files of {folder} as they are; no commit made");
            return new HubUploadResult(repo, created, null, null, [], unchanged, 0, 0);
        }

        // ---- the LFS files' content, before the commit that points to it
        var lfsFiles = changed.Where(c => c.Lfs).Select(c => c.File).DistinctBy(f => f.Sha256).ToList();
        int sent = 0;
        long bytes = 0;
        foreach (var chunk in lfsFiles.Chunk(BatchFiles))
        {
            string path = (repo.Type == HubRepoType.Dataset ? "datasets/" : "") + $"{repo.Id}.git/info/lfs/objects/batch";
            var batch = await retry.Run(() => api.LfsBatchAsync(path, Json(new JsonObject
            {
                ["operation"] = "upload",
                ["transfers"] = new JsonArray("basic", "multipart"),
                ["objects"] = new JsonArray(chunk.Select(f => (JsonNode)new JsonObject { ["oid"] = f.Sha256, ["size"] = f.Size }).ToArray()),
                ["hash_algo"] = "sha256",
                ["ref"] = new JsonObject { ["name"] = "main" },
            }, LfsMediaType), ct), $"the LFS batch request to {repo}", status => Refusal(status, repo), ct);
            foreach (var file in chunk)
            {
                var entry = batch.Objects?.FirstOrDefault(o => o.Oid == file.Sha256)
                    ?? throw new HubException($"{repo}: the Hub's LFS batch reply does not name '{file.Path}' (sha256 {file.Sha256})");
                if (entry.Error is { } error)
                    throw new HubException($"{repo}: the Hub's LFS storage refused '{file.Path}': {error.Message} (code {error.Code})");
                if (entry.Actions?.Upload is not { } upload) continue; // the storage has this content already
                await SendAsync(repo, file, upload, ct);
                if (entry.Actions.Verify is { } verify) await VerifyAsync(repo, file, verify, ct);
                sent++;
                bytes += file.Size;
            }
        }

        // ---- one commit: ndjson, a header then a line per file
        var lines = new StringBuilder();
        lines.Append(new JsonObject { ["key"] = "header", ["value"] = new JsonObject { ["summary"] = message, ["description"] = description ?? "" } }.ToJsonString()).Append('\n');
        foreach (var (file, lfs) in changed)
        {
            var value = lfs ? new JsonObject { ["path"] = file.Path, ["algo"] = "sha256", ["oid"] = file.Sha256, ["size"] = file.Size }
                : new JsonObject { ["content"] = Convert.ToBase64String(File.ReadAllBytes(file.FullPath)), ["path"] = file.Path, ["encoding"] = "base64" };
            lines.Append(new JsonObject { ["key"] = lfs ? "lfsFile" : "file", ["value"] = value }.ToJsonString()).Append('\n');
        }
        string ndjson = lines.ToString();
        var commit = await retry.Run(() =>
        {
            var content = new StringContent(ndjson, Encoding.UTF8);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/x-ndjson");
            return api.CommitAsync(kind, repo.Id, "main", content, ct);
        }, $"the commit to {repo}", status => Refusal(status, repo), ct);
        log.WriteLine(System.FormattableString.Invariant($"hub: committed {changed.Count} files of {folder} to {repo} ({sent} LFS files, {bytes / 1e6:F1} MB sent; {unchanged.Count} unchanged): {commit.CommitUrl ?? commit.CommitOid}"));
        return new HubUploadResult(repo, created, commit.CommitOid, commit.CommitUrl, [.. changed.Select(c => c.File.Path)], unchanged, sent, bytes);
    }

    /// <summary>One LFS object to the address the batch reply gave: one PUT, or with a chunk_size in the header one PUT
    /// per part and a completion request listing the parts' ETags.</summary>
    async Task SendAsync(HubRepo repo, LocalFile file, HubLfsAction upload, CancellationToken ct)
    {
        var header = upload.Header ?? new Dictionary<string, string>();
        if (!header.TryGetValue("chunk_size", out var chunkText))
        {
            await retry.Run(async () =>
            {
                await using var stream = File.OpenRead(file.FullPath);
                using var request = new HttpRequestMessage(HttpMethod.Put, Absolute(upload.Href)) { Content = new StreamContent(stream) };
                foreach (var (name, value) in header) request.Headers.TryAddWithoutValidation(name, value);
                using var response = await storage.SendAsync(request, ct);
                response.EnsureSuccessStatusCode();
                return true;
            }, $"uploading '{file.Path}' to {repo}'s LFS storage", _ => null, ct);
            return;
        }
        if (!long.TryParse(chunkText, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long chunk) || chunk < 1 || chunk > MaxPartBytes)
            throw new HubException($"{repo}: the Hub asked for '{file.Path}' in parts of '{chunkText}' bytes; this client sends parts of 1 byte to {MaxPartBytes >> 20} MB");
        var parts = header.Where(h => h.Key.All(char.IsAsciiDigit) && h.Key.Length > 0)
            .OrderBy(h => int.Parse(h.Key, System.Globalization.CultureInfo.InvariantCulture)).Select(h => h.Value).ToList();
        if (parts.Count != (file.Size + chunk - 1) / chunk)
            throw new HubException($"{repo}: the Hub gave {parts.Count} part addresses for '{file.Path}' ({file.Size} bytes in parts of {chunk})");
        var etags = new JsonArray();
        var buffer = new byte[(int)Math.Min(chunk, file.Size)];
        for (int i = 0; i < parts.Count; i++)
        {
            int length;
            await using (var stream = File.OpenRead(file.FullPath))
            {
                stream.Position = i * chunk;
                length = await stream.ReadAtLeastAsync(buffer.AsMemory(0, (int)Math.Min(chunk, file.Size - i * chunk)), (int)Math.Min(chunk, file.Size - i * chunk), true, ct);
            }
            string etag = await retry.Run(async () =>
            {
                using var request = new HttpRequestMessage(HttpMethod.Put, Absolute(parts[i])) { Content = new ByteArrayContent(buffer, 0, length) };
                using var response = await storage.SendAsync(request, ct);
                response.EnsureSuccessStatusCode();
                return response.Headers.ETag?.Tag ?? throw new HubException($"{repo}: the LFS storage gave part {i + 1} of '{file.Path}' no ETag");
            }, $"uploading part {i + 1} of {parts.Count} of '{file.Path}' to {repo}'s LFS storage", _ => null, ct);
            etags.Add(new JsonObject { ["partNumber"] = i + 1, ["etag"] = etag });
        }
        await PostAsync(repo, upload.Href, new JsonObject { ["oid"] = file.Sha256, ["parts"] = etags }, $"completing the upload of '{file.Path}' to {repo}", ct);
    }

    Task VerifyAsync(HubRepo repo, LocalFile file, HubLfsAction verify, CancellationToken ct) =>
        PostAsync(repo, verify.Href, new JsonObject { ["oid"] = file.Sha256, ["size"] = file.Size }, $"the LFS check of '{file.Path}' on {repo}", ct);

    /// <summary>A POST to an address from the batch reply: through the Hub client (with the token) when it is on the Hub,
    /// else without any token.</summary>
    async Task PostAsync(HubRepo repo, string href, JsonObject body, string what, CancellationToken ct)
    {
        var target = Absolute(href);
        var hub = new Uri(endpoint.TrimEnd('/') + "/");
        await retry.Run(async () =>
        {
            using var response = target.Scheme == hub.Scheme && target.Authority == hub.Authority
                ? await api.PostAsync(target.AbsolutePath.TrimStart('/'), Json(body, LfsMediaType), ct)
                : await storage.PostAsync(target, Json(body, LfsMediaType), ct);
            response.EnsureSuccessStatusCode();
            return true;
        }, what, status => Refusal(status, repo), ct);
    }

    Uri Absolute(string href) => new(new Uri(endpoint.TrimEnd('/') + "/"), href);

    /// <summary>401/403/404 in words; any other refusal is reported with the Hub's own reason.</summary>
    static HubException? Refusal(HttpStatusCode status, HubRepo repo) => status switch
    {
        HttpStatusCode.Unauthorized => new HubException($"{repo}: the Hub wants a token that may write (HTTP 401): set HF_TOKEN (or --hub_token) to a write token"),
        HttpStatusCode.Forbidden => new HubException($"{repo}: the token may not write to it (HTTP 403): use a write token of {repo.Id.Split('/')[0]} (or of a member of that organization)"),
        HttpStatusCode.NotFound => new HubException($"{repo}: not found on the Hub (HTTP 404) although it was just created or found: check the id and that the token may write to it"),
        _ => null,
    };

    static StringContent Json(JsonNode body, string mediaType = "application/json")
    {
        var content = new StringContent(body.ToJsonString(), Encoding.UTF8);
        content.Headers.ContentType = new MediaTypeHeaderValue(mediaType);
        return content;
    }

    sealed record LocalFile(string FullPath, string Path, long Size, string Sha256, byte[] Sample);

    /// <summary>The files to publish, in ordinal order of their repo paths; .git/, .cache/ (huggingface_hub's local
    /// metadata) and half-written (.tmp-*, .incomplete) entries are never sent. Each is read once here: its head (the
    /// preupload sample, and searched for secret values: no file holding one leaves this machine), then its sha256.</summary>
    List<LocalFile> LocalFiles(string folder)
    {
        var result = new List<LocalFile>();
        foreach (string full in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories))
        {
            string path = System.IO.Path.GetRelativePath(folder, full).Replace(System.IO.Path.DirectorySeparatorChar, '/');
            if (path.Split('/').Any(p => p is ".git" or ".cache" || p.Contains(".tmp-", StringComparison.Ordinal)) || path.EndsWith(".incomplete", StringComparison.Ordinal)) continue;
            using var stream = File.OpenRead(full);
            var head = new byte[(int)Math.Min(stream.Length, SecretScanBytes)];
            stream.ReadExactly(head);
            if (secrets.Count > 0 && SecretValues.FoundIn(Encoding.UTF8.GetString(head), secrets) is { } name)
                throw new HubException($"{full} holds the value of {name}; refusing to upload a secret. Remove it from the file and upload again");
            stream.Position = 0;
            result.Add(new LocalFile(full, path, stream.Length, Convert.ToHexStringLower(SHA256.HashData(stream)), head[..Math.Min(512, head.Length)]));
        }
        return [.. result.OrderBy(f => f.Path, StringComparer.Ordinal)];
    }

    /// <summary>git's blob id of a file (sha1 of "blob {size}\0" and the content): what the Hub reports for a regular file.</summary>
    static string GitBlobId(string path)
    {
        byte[] data = File.ReadAllBytes(path);
        using var sha1 = IncrementalHash.CreateHash(HashAlgorithmName.SHA1);
        sha1.AppendData(Encoding.ASCII.GetBytes($"blob {data.Length}\0"));
        sha1.AppendData(data);
        return Convert.ToHexStringLower(sha1.GetHashAndReset());
    }
}
