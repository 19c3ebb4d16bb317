namespace Qwen3Tts.Cli.Commands;

static class Cli
{
    /// <summary>Runs a command body. What it throws reaches the shared top level (Qwen3Tts.Entry.EntryPoint): a user
    /// error prints one line naming what is wrong and exits 2, a bug exits 70 with its trace.</summary>
    public static int Run(Func<int> body) => body();
}
