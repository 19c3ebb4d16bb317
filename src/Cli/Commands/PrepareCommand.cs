using System.CommandLine;

namespace Qwen3Tts.Cli.Commands;

/// <summary><c>qwen3tts prepare --input SRC --output DST --model DIR</c>: raw speech to training records in this one
/// process (the logic, shared with <c>mpiexec -n N qwen3tts-rank prepare</c>, is Qwen3Tts.Rank.Prepare).</summary>
public static class PrepareCommand
{
    public static Command Create() => Rank.Prepare.PrepareCommand.Create(Rank.Prepare.PrepareCommand.SingleProcess);
}
