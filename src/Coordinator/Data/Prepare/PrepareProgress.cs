using System.Diagnostics;
using System.Globalization;

namespace Qwen3Tts.Coordinator.Data.Prepare;

/// <summary>Progress lines on stderr while records are encoded: records done/total, audio seconds encoded per wall
/// second, ETA. At most one line per <see cref="Interval"/> (a few seconds on a terminal, longer where the output goes to
/// a log file), so logs stay readable.</summary>
public sealed class PrepareProgress(TextWriter output, string label, int total, int alreadyDone, TimeSpan interval)
{
    readonly Stopwatch clock = Stopwatch.StartNew();
    TimeSpan lastPrint = TimeSpan.Zero;
    int done;
    double seconds;

    /// <summary>5 s on a terminal, 30 s when stderr is redirected (launchers, log files).</summary>
    public static TimeSpan DefaultInterval => Console.IsErrorRedirected ? TimeSpan.FromSeconds(30) : TimeSpan.FromSeconds(5);

    public TimeSpan Interval { get; } = interval;
    public int Done => alreadyDone + done;
    public double AudioSeconds => seconds;

    /// <summary>One more record finished, with <paramref name="audioSeconds"/> of audio.</summary>
    public void Advance(double audioSeconds)
    {
        done++;
        seconds += audioSeconds;
        if (clock.Elapsed - lastPrint >= Interval) Print();
    }

    /// <summary>The closing line (always printed).</summary>
    public void Finish() => Print();

    void Print()
    {
        lastPrint = clock.Elapsed;
        double wall = Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
        int left = total - Done;
        string eta = done == 0 ? "?" : Format(TimeSpan.FromSeconds(wall / done * left));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{label}: {Done}/{total} records ({100.0 * Done / Math.Max(total, 1):F1}%), {seconds:F1} s of audio at {seconds / wall:F2} s/s, ETA {eta}"));
        output.Flush();
    }

    static string Format(TimeSpan t) => t.TotalHours >= 1 ? $"{(int)t.TotalHours}:{t.Minutes:D2}:{t.Seconds:D2}" : $"{t.Minutes}:{t.Seconds:D2}";
}
