using System.Text.RegularExpressions;
using Qwen3Tts.Model;

namespace Qwen3Tts.Entry.Hub;

/// <summary>What a Hugging Face Hub repo holds: the two kinds this program reads.</summary>
public enum HubRepoType
{
    Model,
    Dataset,
}

/// <summary>A Hub repo by id ("owner/name", as huggingface_hub accepts them) and kind.</summary>
public sealed partial record HubRepo(string Id, HubRepoType Type)
{
    /// <summary>Whether <paramref name="value"/> reads as a repo id rather than a path: owner/name, letters, digits,
    /// '-', '_' and '.', neither part starting or ending with '.' or '-', no "--" or "..".</summary>
    public static bool LooksLikeId(string value) => IdPattern().IsMatch(value) && !value.Contains("--", StringComparison.Ordinal) && !value.Contains("..", StringComparison.Ordinal);

    /// <summary>huggingface_hub's cache folder name: "models--owner--name" or "datasets--owner--name".</summary>
    public string CacheFolder => $"{(Type == HubRepoType.Model ? "models" : "datasets")}--{Id.Replace("/", "--", StringComparison.Ordinal)}";

    public override string ToString() => Type == HubRepoType.Model ? Id : $"dataset {Id}";

    [GeneratedRegex(@"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?/[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$")]
    private static partial Regex IdPattern();
}

/// <summary>The Hugging Face cache shared with Python (huggingface_hub's layout), read without any request:
/// <code>
///   {cache}/models--owner--name/refs/{revision}            the commit a branch or tag points to
///   {cache}/models--owner--name/snapshots/{commit}/{path}  each file, a link to ../../blobs/{etag}
///   {cache}/models--owner--name/blobs/{etag}               the content
/// </code>
/// The cache is HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE (its older name), else HF_HOME/hub, else
/// XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub: where huggingface_hub looks.</summary>
public sealed partial class HubCache(string root)
{
    public string Root { get; } = root;

    /// <summary>The cache folder huggingface_hub would use with this environment.</summary>
    public static HubCache FromEnvironment(IReadOnlyDictionary<string, string> env)
    {
        string? Get(string name) => env.TryGetValue(name, out var v) && !string.IsNullOrWhiteSpace(v) ? Home(v) : null;
        string root = Get("HF_HUB_CACHE") ?? Get("HUGGINGFACE_HUB_CACHE") ?? (Get("HF_HOME") is { } home ? Path.Combine(home, "hub")
            : Path.Combine(Get("XDG_CACHE_HOME") ?? Home("~/.cache"), "huggingface", "hub"));
        return new HubCache(Path.GetFullPath(root));
    }

    /// <summary>A leading "~" as the user's home (Python's expanduser).</summary>
    static string Home(string path)
    {
        if (path != "~" && !path.StartsWith("~/", StringComparison.Ordinal)) return path;
        string home = Environment.GetEnvironmentVariable("HOME") is { Length: > 0 } h ? h : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return home + path[1..];
    }

    /// <summary>The snapshot folder of <paramref name="repo"/> at <paramref name="revision"/> (a commit hash, or a branch or
    /// tag through refs/), or null when the cache does not hold it.</summary>
    public string? Snapshot(HubRepo repo, string revision)
    {
        string repoDir = Path.Combine(Root, repo.CacheFolder);
        string commit = revision;
        if (!CommitPattern().IsMatch(revision))
        {
            // refs/{revision}: a branch ("main"), a tag, or "refs/convert/parquet" (the datasets server's Parquet branch).
            string refFile = Path.Combine(repoDir, "refs", revision.Replace('/', Path.DirectorySeparatorChar));
            if (!File.Exists(refFile)) return null;
            commit = File.ReadAllText(refFile).Trim();
            if (!CommitPattern().IsMatch(commit)) throw new HubException($"{refFile}: not a commit hash ('{commit}'); the cache entry is damaged: delete {repoDir} and download again");
        }
        string snapshot = Path.Combine(repoDir, "snapshots", commit);
        return Directory.Exists(snapshot) ? snapshot : null;
    }

    [GeneratedRegex("^[0-9a-f]{40}$")]
    private static partial Regex CommitPattern();
}

/// <summary>A Hub id that cannot be resolved, or a damaged cache: the message names the repo, the revision, the cache
/// folder and what to do.</summary>
public sealed class HubException(string message) : UserInputException(message)
{
    /// <summary>The repo exists at the revision but holds none of the files asked for (a dataset without Parquet shards on
    /// main: its Parquet conversion is on refs/convert/parquet).</summary>
    public bool NoneNeeded { get; init; }
}
