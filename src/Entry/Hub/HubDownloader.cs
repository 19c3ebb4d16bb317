using System.Net;
using System.Security.Cryptography;
using Refit;

namespace Qwen3Tts.Entry.Hub;

/// <summary>Downloads a repo's files at a revision into the shared cache, laid out as huggingface_hub lays it out, so
/// Python uses what this downloads and the other way round: each file streams to <c>blobs/{etag}.incomplete</c> (resumed
/// with a Range request after an interruption), is checked (size; the sha256 of an LFS file, which is its etag) and only
/// then renamed to <c>blobs/{etag}</c>; the snapshot gets a relative link to it; <c>refs/{revision}</c> is written last,
/// so a snapshot a ref points to is complete. One process downloads a blob while the others wait on its lock
/// (<c>.locks/{repo}/{etag}.lock</c>, as huggingface_hub's), so the ranks of a node download once and two processes
/// racing on one cache never leave a partial file in it. 429 and 5xx are retried with backoff; 401, 403 and 404 name the
/// repo and what to check. The token is on the HttpClient only: no message here contains it.</summary>
public sealed class HubDownloader(IHubApi api, HubCache cache, TextWriter log, int attempts = 4, TimeSpan? firstBackoff = null)
{
    readonly HubRetry retry = new(log, attempts, firstBackoff);

    /// <summary>Fetches the files <paramref name="wanted"/> picks (all when null) and returns the snapshot folder.</summary>
    /// <param name="what">what <paramref name="wanted"/> picks, for the message when the repo has none of it.</param>
    public async Task<string> SnapshotAsync(HubRepo repo, string revision, Func<string, bool>? wanted = null, string what = "files", CancellationToken ct = default)
    {
        string kind = repo.Type == HubRepoType.Model ? "models" : "datasets";
        var info = await retry.Run(() => api.RepoInfoAsync(kind, repo.Id, revision, ct), $"the file listing of {repo}", status => Refusal(status, repo, null, revision), ct);
        string commit = info.Sha is { Length: 40 } sha ? sha : throw new HubException($"{repo}: the Hub's listing at revision {revision} names no commit");
        string repoDir = Path.Combine(cache.Root, repo.CacheFolder);
        string snapshot = Path.Combine(repoDir, "snapshots", commit);
        var files = (info.Siblings ?? []).Where(f => wanted?.Invoke(f.Path) ?? true).ToList();
        if (files.Count == 0)
            throw new HubException($"{repo} at revision {revision} has no {what} (it holds {string.Join(", ", (info.Siblings ?? []).Select(f => f.Path).Take(8))})") { NoneNeeded = true };
        foreach (var file in files)
        {
            string link = Path.Combine(snapshot, file.Path);
            if (File.Exists(link)) continue;
            string etag = file.Etag ?? throw new HubException($"{repo}: the listing gives '{file.Path}' no blob id");
            string blob = Path.Combine(repoDir, "blobs", etag);
            Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
            using (await LockAsync(Path.Combine(cache.Root, ".locks", repo.CacheFolder, etag + ".lock"), ct))
                if (!File.Exists(blob)) await DownloadAsync(repo, commit, file, blob, ct);
            Link(link, blob);
        }
        if (revision != commit) WriteAtomically(Path.Combine(repoDir, "refs", revision.Replace('/', Path.DirectorySeparatorChar)), commit);
        return snapshot;
    }

