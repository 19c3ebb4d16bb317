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
    public static TrainingOptions Apply(TrainingOptions options, ICommunicator comm, bool skip, string? refAudio, TextWriter log)
    {
        if (skip) return options;
        string folder = Path.Combine(options.OutputModelPath, "prepared");
        string? Prepared(string? data, string name)
        {
            if (data is null || !DistributedPrepare.NeedsPreparing(data)) return data;
            string output = Path.Combine(folder, name + ".jsonl");
            if (File.Exists(output) && !Directory.Exists(output + ".partial"))
            {
                if (comm.Rank == 0) log.WriteLine($"prepare: using {output}, prepared earlier from {data} (delete it to prepare again)");
                return output;
            }
            DistributedPrepare.Run(new PrepareOptions(data, output, refAudio, SkipBadSamples: options.SkipBadSamples), options.InitModelPath, comm, log);
            return output;
        }
        return options with
        {
            TrainData = Prepared(options.TrainData, "train")!,
            ValidationData = Prepared(options.ValidationData, "validation"),
        };
    }
}
