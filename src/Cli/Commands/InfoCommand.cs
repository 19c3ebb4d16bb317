using System.CommandLine;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;

namespace Qwen3Tts.Cli.Commands;

public static class InfoCommand
{
    public static Command Create()
    {
        var path = new Argument<string>("PATH") { Description = "a JSONL file, a Parquet file or a folder of Parquet shards" };
        var split = new Option<string?>("--split") { Description = "for a folder of shards: the split to read (train, validation, test)" };
        var json = new Option<bool>("--json") { Description = "print the numbers as JSON" };
        var model = new Option<string?>("--model")
        {
            Description = "check codes against this model's code ranges (a model folder, its config.json, or a preset); default: the speech tokenizer's 16 x 2048",
        };
        var command = new Command("info", "Count, languages, speakers, durations and the code-length histogram of a training dataset.") { path, split, json, model };
        command.SetAction(parse =>
        {
            CodeBounds? bounds = null;
            if (parse.GetValue(model) is { } spec)
            {
                var (config, source, _, _) = ModelDirectory.ResolveConfig(spec);
                bounds = CodeBounds.Of(Qwen3TtsConfig.Parse(config, source).Talker);
            }
            var info = DatasetInfo.Compute(parse.GetValue(path)!, parse.GetValue(split), bounds);
            Console.WriteLine(parse.GetValue(json) ? info.ToJson() : info.ToText());
            return 0;
        });
        return command;
    }
}
