using System.Diagnostics;

namespace Qwen3Tts.Tests.Entry;

/// <summary>Runs a built executable (dotnet DLL) as a user would, with a time limit: past it the process tree is killed
/// and the test fails naming the command, so a hang never holds the suite.</summary>
static class Executables
{
    public sealed record Result(int Exit, string Stdout, string Stderr)
    {
        /// <summary>The highest resident memory the watchdog saw (bytes; 0 when not watched).</summary>
        public long PeakResidentBytes { get; init; }

        public string[] ErrorLines => Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToArray();
    }

    public static Result Run(string dll, IEnumerable<string> args, IReadOnlyDictionary<string, string>? env = null, TimeSpan? timeout = null,
        long? maxResidentBytes = null)
    {
        Assert.True(File.Exists(dll), $"not built: {dll}");
        return RunProcess("dotnet", [dll, .. args], env, timeout ?? TimeSpan.FromMinutes(2), maxResidentBytes);
    }

    /// <param name="maxResidentBytes">a memory watchdog: the process's resident memory is sampled every 20 ms on a thread
    /// of its own, and past this the process is killed and the test fails (a runaway allocation never reaches the machine).</param>
    public static Result RunProcess(string file, IEnumerable<string> args, IReadOnlyDictionary<string, string>? env, TimeSpan timeout,
        long? maxResidentBytes = null)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        // Alone, never a rank of someone else's job: no launcher variables leak in from the test host.
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("OMPI_") || k.StartsWith("PMI") || k.StartsWith("SLURM_")
                     || k is "RANK" or "WORLD_SIZE" or "LOCAL_RANK" or "QWEN3TTS_DEBUG" or "QWEN3TTS_SIMULATE_INTERNAL_ERROR").ToList())
            start.Environment.Remove(key);
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) start.Environment[k] = v;
        using var process = Process.Start(start)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        long peak = 0;
        bool overLimit = false;
        var watchdog = maxResidentBytes is not long limit ? null : new Thread(() =>
        {
            while (!process.HasExited)
            {
                long rss = ResidentBytes(process.Id);
                peak = Math.Max(peak, rss);
                if (rss > limit)
                {
                    overLimit = true;
                    try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                    return;
                }
                Thread.Sleep(20);
            }
        }) { IsBackground = true };
        watchdog?.Start();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {string.Join(' ', args)} did not exit within {timeout.TotalSeconds} s");
        }
        process.WaitForExit();
        watchdog?.Join();
        Assert.False(overLimit, $"{file} {string.Join(' ', args)}: killed by the watchdog past {maxResidentBytes / (1 << 20)} MB resident");
        return new Result(process.ExitCode, stdout.Result, stderr.Result) { PeakResidentBytes = peak };
    }

    /// <summary>VmRSS of a live process (0 once it is gone).</summary>
    static long ResidentBytes(int pid)
    {
        try
        {
            foreach (string line in File.ReadLines($"/proc/{pid}/status"))
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException) { }
        return 0;
    }

    /// <summary>No line of a .NET stack trace ("   at Namespace.Type.Method(...)").</summary>
    public static void AssertNoStackTrace(Result r) =>
        Assert.DoesNotContain(r.ErrorLines.Concat(r.Stdout.Split('\n')), l => l.TrimStart().StartsWith("at ", StringComparison.Ordinal) && l.Contains('('));

    /// <summary>A user error: exit 2, the one line first, then at most a usage hint, and no trace.</summary>
    public static void AssertUserError(Result r, string expectedLine)
    {
        Assert.True(r.Exit == 2, $"exit {r.Exit}, stderr:\n{r.Stderr}\nstdout:\n{r.Stdout}");
        Assert.Equal(expectedLine, r.ErrorLines.FirstOrDefault());
        Assert.True(r.ErrorLines.Length == 1 || r.ErrorLines.Length == 2 && r.ErrorLines[1].StartsWith("usage: ", StringComparison.Ordinal),
            $"more than the error and a usage hint:\n{r.Stderr}");
        AssertNoStackTrace(r);
        Assert.DoesNotContain("Description:", r.Stdout); // not the whole help
    }
}
