using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Rank.Training;

namespace Qwen3Tts.Rank;

static class RankMain
{
    /// <summary>Expected failures (bad flags, config, data, checkpoint) print one line naming what is wrong and exit 2.</summary>
    public static int Run(Func<int> body)
    {
        try { return body(); }
        catch (Exception e) when (e is ArgumentException or ConfigException or CheckpointException or DataException or AudioException
                                      or TrainingCheckpointException or FileNotFoundException or DirectoryNotFoundException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }
}
