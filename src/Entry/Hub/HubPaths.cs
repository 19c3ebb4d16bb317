namespace Qwen3Tts.Entry.Hub;

/// <summary>Where a model or dataset argument points: an existing local path as it is, else a Hub id resolved to its
/// snapshot folder in the shared cache, which a model directory or a folder of Parquet shards is read from as usual. A
/// snapshot the cache lacks is downloaded (<see cref="HubDownloader"/>) from HF_ENDPOINT (default huggingface.co) with
/// HF_TOKEN or HUGGING_FACE_HUB_TOKEN, unless HF_HUB_OFFLINE is set, which makes no request at all.</summary>
public static class HubPaths
{
    /// <summary>The branch where the Hub keeps every dataset converted to Parquet: <c>{config}/{split}/0000.parquet</c>.</summary>
    public const string ParquetBranch = "refs/convert/parquet";

    /// <summary>A model argument resolved with this process's environment.</summary>
    public static string Model(string value, string flag = "--model", string? revision = null) =>
        Resolve(value, HubRepoType.Model, flag, revision, Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => e.Value as string ?? ""));

    /// <summary>HF_HUB_OFFLINE as huggingface_hub reads it.</summary>
    public static bool Offline(IReadOnlyDictionary<string, string> env) =>
        env.TryGetValue("HF_HUB_OFFLINE", out var v) && v.Trim().ToUpperInvariant() is "1" or "ON" or "YES" or "TRUE";

    /// <summary>The files a resolve needs: a model's all; a dataset's Parquet shards of <paramref name="split"/>
    /// (<c>{split}-*.parquet</c> anywhere, as <c>data/</c> holds them, or under a <c>{split}/</c> folder, as the
    /// refs/convert/parquet branch does), or every shard without a split.</summary>
    public static Func<string, bool> Needed(HubRepoType type, string? split) => type == HubRepoType.Model ? _ => true : path =>
    {
        if (!path.EndsWith(".parquet", StringComparison.Ordinal)) return false;
        if (split is null) return true;
        string name = Path.GetFileName(path);
        return name.StartsWith(split + "-", StringComparison.Ordinal) || path.Split('/').SkipLast(1).Contains(split);
    };

    /// <param name="value">a local path or an "owner/name" id.</param>
    /// <param name="flag">the flag it came from (for the message).</param>
    /// <param name="revision">--revision: a branch, tag or commit (default main).</param>
    /// <param name="split">a dataset's split: only its shards are fetched.</param>
    /// <param name="token">--hub_token; else HF_TOKEN or HUGGING_FACE_HUB_TOKEN.</param>
    public static string Resolve(string value, HubRepoType type, string flag, string? revision, IReadOnlyDictionary<string, string> env,
        string? split = null, string? token = null, TextWriter? log = null, HttpMessageHandler? handler = null)
    {
        if (File.Exists(value) || Directory.Exists(value) || !HubRepo.LooksLikeId(value)) return value;
        var repo = new HubRepo(value, type);
        var cache = HubCache.FromEnvironment(env);
        string rev = string.IsNullOrWhiteSpace(revision) ? "main" : revision;
        var needed = Needed(type, split);
        string what = type == HubRepoType.Model ? "files" : split is null ? "Parquet shards" : $"Parquet shards of the '{split}' split";
        // A dataset without Parquet shards on main is read from its Parquet conversion, cached under that branch.
        string[] revisions = type == HubRepoType.Dataset && revision is null ? [rev, ParquetBranch] : [rev];
        string? lacking = null;
        foreach (var candidate in revisions)
        {
            if (cache.Snapshot(repo, candidate) is not { } snapshot) continue;
            var shards = Directory.EnumerateFiles(snapshot, "*.parquet", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(snapshot, f).Replace(Path.DirectorySeparatorChar, '/')).ToList();
            if (type == HubRepoType.Model || shards.Any(needed)) return snapshot;
            lacking ??= $"{flag} {value}: the cached snapshot ({snapshot}) has no {what} (splits found: " +
                $"{string.Join(", ", shards.Select(f => Path.GetFileName(f).Split('-')[0]).Distinct().Order(StringComparer.Ordinal))}); HF_HUB_OFFLINE is set, so nothing is downloaded";
        }
        if (lacking is not null && Offline(env)) throw new HubException(lacking);
        if (Offline(env))
        {
            string download = type == HubRepoType.Model ? $"huggingface-cli download {value}" : $"huggingface-cli download --repo-type dataset {value}";
            throw new HubException($"{flag} {value}: no such local path, and the Hugging Face cache ({cache.Root}) has no {repo} at revision {rev}" +
                $"{(split is null ? "" : $" with split {split}")}; HF_HUB_OFFLINE is set, so nothing is downloaded: fetch it first ({download}" +
                $"{(rev == "main" ? "" : $" --revision {rev}")}), or point HF_HUB_CACHE / HF_HOME at the cache that holds it, or give a local folder");
        }
        string? Get(string name) => env.TryGetValue(name, out var v) && !string.IsNullOrWhiteSpace(v) ? v : null;
        var api = HubApi.Create(Get("HF_ENDPOINT") ?? HubApi.DefaultEndpoint, token ?? Get("HF_TOKEN") ?? Get("HUGGING_FACE_HUB_TOKEN"), handler);
        var downloader = new HubDownloader(api, cache, log ?? Console.Error);
        try
        {
            try { return downloader.SnapshotAsync(repo, rev, needed, what).GetAwaiter().GetResult(); }
            catch (HubException e) when (e.NoneNeeded && type == HubRepoType.Dataset && revision is null)
            {
                // What `datasets` does for a repo of CSV, JSON or audio folders: read the Hub's Parquet conversion of it.
                (log ?? Console.Error).WriteLine($"hub: {repo} has no {what} on main; reading its Parquet conversion ({ParquetBranch})");
                return downloader.SnapshotAsync(repo, ParquetBranch, needed, what).GetAwaiter().GetResult();
            }
        }
        catch (HubException e)
        {
            throw new HubException($"{flag} {value}: no such local path, so it was taken for a Hub id: {e.Message}");
        }
    }
}
