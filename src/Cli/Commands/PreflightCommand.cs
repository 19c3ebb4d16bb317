using System.CommandLine;
using Qwen3Tts.Coordinator.Data;

namespace Qwen3Tts.Cli.Commands;

public static class PreflightCommand
{
    public static Command Create()
    {
        var defaults = new PreflightThresholds();
        var data = new Argument<string>("DATA")
        {
            Description = "a JSONL file (audio, text, ref_audio, ...), a Hugging Face Parquet file or folder of shards, or a folder of clips with .txt transcripts",
        };
        var json = new Option<bool>("--json") { Description = "print the report as JSON" };
        var refAudio = new Option<string?>("--ref_audio", "--ref-audio") { Description = "reference clip for records that name none (WAV, FLAC or MP3)" };
        var model = new Option<string?>("--model")
        {
            Description = "a model directory, its config.json, or a preset (tiny, 0.6b, 1.7b): clips must fit the talker's max_position_embeddings with their text",
        };
        var maxSeconds = new Option<double?>("--max_seconds", "--max-seconds")
        {
            Description = $"longest clip in seconds (default {defaults.MaxSeconds} without --model; with --model the talker context, lowered to this if given)",
        };
        var split = new Option<string?>("--split") { Description = "for a folder of Parquet shards: the split to read (train, validation, test)" };
        var allowAbsolute = new Option<bool>(DataPaths.AllowFlag, "--allow-absolute-paths") { Description = "records may name clips outside the data file's folder, as prepare's and the trainer's flag" };
        var maxLine = new Option<int?>("--max_line_mb", "--max-line-mb") { Description = $"longest JSONL line read, in MB (default {JsonlTrainingData.MaxLineBytes >> 20}); a longer one is refused unread" };
        var all = new Option<bool>("--all") { Description = "list every record in the table, not only those with findings" };
        var command = new Command("preflight",
            "Checks a speech dataset before prepare and training: per clip the sample rate, channels and duration as found, clipping, " +
            "silence, noise floor; empty and repeated texts, missing files, reference clips, speakers, languages, and audio_codes when present. " +
            $"Verdict: NO-GO (exit 2) when no record is usable or more than {defaults.MaxErrorShare:P0} have errors (missing/unreadable audio, " +
            $"empty text, longer than the limit, silent, bad codes, no reference clip); GO-WITH-CAUTION (exit 0) when any record has an error " +
            $"or a warning (shorter than {defaults.MinSeconds} s, >= {defaults.MaxClippedShare:P1} of samples in flat runs at full scale, " +
            $"> {defaults.MaxSilenceShare:P0} of 20 ms frames below -50 dBFS, noise floor above {defaults.MaxNoiseFloorDb} dBFS, " +
            $"below {defaults.MinSampleRate} Hz, repeated text, codes not matching the audio's length); GO (exit 0) otherwise.")
        {
            data, json, refAudio, model, maxSeconds, split, allowAbsolute, maxLine, all,
        };
        command.SetAction(parse =>
        {
            var thresholds = defaults;
            double? max = parse.GetValue(maxSeconds);
            if (max is <= 0) throw new ArgumentException($"--max_seconds must be positive, got {max}");
            if (parse.GetValue(model) is { } spec) thresholds = Preflight.ForModel(thresholds, Qwen3Tts.Entry.Hub.HubPaths.Model(spec), max);
            else if (max is double m) thresholds = thresholds with { MaxSeconds = m, MaxSecondsSource = "--max_seconds" };
            thresholds = thresholds with { AllowOutsidePaths = parse.GetValue(allowAbsolute), MaxLineBytes = JsonlTrainingData.LineLimit(parse.GetValue(maxLine)) };
            var report = Preflight.Run(parse.GetValue(data)!, thresholds, parse.GetValue(refAudio), parse.GetValue(split));
            parse.InvocationConfiguration.Output.WriteLine(parse.GetValue(json) ? report.ToJson() : report.ToText(parse.GetValue(all)));
            return report.ExitCode;
        });
        return command;
    }
}
