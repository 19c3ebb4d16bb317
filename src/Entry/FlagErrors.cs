using System.CommandLine;
using System.CommandLine.Parsing;

namespace Qwen3Tts.Entry;

/// <summary>Parse errors in words: the flag, the value given and what was expected ("--batch_size: 'abc' is not a
/// whole number"), the nearest known flag or command for an unknown one, and a one-line usage hint instead of the
/// whole help.</summary>
public static class FlagErrors
{
    public static IReadOnlyList<string> Describe(ParseResult parse)
    {
        var lines = new List<string>();
        var command = parse.CommandResult.Command;
        bool afterUnknownFlag = false;
        foreach (string token in parse.UnmatchedTokens)
        {
            if (lines.Count == 1 && lines[0].StartsWith("unknown command", StringComparison.Ordinal)) break; // the rest were its flags
            if (token.StartsWith('-'))
            {
                lines.Add($"unknown flag '{token}'" + Suggest(token, KnownFlags(parse.CommandResult)));
                afterUnknownFlag = true;
            }
            else if (afterUnknownFlag) afterUnknownFlag = false; // the unknown flag's value, not a second error
            else if (command.Subcommands.Count > 0 && parse.Tokens.Count > 0 && parse.Tokens[0].Value == token)
                lines.Add($"unknown command '{token}'" + Suggest(token, command.Subcommands.Select(c => c.Name)));
            else lines.Add($"unexpected argument '{token}'");
        }
        foreach (var error in parse.Errors)
        {
            string? line = error.SymbolResult switch
            {
                OptionResult option => DescribeOption(option, error.Message),
                ArgumentResult { Parent: OptionResult option } => DescribeOption(option, error.Message),
                ArgumentResult argument => $"<{argument.Argument.Name}>: {error.Message}",
                CommandResult c when c.Command.Subcommands.Count > 0 && error.Message.StartsWith("Required command", StringComparison.Ordinal) =>
                    lines.Any(l => l.StartsWith("unknown command", StringComparison.Ordinal)) ? null :
                    $"a command is required: {string.Join(", ", c.Command.Subcommands.Where(s => !s.Hidden).Select(s => s.Name))}",
                CommandResult when error.Message.StartsWith("Unrecognized command or argument", StringComparison.Ordinal) => null, // above
                _ => error.Message,
            };
            if (line is not null && !lines.Contains(line)) lines.Add(line);
        }
        return lines;
    }

    /// <summary>"usage: qwen3tts synthesize [flags]; 'qwen3tts synthesize --help' lists them".</summary>
    public static string UsageHint(ParseResult parse)
    {
        var names = new List<string>();
        for (SymbolResult? s = parse.CommandResult; s is not null; s = s.Parent)
            if (s is CommandResult c) names.Insert(0, c.Command.Name);
        string path = string.Join(' ', names);
        var command = parse.CommandResult.Command;
        string rest = command.Subcommands.Count > 0 && command.Action is null ? " <command>" : "";
        return $"usage: {path}{rest} [flags]; '{path} --help' lists them";
    }

    static string DescribeOption(OptionResult result, string message)
    {
        var option = result.Option;
        if (message.StartsWith("Cannot parse argument", StringComparison.Ordinal))
            return $"{option.Name}: '{string.Join(" ", result.Tokens.Select(t => t.Value))}' is {Expected(option.ValueType)}";
        if (message.StartsWith("Required argument missing", StringComparison.Ordinal))
            return $"{option.Name}: expects a value ({Expected(option.ValueType)[4..]})";
        if (message.EndsWith("is required.", StringComparison.Ordinal)) return $"{option.Name} is required";
        return $"{option.Name}: {message}"; // a validator's own words (e.g. an output path that cannot be written)
    }

    /// <summary>"not a whole number", "not a number", ... for the flag's value type.</summary>
    public static string Expected(Type valueType)
    {
        var type = Nullable.GetUnderlyingType(valueType) ?? valueType;
        if (type.IsArray) type = type.GetElementType()!;
        if (type == typeof(int) || type == typeof(long) || type == typeof(short) || type == typeof(uint) || type == typeof(ulong))
            return "not a whole number";
        if (type == typeof(double) || type == typeof(float) || type == typeof(decimal)) return "not a number";
        if (type == typeof(bool)) return "not true or false";
        if (type.IsEnum) return $"not one of: {string.Join(", ", Enum.GetNames(type).Select(n => n.ToLowerInvariant()))}";
        return $"not a valid {type.Name}";
    }

    static IEnumerable<string> KnownFlags(CommandResult result)
    {
        foreach (var option in result.Command.Options)
            foreach (string name in option.Aliases.Prepend(option.Name)) yield return name;
        // Recursive options of the commands above (--debug, --help) apply here too.
        for (var parent = result.Parent as CommandResult; parent is not null; parent = parent.Parent as CommandResult)
            foreach (var option in parent.Command.Options.Where(o => o.Recursive))
                foreach (string name in option.Aliases.Prepend(option.Name)) yield return name;
    }

    /// <summary>"; did you mean --batch_size?" when a known name is within a few edits (case, '-' and '_' ignored).</summary>
    public static string Suggest(string given, IEnumerable<string> known)
    {
        string Normal(string s) => s.TrimStart('-').Replace('-', '_').ToLowerInvariant();
        string g = Normal(given);
        // A few edits away, or the start of a longer name (--heartbeat for --heartbeat_timeout): a prefix costs nothing
        // but ranks after any near spelling.
        int Distance(string k) => Normal(k).StartsWith(g, StringComparison.Ordinal) && g.Length >= 3 ? Math.Max(2, g.Length / 3) : Levenshtein(g, Normal(k));
        var best = known.Distinct()
            .Select(k => (name: k, distance: Distance(k)))
            .Where(c => c.distance <= Math.Max(2, g.Length / 3))
            .OrderBy(c => c.distance).ThenBy(c => c.name.Contains('_') ? 0 : 1).ThenBy(c => c.name, StringComparer.Ordinal)
            .FirstOrDefault();
        return best.name is null ? "" : $"; did you mean {best.name}?";
    }

    static int Levenshtein(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) previous[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (int j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (previous, current) = (current, previous);
        }
        return previous[b.Length];
    }
}
