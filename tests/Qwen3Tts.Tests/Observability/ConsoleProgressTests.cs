using Qwen3Tts.Coordinator.Observability;

namespace Qwen3Tts.Tests.Observability;

public class ConsoleProgressTests
{
    static Func<string, string?> Env(params (string Name, string Value)[] vars) =>
        name => vars.FirstOrDefault(v => v.Name == name).Value;

    [Fact]
    public void The_live_display_is_only_for_rank_0_at_a_real_terminal()
    {
        Assert.True(ConsoleProgress.Suits(0, outputRedirected: false, Env(("TERM", "xterm-256color"))));
        Assert.False(ConsoleProgress.Suits(1, false, Env(("TERM", "xterm"))));
        Assert.False(ConsoleProgress.Suits(0, outputRedirected: true, Env(("TERM", "xterm"))));
        Assert.False(ConsoleProgress.Suits(0, false, Env(("TERM", "dumb"))));
        // mpiexec and srun give ranks a pseudo-terminal that ends in a log file: plain lines there.
        Assert.False(ConsoleProgress.Suits(0, false, Env(("TERM", "xterm"), ("OMPI_COMM_WORLD_SIZE", "2"))));
        Assert.False(ConsoleProgress.Suits(0, false, Env(("TERM", "xterm"), ("SLURM_JOB_ID", "17"))));
        Assert.False(ConsoleProgress.Suits(0, false, Env(("TERM", "xterm"), ("PMI_SIZE", "2"))));
    }
}