    async Task DownloadAsync(HubRepo repo, string commit, HubSibling file, string blob, CancellationToken ct)
    {
        string partial = blob + ".incomplete";
        long expected = file.Lfs?.Size ?? file.Size ?? -1;
        string path = (repo.Type == HubRepoType.Dataset ? "datasets/" : "") + $"{repo.Id}/resolve/{commit}/{file.Path}";
        log.WriteLine($"hub: downloading {repo.Id}/{file.Path}{(expected >= 0 ? $" ({expected / 1e6:F1} MB)" : "")} into {cache.Root}");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int attempt = 1; ; attempt++)
        {
            long have = File.Exists(partial) ? new FileInfo(partial).Length : 0;
            try
            {
                using var response = await api.ResolveAsync(path, have > 0 ? $"bytes={have}-" : null, ct);
                if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable) { File.Delete(partial); continue; } // stale partial: start again
                if (Refusal(response.StatusCode, repo, file.Path) is { } refusal) throw refusal;
                response.EnsureSuccessStatusCode();
                bool resumed = have > 0 && response.StatusCode == HttpStatusCode.PartialContent;
                await using (var target = new FileStream(partial, resumed ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None))
                await using (var source = await response.Content.ReadAsStreamAsync(ct))
                    await source.CopyToAsync(target, ct);
                break;
            }
            catch (Exception e) when (attempt < attempts && HubRetry.IsTransient(e) && !ct.IsCancellationRequested)
            {
                log.WriteLine($"hub: {repo.Id}/{file.Path}: {HubRetry.Describe(e)} after {(File.Exists(partial) ? new FileInfo(partial).Length : 0)} bytes; resuming (attempt {attempt + 1} of {attempts})");
                await Task.Delay(retry.Backoff(attempt), ct);
            }
        }
        long size = new FileInfo(partial).Length;
        if (expected >= 0 && size != expected)
        {
            File.Delete(partial);
            throw new HubException($"{repo}: '{file.Path}' arrived with {size} bytes, the Hub lists {expected}; nothing was kept, try again");
        }
        if (file.Lfs is { } lfs)
        {
            string actual;
            await using (var stream = File.OpenRead(partial)) actual = Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, ct));
            if (actual != lfs.Sha256)
            {
                File.Delete(partial);
                throw new HubException($"{repo}: '{file.Path}' has sha256 {actual}, the Hub lists {lfs.Sha256}: the download is corrupt and was not kept; try again");
            }
        }
        File.Move(partial, blob, overwrite: true); // atomic on one file system: the blob appears whole or not at all
        double seconds = Math.Max(clock.Elapsed.TotalSeconds, 1e-3);
        log.WriteLine(System.FormattableString.Invariant($"hub: {repo.Id}/{file.Path}: {size / 1e6:F1} MB in {seconds:F1} s ({size / 1e6 / seconds:F1} MB/s){(file.Lfs is null ? "" : ", sha256 checked")}"));
    }

    /// <summary>The snapshot's entry for a file: a relative link to its blob (as Python makes them), made under a temporary
    /// name and renamed into place, so a reader never sees a half-made entry.</summary>
    static void Link(string link, string blob)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(link)!);
        string temporary = $"{link}.{Environment.ProcessId}.tmp";
        File.Delete(temporary);
        File.CreateSymbolicLink(temporary, Path.GetRelativePath(Path.GetDirectoryName(link)!, blob));
        File.Move(temporary, link, overwrite: true);
    }

    static void WriteAtomically(string path, string text)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string temporary = $"{path}.{Environment.ProcessId}.tmp";
        File.WriteAllText(temporary, text);
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>An exclusive lock on <paramref name="path"/> (flock, as Python's filelock takes it), waited for.</summary>
    static async Task<IDisposable> LockAsync(string path, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        while (true)
        {
            try { return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
            catch (IOException) { await Task.Delay(200, ct); } // another process holds it: it is downloading this blob
        }
    }

    /// <summary>401, 403 and 404 as one line naming the repo and what to check.</summary>
    static HubException? Refusal(HttpStatusCode status, HubRepo repo, string? file, string? revision = null)
    {
        string what = file is null ? $"{repo}{(revision is null ? "" : $" at revision {revision}")}" : $"{repo}: '{file}'";
        return status switch
        {
            HttpStatusCode.Unauthorized => new HubException($"{what}: the Hub wants a token (HTTP 401): set HF_TOKEN (or --hub_token) to a token that may read it"),
            HttpStatusCode.Forbidden => new HubException($"{what}: the token may not read it (HTTP 403): a gated repo needs its terms accepted on the Hub, a private one a token of its owner"),
            HttpStatusCode.NotFound => new HubException($"{what}: not found on the Hub (HTTP 404): check the id{(repo.Type == HubRepoType.Dataset ? "" : " (a dataset?)")} and the revision; a private repo answers 404 without a token"),
            _ => null,
        };
    }
}
