using System.CommandLine;
using Qwen3Tts.Coordinator.Data;

namespace Qwen3Tts.Cli.Commands;

public static class InfoCommand
{
    public static Command Create()
    {
        var path = new Argument<string?>("PATH") { Description = "a JSONL file, a Parquet file or a folder of Parquet shards, or a dataset id (owner/name)", Arity = ArgumentArity.ZeroOrOne };
        var dataset = new Option<string?>("--dataset_name", "--dataset-name") { Description = "a Hugging Face dataset id instead of PATH (from the shared cache, downloaded if missing)" };
        var revision = new Option<string?>("--revision") { Description = "the dataset's revision (branch, tag or commit; default main)" };
        var hubToken = new Option<string?>("--hub_token", "--hub-token") { Description = "Hub token for a private or gated dataset (default HF_TOKEN)" };
        var split = new Option<string?>("--split") { Description = "for a folder of shards: the split to read (train, validation, test)" };
        var json = new Option<bool>("--json") { Description = "print the numbers as JSON" };
        var model = new Option<string?>("--model")
        {
            Description = "judge every record as the trainer would for this model (a model folder, its config.json, or a preset): codes within its " +
                "ranges, text ids within its vocabulary, the training sequence within its context; default: the speech tokenizer's 16 x 2048 code ranges only",
        };
        var maxFrames = new Option<int?>("--max_frames", "--max-frames") { Description = "refuse records longer than N codec frames, as the trainer's --max_frames" };
        var maxSeconds = new Option<double?>("--max_seconds", "--max-seconds") { Description = "the same limit in seconds, as the trainer's --max_seconds" };
        var allowAbsolute = new Option<bool>(DataPaths.AllowFlag, "--allow-absolute-paths") { Description = "records may name clips outside the data file's folder, as the trainer's flag" };
        var maxLine = new Option<int?>("--max_line_mb", "--max-line-mb") { Description = $"longest JSONL line read, in MB (default {JsonlTrainingData.MaxLineBytes >> 20}), as the trainer's flag" };
        var skipBad = new Option<bool>("--skip_bad_samples", "--skip-bad-samples") { Description = "exit 0 even when records are refused (the trainer would skip them)" };
        var command = new Command("info", "Count, languages, speakers, durations and the code-length histogram of a training dataset, and every " +
            "record the trainer would refuse (file, line or row, field). Exit 2 when a record is refused (unless --skip_bad_samples) or the data cannot be read.")
        {
            path, dataset, revision, hubToken, split, json, model, maxFrames, maxSeconds, allowAbsolute, maxLine, skipBad,
        };
        command.SetAction(parse =>
        {
            int? limit = RecordRules.FrameLimit(parse.GetValue(maxFrames), parse.GetValue(maxSeconds));
            if (limit is <= 0) throw new ArgumentException("--max_frames / --max_seconds: must be at least one frame (0.08 s)");
            bool anywhere = parse.GetValue(allowAbsolute);
            var rules = parse.GetValue(model) is { } spec ? RecordRules.ForModel(Qwen3Tts.Entry.Hub.HubPaths.Model(spec), limit, anywhere) : new RecordRules(null, MaxFrames: limit, AllowOutsidePaths: anywhere);
            string source = parse.GetValue(path) ?? parse.GetValue(dataset) ?? throw new ArgumentException("info needs PATH or --dataset_name");
            source = Qwen3Tts.Entry.Hub.HubPaths.Resolve(source, Qwen3Tts.Entry.Hub.HubRepoType.Dataset, parse.GetValue(path) is null ? "--dataset_name" : "PATH",
                parse.GetValue(revision), Qwen3Tts.Rank.Distributed.EnvVars.Snapshot(), parse.GetValue(split), parse.GetValue(hubToken));
            var info = DatasetInfo.Compute(source, parse.GetValue(split), rules, JsonlTrainingData.LineLimit(parse.GetValue(maxLine)));
            parse.InvocationConfiguration.Output.WriteLine(parse.GetValue(json) ? info.ToJson() : info.ToText());
            if (info.Count == 0) throw new ArgumentException($"{info.Path}: no usable records; there is nothing to train on");
            return info.Skipped > 0 && !parse.GetValue(skipBad) ? Qwen3Tts.Entry.ExitCodes.UserError : 0;
        });
        return command;
    }
}
