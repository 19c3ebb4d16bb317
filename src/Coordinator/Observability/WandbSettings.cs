using System.Text;

namespace Qwen3Tts.Coordinator.Observability;

/// <summary>online: send while training; offline: write the run folder only (upload later with
/// <see cref="WandbSync"/>); disabled: do nothing.</summary>
public enum WandbMode { Online, Offline, Disabled }

/// <summary>The command-line flags that touch WandB (<c>--use_wandb</c>, <c>--wandb_project</c>,
/// <c>--wandb_run_name</c>); flags win over the environment.</summary>
public sealed record WandbFlags(bool UseWandb = false, string? Project = null, string? RunName = null);

/// <summary>Every environment variable the WandB sink reads, in one place (the official client's names).</summary>
public static class WandbEnv
{
    public const string ApiKey = "WANDB_API_KEY";
    public const string Project = "WANDB_PROJECT";
    public const string Entity = "WANDB_ENTITY";
    /// <summary>online | offline | disabled (the client's aliases run / dryrun are accepted).</summary>
    public const string Mode = "WANDB_MODE";
    /// <summary>Legacy switch: true turns WandB off like WANDB_MODE=disabled.</summary>
    public const string Disabled = "WANDB_DISABLED";
    public const string BaseUrl = "WANDB_BASE_URL";
    /// <summary>The run id (the <c>name</c> of the bucket); by default the run folder's or a fresh random one.</summary>
    public const string RunId = "WANDB_RUN_ID";
    /// <summary>The display name shown in the UI.</summary>
    public const string Name = "WANDB_NAME";
    public const string RunGroup = "WANDB_RUN_GROUP";
    /// <summary>Comma-separated.</summary>
    public const string Tags = "WANDB_TAGS";
    public const string Notes = "WANDB_NOTES";
    public const string JobType = "WANDB_JOB_TYPE";
}

/// <summary>Where and how a run reports to WandB. <see cref="ApiKey"/> is a secret: it never appears in
/// <see cref="ToString"/>, and <see cref="Scrub"/> removes it from any text before that text is written anywhere.</summary>
public sealed record WandbSettings
{
    public const string DefaultBaseUrl = "https://api.wandb.ai";
    public const string DefaultProject = "qwen3-tts";

    public WandbMode Mode { get; init; } = WandbMode.Disabled;
    public string? ApiKey { get; init; }
    public string Project { get; init; } = DefaultProject;
    /// <summary>Team or user; null lets the server use the key owner's default entity.</summary>
    public string? Entity { get; init; }
    public string BaseUrl { get; init; } = DefaultBaseUrl;
    public string? RunId { get; init; }
    public string? DisplayName { get; init; }
    public string? Group { get; init; }
    public IReadOnlyList<string> Tags { get; init; } = [];
    public string? Notes { get; init; }
    public string? JobType { get; init; }

    public static readonly WandbSettings Disabled = new();

    /// <summary>The settings that <paramref name="env"/> and <paramref name="flags"/> ask for. Pure: the caller passes
    /// the environment (e.g. a snapshot of it). Throws <see cref="ArgumentException"/> naming the variable and the fix
    /// when they contradict each other or are malformed.</summary>
    public static WandbSettings Resolve(IReadOnlyDictionary<string, string> env, WandbFlags flags)
    {
        string? Get(string name) => env.TryGetValue(name, out var v) && !string.IsNullOrWhiteSpace(v) ? v.Trim() : null;

        var mode = ParseMode(Get(WandbEnv.Mode));
        if (!flags.UseWandb || IsTrue(Get(WandbEnv.Disabled))) mode = WandbMode.Disabled;

        var key = Get(WandbEnv.ApiKey);
        if (mode == WandbMode.Online && key is null)
            throw new ArgumentException(
                $"--use_wandb needs {WandbEnv.ApiKey} (from https://wandb.ai/authorize) to send metrics; set it, " +
                $"or set {WandbEnv.Mode}=offline to keep them in the run folder and upload later with `qwen3tts wandb-sync DIR`");

        var baseUrl = (Get(WandbEnv.BaseUrl) ?? DefaultBaseUrl).TrimEnd('/');
        if (!Uri.TryCreate(baseUrl, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            throw new ArgumentException($"{WandbEnv.BaseUrl}='{baseUrl}' is not an http(s) URL; unset it to use {DefaultBaseUrl}");

        return new WandbSettings
        {
            Mode = mode,
            ApiKey = key,
            Project = NonEmpty(flags.Project) ?? Get(WandbEnv.Project) ?? DefaultProject,
            Entity = Get(WandbEnv.Entity),
            BaseUrl = baseUrl,
            RunId = Get(WandbEnv.RunId),
            DisplayName = NonEmpty(flags.RunName) ?? Get(WandbEnv.Name),
            Group = Get(WandbEnv.RunGroup),
            Tags = (Get(WandbEnv.Tags) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
            Notes = Get(WandbEnv.Notes),
            JobType = Get(WandbEnv.JobType),
        };
    }

    static WandbMode ParseMode(string? value) => value?.ToLowerInvariant() switch
    {
        null or "online" or "run" => WandbMode.Online,
        "offline" or "dryrun" => WandbMode.Offline,
        "disabled" => WandbMode.Disabled,
        _ => throw new ArgumentException($"{WandbEnv.Mode}='{value}' is not one of online, offline, disabled"),
    };

    static bool IsTrue(string? value) => value is not null && (value == "1" || value.Equals("true", StringComparison.OrdinalIgnoreCase));
    static string? NonEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();

    /// <summary><paramref name="text"/> with the key, and the Basic credential made from it, replaced by ***.</summary>
    public string Scrub(string text) => WandbSecret.Scrub(text, ApiKey);

    // The record's generated ToString prints every property; this keeps the key out of it.
    bool PrintMembers(StringBuilder builder)
    {
        builder.Append($"Mode = {Mode}, ApiKey = {(ApiKey is null ? "(none)" : "***")}, Project = {Project}, Entity = {Entity}, ");
        builder.Append($"BaseUrl = {BaseUrl}, RunId = {RunId}, DisplayName = {DisplayName}, Group = {Group}, ");
        builder.Append($"Tags = [{string.Join(", ", Tags)}], Notes = {Notes}, JobType = {JobType}");
        return true;
    }
}

/// <summary>Removes the API key from text that leaves the process (logs, exception messages, files).</summary>
static class WandbSecret
{
    public static string BasicCredential(string key) => Convert.ToBase64String(Encoding.UTF8.GetBytes("api:" + key));

    public static string Scrub(string text, string? key)
    {
        if (string.IsNullOrEmpty(key) || string.IsNullOrEmpty(text)) return text;
        return text.Replace(key, "***", StringComparison.Ordinal).Replace(BasicCredential(key), "***", StringComparison.Ordinal);
    }
}
