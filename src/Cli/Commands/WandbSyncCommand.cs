using System.CommandLine;
using Qwen3Tts.Coordinator.Observability;

namespace Qwen3Tts.Cli.Commands;

public static class WandbSyncCommand
{
    public static Command Create()
    {
        var dir = new Argument<string>("DIR") { Description = "a run's output folder (or its wandb/ folder) holding rows not yet uploaded" };
        var command = new Command("wandb-sync", "Upload the WandB rows a run kept locally (offline mode, or while WandB was unreachable). Reads WANDB_API_KEY.") { dir };
        command.SetAction(parse =>
        {
            var env = new Dictionary<string, string>(Qwen3Tts.Rank.Distributed.EnvVars.Snapshot()) { [WandbEnv.Mode] = "online" };
            var settings = WandbSettings.Resolve(env, new WandbFlags(UseWandb: true));
            var result = WandbSync.Run(parse.GetValue(dir)!, settings, Console.Error);
            Console.WriteLine(result);
            return result.Completed ? 0 : 1;
        });
        return command;
    }
}
