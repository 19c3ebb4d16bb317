namespace Qwen3Tts.Entry;

/// <summary>The exit codes of every executable. 2 and 70 follow BSD sysexits in spirit: usage/data errors, internal software error.</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    /// <summary>A user error: a bad flag, file, record or config; one line on stderr names it.</summary>
    public const int UserError = 2;
    /// <summary>A bug in this program (EX_SOFTWARE): the stack trace is printed with a request to report it.</summary>
    public const int InternalError = 70;
}
