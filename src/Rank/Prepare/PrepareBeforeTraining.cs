using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Coordinator.Data.Prepare;
using Qwen3Tts.Rank.Distributed;
using Qwen3Tts.Rank.Training;

namespace Qwen3Tts.Rank.Prepare;

/// <summary>The seed pipeline's prepare-then-train in one rank job: when --train_jsonl (or --validation_jsonl) holds raw
/// speech, the ranks prepare it first into OUTPUT/prepared/{train,validation}.jsonl with the model's own speech tokenizer,
/// then train on that. A prepared file already there is reused (a resumed run does not encode again).</summary>
public static class PrepareBeforeTraining
{
    /// <summary>The options to train with: unchanged with <paramref name="skip"/> or prepared data, else pointing at the
    /// prepared files.</summary>
    public static TrainingOptions Apply(TrainingOptions options, ICommunicator comm, bool skip, string? refAudio, TextWriter log, bool skipPreflight = false)
    {
        if (skip) return options;
        string folder = Path.Combine(options.OutputModelPath, "prepared");
        string? Prepared(string? data, string name, string? split)
        {
            if (data is null || !DistributedPrepare.NeedsPreparing(data)) return data;
            string output = Path.Combine(folder, name + ".jsonl");
            if (File.Exists(output) && !Directory.Exists(output + ".partial"))
            {
                if (comm.Rank == 0) log.WriteLine($"prepare: using {output}, prepared earlier from {data} (delete it to prepare again)");
                return output;
            }
            split = Directory.Exists(data) ? split : null; // --split / --validation_split pick shards in a folder (a dataset by id is one)
            if (!skipPreflight) RunPreflight(data, name, split, options, comm, refAudio, log);
            DistributedPrepare.Run(new PrepareOptions(data, output, refAudio, Split: split, SkipBadSamples: options.SkipBadSamples), options.InitModelPath, comm, log);
            return output;
        }
        return options with
        {
            TrainData = Prepared(options.TrainData, "train", options.Split)!,
            ValidationData = Prepared(options.ValidationData, "validation", options.ValidationSplit),
        };
    }

    /// <summary>Preflight before encoding anything: rank 0 checks the raw data against the model's context (the report goes to
    /// OUTPUT/preflight-{split}.txt and .json); the verdict is shared so every rank stops together on NO-GO.</summary>
    static void RunPreflight(string data, string split, string? folderSplit, TrainingOptions options, ICommunicator comm, string? refAudio, TextWriter log)
    {
        var verdict = new byte[1];
        string reportPath = Path.Combine(options.OutputModelPath, $"preflight-{split}");
        if (comm.Rank == 0)
        {
            var thresholds = Preflight.ForModel(new PreflightThresholds { RequireReference = refAudio is not null }, options.InitModelPath);
            var report = Preflight.Run(data, thresholds, refAudio, folderSplit);
            Directory.CreateDirectory(options.OutputModelPath);
            File.WriteAllText(reportPath + ".txt", report.ToText(allRecords: true));
            File.WriteAllText(reportPath + ".json", report.ToJson());
            log.WriteLine($"preflight {data}: {PreflightReport.Name(report.Verdict)} ({report.Total} records, {report.WithErrors} with errors, " +
                $"{report.WithWarnings} with warnings; {reportPath}.txt){(report.Reasons.Count > 0 ? ": " + string.Join("; ", report.Reasons) : "")}");
            verdict[0] = (byte)report.Verdict;
        }
        comm.Broadcast(verdict, root: 0);
        if ((PreflightVerdict)verdict[0] == PreflightVerdict.NoGo)
            throw new ArgumentException($"preflight of {data}: NO-GO, see {reportPath}.txt; fix the data, or pass --skip_preflight to prepare and train anyway");
    }
}
