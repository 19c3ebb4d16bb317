using System.Runtime.CompilerServices;

namespace Qwen3Tts.Tests;

/// <summary>With QWEN3TTS_TEST_PEAK_FILE set (.ci/run sets it), the test host writes its peak resident memory
/// (VmHWM, KiB) there as it exits, so CI prints it every run and a regression shows. The test host is started by
/// vstest and may outlive its parent, so the launcher's rusage cannot be relied on to count it.</summary>
static class PeakMemoryReport
{
    public const string Variable = "QWEN3TTS_TEST_PEAK_FILE";

#pragma warning disable CA2255 // a test assembly is the program here: it is loaded by the test host alone
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        string? path = Environment.GetEnvironmentVariable(Variable);
        if (string.IsNullOrEmpty(path)) return;
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try { File.WriteAllText(path, $"{PeakKiB()}\n"); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        };
    }

    /// <summary>The process's peak resident set (VmHWM in /proc/self/status), in KiB.</summary>
    public static long PeakKiB() => Status("VmHWM:");

    /// <summary>The process's resident set now (VmRSS), in KiB.</summary>
    public static long ResidentKiB() => Status("VmRSS:");

    static long Status(string field)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field, StringComparison.Ordinal))
                return long.Parse(line[field.Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        throw new InvalidDataException($"/proc/self/status has no {field}");
    }
}
