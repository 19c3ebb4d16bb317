using System.CommandLine;
using Qwen3Tts.Coordinator.Data;

namespace Qwen3Tts.Cli.Commands;

public static class InfoCommand
{
    public static Command Create()
    {
        var path = new Argument<string>("PATH") { Description = "a JSONL file, a Parquet file or a folder of Parquet shards" };
        var split = new Option<string?>("--split") { Description = "for a folder of shards: the split to read (train, validation, test)" };
        var json = new Option<bool>("--json") { Description = "print the numbers as JSON" };
        var command = new Command("info", "Count, languages, speakers, durations and the code-length histogram of a training dataset.") { path, split, json };
        command.SetAction(parse => Cli.Run(() =>
        {
            var info = DatasetInfo.Compute(parse.GetValue(path)!, parse.GetValue(split));
            Console.WriteLine(parse.GetValue(json) ? info.ToJson() : info.ToText());
            return 0;
        }));
        return command;
    }
}
