using System.CommandLine;
using System.CommandLine.Invocation;
using System.Runtime.InteropServices;

namespace Qwen3Tts.Entry;

/// <summary>The top level shared by every executable: parse, print flag errors in words (exit 2), run the command,
/// and turn what escapes it into one line (user error, exit 2) or a bug report (exit 70). <c>--debug</c> (or
/// QWEN3TTS_DEBUG=1) adds the stack trace to user errors.</summary>
public static class EntryPoint
{
    public static readonly Option<bool> Debug = new("--debug")
    {
        Description = "print the stack trace with an error (also: QWEN3TTS_DEBUG=1)",
        Recursive = true,
    };

    /// <summary>Whether this process should print errors found before its rank is known: the launcher's rank
    /// variables say whether it is rank 0 (every rank parses the same flags, so one report is enough).</summary>
    public static Func<bool> PrintsSharedErrors { get; set; } = () => true;

    /// <summary>Set to 1, the command throws a bug-class exception instead of running: how the tests reach the
    /// exit-70 report through the built executables without a real bug.</summary>
    public const string SimulateBugVariable = "QWEN3TTS_SIMULATE_INTERNAL_ERROR";

    /// <summary><paramref name="beforeRun"/> runs once the flags have parsed, just before the command (process set-up a
    /// flag error or --help need not pay for, such as loading libtorch).</summary>
    public static int Invoke(RootCommand root, string[] args, Action? beforeRun = null) =>
        InvokeAsync(root, args, beforeRun: beforeRun).GetAwaiter().GetResult();

    /// <summary>With <paramref name="cancelOnSignal"/> (a long-running async service), the first SIGINT or SIGTERM
    /// cancels the action's token so it can shut down cleanly; otherwise signals keep their default (end the process).</summary>
    public static async Task<int> InvokeAsync(RootCommand root, string[] args, bool cancelOnSignal = false, Action? beforeRun = null)
    {
        PlainConsole.Install();
        if (!root.Options.Contains(Debug)) root.Options.Add(Debug);
        using var cancel = new CancellationTokenSource();
        using var sigint = cancelOnSignal ? PosixSignalRegistration.Create(PosixSignal.SIGINT, c => CancelOnce(c, cancel)) : null;
        using var sigterm = cancelOnSignal ? PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => CancelOnce(c, cancel)) : null;
        bool debug = ErrorReport.DebugRequested(args);
        try
        {
            var parse = root.Parse(args);
            if (parse.Errors.Count > 0 && parse.Action is ParseErrorAction)
            {
                if (PrintsSharedErrors())
                {
                    foreach (string line in FlagErrors.Describe(parse)) Console.Error.WriteLine($"error: {line}");
                    Console.Error.WriteLine(FlagErrors.UsageHint(parse));
                }
                return ExitCodes.UserError;
            }
            ThrowIfSimulatedBug();
            beforeRun?.Invoke();
            // No ProcessTerminationTimeout: it hooks Console.CancelKeyPress, which sets up the terminal and writes
            // keypad escape codes into output that a launcher's pseudo-terminal carries to the logs.
            return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null }, cancel.Token);
        }
        catch (Exception e)
        {
            return ErrorReport.Report(e, Console.Error, debug);
        }
    }

    static void CancelOnce(PosixSignalContext context, CancellationTokenSource cancel)
    {
        if (cancel.IsCancellationRequested) return; // a second signal ends the process
        context.Cancel = true;
        cancel.Cancel();
    }

    /// <summary>For an executable without a parser (the benchmarks): runs <paramref name="body"/> under the same
    /// reporting; --debug is taken out of the arguments.</summary>
    public static int Guard(string[] args, Func<string[], int> body, Action? beforeRun = null)
    {
        PlainConsole.Install();
        bool debug = ErrorReport.DebugRequested(args);
        try
        {
            ThrowIfSimulatedBug();
            beforeRun?.Invoke();
            return body(args.Where(a => a != "--debug").ToArray());
        }
        catch (Exception e) { return ErrorReport.Report(e, Console.Error, debug); }
    }

    static void ThrowIfSimulatedBug()
    {
        if (Environment.GetEnvironmentVariable(SimulateBugVariable) == "1")
            throw new InvalidOperationException($"{SimulateBugVariable}=1: a simulated internal error");
    }
}
