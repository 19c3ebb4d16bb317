using Qwen3Tts.Entry;
using System.CommandLine;
using Qwen3Tts.Model;
using static TorchSharp.torch;

namespace Qwen3Tts.Cli.Commands;

public static class InitModelCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config")
        {
            Description = "tiny, 0.6b, 1.7b, or a path to a config.json (its folder's tokenizer and generation files are carried over)",
            DefaultValueFactory = _ => "tiny",
        };
        var output = new Option<string>("--out") { Description = "the model directory to write", Required = true }.ForFolder();
        var seed = new Option<ulong>("--seed") { Description = "seed of the random weights", DefaultValueFactory = _ => 0 };
        var dtype = new Option<string>("--dtype") { Description = "storage dtype of the weights: fp32 or bf16", DefaultValueFactory = _ => "fp32" };
        dtype.AcceptOnlyFromAmong("fp32", "bf16");

        var command = new Command("init-model", "Write a complete model directory in the released layout with seeded random weights.")
        {
            config, output, seed, dtype,
        };
        command.SetAction(parse =>
        {
            string dir = parse.GetValue(output)!;
            var type = parse.GetValue(dtype) == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32;
            var c = ModelDirectory.CreateRandom(dir, parse.GetValue(config)!, parse.GetValue(seed), type);
            var report = ModelInspector.Inspect(dir);
            Console.WriteLine($"wrote {dir}: {c.TtsModelType} {c.TtsModelSize}, {report.Total:N0} parameters ({parse.GetValue(dtype)})");
            return 0;
        });
        return command;
    }
}
