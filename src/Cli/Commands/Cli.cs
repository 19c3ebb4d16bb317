using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;

namespace Qwen3Tts.Cli.Commands;

static class Cli
{
    /// <summary>Runs a command body; expected failures (bad config, bad checkpoint, bad input) print one
    /// line naming what is wrong and exit 2 instead of a stack trace.</summary>
    public static int Run(Func<int> body)
    {
        try { return body(); }
        catch (Exception e) when (e is ConfigException or CheckpointException or IOException or ArgumentException or InvalidDataException
                                      or Qwen3Tts.Coordinator.Data.DataException or Qwen3Tts.Model.Audio.AudioException
                                      or Qwen3Tts.Coordinator.Observability.WandbException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }
}
