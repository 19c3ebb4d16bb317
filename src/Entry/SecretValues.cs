using System.Collections;

namespace Qwen3Tts.Entry;

/// <summary>The values that must never be written where they could travel (checkpoints, model cards, Hub uploads, logs):
/// those of secret-looking environment variables (WANDB_API_KEY, HF_TOKEN, QWEN3TTS_COORDINATOR_TOKEN, ...), and any
/// given explicitly (a --hub_token).</summary>
public static class SecretValues
{
    static readonly string[] SecretNameParts = ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"];

    /// <summary>Shorter values are too likely to occur by chance (and too weak to be real keys).</summary>
    public const int MinLength = 8;

    /// <summary>(variable name, value) for each secret-looking variable of this process, then each extra value (named "--hub_token" etc.).</summary>
    public static IReadOnlyList<(string Name, string Value)> Current(params (string Name, string? Value)[] extra)
    {
        var found = new List<(string, string)>();
        foreach (DictionaryEntry e in Environment.GetEnvironmentVariables())
        {
            string name = (string)e.Key, value = e.Value as string ?? "";
            if (value.Length >= MinLength && SecretNameParts.Any(p => name.Contains(p, StringComparison.OrdinalIgnoreCase))) found.Add((name, value));
        }
        foreach (var (name, value) in extra)
            if (value is { Length: >= MinLength }) found.Add((name, value));
        return found;
    }

    /// <summary>Flags whose value is a secret: left out of any command line this program writes down.</summary>
    static readonly string[] SecretFlags = ["--hub_token", "--hub-token", "--coordinator_token", "--coordinator-token"];

    /// <summary><paramref name="args"/> as one shell line to show or keep (a model card, a run summary): secret flags and
    /// their values left out, any other argument holding a secret value replaced by ***.</summary>
    public static string CommandLine(string program, IReadOnlyList<string> args, IReadOnlyList<(string Name, string Value)> secrets)
    {
        var kept = new List<string> { program };
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            if (SecretFlags.Contains(arg)) { i++; continue; }
            if (SecretFlags.Any(f => arg.StartsWith(f + "=", StringComparison.Ordinal))) continue;
            kept.Add(FoundIn(arg, secrets) is null ? Quote(arg) : "***");
        }
        return string.Join(' ', kept);
    }

    static string Quote(string arg) => arg.Length > 0 && arg.All(c => char.IsAsciiLetterOrDigit(c) || "-_./=:,@+".Contains(c)) ? arg : $"'{arg.Replace("'", "'\\''", StringComparison.Ordinal)}'";

    /// <summary>The name of the first secret <paramref name="text"/> contains, or null.</summary>
    public static string? FoundIn(string text, IReadOnlyList<(string Name, string Value)> secrets) =>
        secrets.FirstOrDefault(s => text.Contains(s.Value, StringComparison.Ordinal)).Name;
}
