using Qwen3Tts.Model.Config;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Coordinator.Data.Prepare;
using Qwen3Tts.Model.Codec;
using Qwen3Tts.Rank.Distributed;

namespace Qwen3Tts.Rank.Prepare;

/// <summary><see cref="PrepareJob"/> over a communicator: every rank reads the source and encodes its share
/// (index % world size), a barrier, rank 0 merges in source order, a barrier (so every rank may read the output next).
/// One process is the same with a world of one.</summary>
public static class DistributedPrepare
{
    /// <summary>Prepares <paramref name="options"/> with the speech tokenizer in <paramref name="modelDir"/> (a model folder
    /// holding speech_tokenizer/, or a speech tokenizer folder). Rank 0 gets the result, other ranks null.</summary>
    public static PrepareResult? Run(PrepareOptions options, string modelDir, ICommunicator comm, TextWriter log, CancellationToken cancel = default,
        Action<int>? recordDone = null)
    {
        ArgumentNullException.ThrowIfNull(comm);
        string folder = Path.GetFullPath(SpeechTokenizer.ResolveFolder(modelDir));
        using var tokenizer = SpeechTokenizer.Load(folder);
        // A model folder (not a bare speech tokenizer): its records must fit the talker's code ranges.
        string config = Path.Combine(modelDir, Model.ModelDirectory.ConfigFile);
        if (options.Bounds is null && folder != Path.GetFullPath(modelDir) && File.Exists(config))
            options = options with { Bounds = CodeBounds.Of(Qwen3TtsConfig.Load(config).Talker) };
        return Run(options, tokenizer, folder, comm, log, cancel, recordDone);
    }

    /// <summary>As above with a loaded tokenizer; <paramref name="codecKey"/> names it in the journal.</summary>
    public static PrepareResult? Run(PrepareOptions options, SpeechTokenizer tokenizer, string codecKey, ICommunicator comm, TextWriter log,
        CancellationToken cancel = default, Action<int>? recordDone = null)
    {
        var job = PrepareJob.Open(options);
        if (comm.Rank == 0)
            log.WriteLine($"prepare: {job.Records.Count} record(s) from {options.Input} ({job.Format.ToString().ToLowerInvariant()}) " +
                $"-> {options.Output}, {comm.WorldSize} rank(s)" + (job.Malformed.Count > 0 ? $", {job.Malformed.Count} malformed skipped" : ""));
        // Rank 0 shows its share's progress; the shares are equal to within one record.
        job.EncodeShare(tokenizer, codecKey, comm.Rank, comm.WorldSize, comm.Rank == 0 ? Console.Error : null, cancel, recordDone);
        comm.Barrier();
        var result = comm.Rank == 0 ? job.Merge(log, tokenizer) : null;
        comm.Barrier();
        return result;
    }

    /// <summary>Whether <paramref name="path"/> holds raw speech (records without audio_codes): a clip folder, a JSONL whose
    /// first record has no audio_codes, or Parquet without an audio_codes column.</summary>
    public static bool NeedsPreparing(string path)
    {
        switch (RawSpeechData.Detect(path))
        {
            case RawSpeechFormat.Folder:
                return true;
            case RawSpeechFormat.Jsonl:
                string? first = File.ReadLines(path).FirstOrDefault(l => !string.IsNullOrWhiteSpace(l));
                if (first is null) return false;
                try
                {
                    using var doc = System.Text.Json.JsonDocument.Parse(first);
                    return doc.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object && !doc.RootElement.TryGetProperty("audio_codes", out _);
                }
                catch (System.Text.Json.JsonException) { return false; } // the trainer's reader names the bad line
            default:
                return ParquetTrainingData.ReadSchema(ParquetTrainingData.Files(path)[0]).Fields.All(f => f.Name != "audio_codes");
        }
    }
}
