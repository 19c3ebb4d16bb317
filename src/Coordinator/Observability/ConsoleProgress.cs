using System.Collections.Concurrent;
using System.Globalization;
using Spectre.Console;

namespace Qwen3Tts.Coordinator.Observability;

/// <summary>Rank 0's live progress display on a terminal (epoch, step/total, ETA, loss, lr, samples/s). Spectre.Console
/// renders it on its own thread; the training thread only sets numbers and queues log lines, which that thread prints
/// above the bar (a live display must own the console). Where stdout is redirected the trainer keeps its plain lines instead.</summary>
public sealed class ConsoleProgress : IDisposable
{
    readonly ConcurrentQueue<string> lines = new();
    readonly CancellationTokenSource done = new();
    readonly Task renderer;
    readonly object gate = new();
    long total = 1, step, startStep;
    string status = "starting";

    /// <summary>Whether a live display suits this process: rank 0 writing to a terminal.</summary>
    public static bool Suits(int rank) => Suits(rank, Console.IsOutputRedirected, Environment.GetEnvironmentVariable);

    /// <summary>Only for a person at a terminal. Launchers (mpiexec, srun) hand each rank a pseudo-terminal whose output
    /// ends up in log files, where redraws and ANSI codes are noise: under any launcher the plain lines are kept.</summary>
    public static bool Suits(int rank, bool outputRedirected, Func<string, string?> env) =>
        rank == 0 && !outputRedirected && env("TERM") is not (null or "" or "dumb")
        && LauncherVariables.All(name => string.IsNullOrEmpty(env(name)));

    static readonly string[] LauncherVariables =
        ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "SLURM_JOB_ID", "KUBERNETES_SERVICE_HOST", "JOB_COMPLETION_INDEX", "WORLD_SIZE"];

    public ConsoleProgress(IAnsiConsole? console = null)
    {
        var target = console ?? AnsiConsole.Console;
        renderer = Task.Factory.StartNew(() => target.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn { Width = 16 }, new PercentageColumn(),
                new RemainingTimeColumn()) // the ETA
            .Start(ctx =>
            {
                var task = ctx.AddTask("training", maxValue: 1);
                while (true)
                {
                    bool last = done.IsCancellationRequested;
                    while (lines.TryDequeue(out var line)) target.WriteLine(line);
                    lock (gate)
                    {
                        task.MaxValue = Math.Max(1, total - startStep);
                        task.Value = step - startStep;
                        task.Description = Markup.Escape(status);
                    }
                    ctx.Refresh();
                    if (last) break;
                    done.Token.WaitHandle.WaitOne(250);
                }
            }), TaskCreationOptions.LongRunning);
    }

    /// <summary>A log line, printed above the display.</summary>
    public void Line(string line) => lines.Enqueue(line);

    /// <summary>Where the run starts (a resumed run counts its ETA from here) and ends.</summary>
    public void Begin(long startStep, long totalSteps)
    {
        lock (gate) (this.startStep, step, total) = (startStep, startStep, totalSteps);
    }

    public void Step(int epoch, long step, double loss, double lr, double samplesPerSecond)
    {
        lock (gate)
            (this.step, status) = (step, string.Create(CultureInfo.InvariantCulture,
                $"epoch {epoch} step {step}/{total} loss {loss:F4} lr {lr:0.00E+0} {samplesPerSecond:F1} samples/s"));
    }

    /// <summary>Prints what is queued and leaves the display's last frame on screen.</summary>
    public void Dispose()
    {
        if (done.IsCancellationRequested) return;
        done.Cancel();
        renderer.Wait();
        done.Dispose();
    }
}
