using System.Text.Json;
using Qwen3Tts.Model;

namespace Qwen3Tts.Entry;

/// <summary>How a failure reaches the user: a user error as <c>error: &lt;file or flag&gt;: &lt;what&gt;</c> and exit 2,
/// anything else as a bug (exit 70, "please report" and the trace). The trace of a user error only under --debug.</summary>
public static class ErrorReport
{
    public const string DebugEnvironmentVariable = "QWEN3TTS_DEBUG";

    /// <summary>Errors in what the user gave or in the environment (a missing, unreadable or malformed file), whose
    /// messages name what is wrong. ArgumentException is this codebase's refusal of a bad value (the BCL's own
    /// argument checks fire only on bugs, which the messages then show).</summary>
    public static bool IsUserError(Exception e) => e switch
    {
        AggregateException { InnerExceptions.Count: 1 } a => IsUserError(a.InnerException!),
        UserInputException or IOException or UnauthorizedAccessException or InvalidDataException or JsonException
            or FormatException or ArgumentException => true,
        _ => false,
    };

    /// <summary>Prints <paramref name="e"/> and returns the exit code. <paramref name="who"/> (e.g. "rank 1 of 2")
    /// prefixes the line so a multi-rank job says which process found it.</summary>
    public static int Report(Exception e, TextWriter error, bool debug, string? who = null)
    {
        if (e is AggregateException { InnerExceptions.Count: 1 } a) e = a.InnerException!;
        string prefix = who is null ? "error: " : $"error: {who}: ";
        if (IsUserError(e))
        {
            error.WriteLine(prefix + OneLine(e.Message));
            if (e is UserInputException input)
                foreach (string detail in input.Details) error.WriteLine("  " + OneLine(detail));
            if (debug) error.WriteLine(e.ToString());
            error.Flush();
            return ExitCodes.UserError;
        }
        error.WriteLine($"{prefix}internal error (a bug; please report it with the lines below): {e.GetType().Name}: {OneLine(e.Message)}");
        error.WriteLine(e.ToString());
        error.Flush();
        return ExitCodes.InternalError;
    }

    /// <summary>Whether --debug is among the arguments or QWEN3TTS_DEBUG is set (for failures before parsing).</summary>
    public static bool DebugRequested(IEnumerable<string> args) =>
        args.Contains("--debug") || Environment.GetEnvironmentVariable(DebugEnvironmentVariable) is { Length: > 0 } v && v != "0";

    /// <summary>One line, whatever the message held (a message spanning lines would read like several errors).</summary>
    static string OneLine(string message) => string.Join("; ", message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
