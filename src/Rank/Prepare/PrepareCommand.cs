using Qwen3Tts.Entry;
using System.CommandLine;
using Qwen3Tts.Coordinator.Data.Prepare;
using Qwen3Tts.Rank.Distributed;

namespace Qwen3Tts.Rank.Prepare;

/// <summary>The <c>prepare</c> command of both programs: <c>qwen3tts prepare</c> (one process) and
/// <c>mpiexec -n N qwen3tts-rank prepare</c> (N ranks, each encoding index % N, rank 0 merging).</summary>
public static class PrepareCommand
{
    public static Command Create(Func<Func<ICommunicator, int>, int>? world = null)
    {
        var input = new Option<string>("--input", "--dataset_name", "--dataset-name")
        {
            Description = "raw speech: a JSONL of {audio, text[, ref_audio, speaker_id, ...]}, a Hugging Face Parquet file or dataset folder (audio struct + text), a dataset id in the Hugging Face cache (owner/name), or a folder of clips with .txt transcripts",
            Required = true,
        };
        var output = new Option<string>("--output")
        {
            Description = "the training records to write, .jsonl or .parquet: every source field kept, audio_codes [frames][16] added (unfinished work is kept in OUTPUT.partial/ and resumed)",
            Required = true,
        }.ForFile();
        var model = new Option<string>("--model")
        {
            Description = "a model folder holding speech_tokenizer/ (e.g. Qwen3-TTS-12Hz-1.7B-Base) or its id in the Hugging Face cache, or a speech tokenizer folder",
            HelpName = "DIR",
            Required = true,
        };
        var refAudio = new Option<string?>("--ref_audio", "--ref-audio") { Description = "reference clip for records that name none (default: each speaker's first clip; records without speaker_id count as one speaker)" };
        var maxSamples = new Option<int?>("--max_samples", "--max-samples") { Description = "prepare only the first N records" };
        var split = new Option<string?>("--split") { Description = "split of a Hugging Face dataset folder: train-*.parquet or data/SPLIT-*.parquet (default: train when there are several)" };
        var skipBad = new Option<bool>("--skip_bad_samples", "--skip-bad-samples") { Description = "list bad records in OUTPUT-stem.skipped.jsonl instead of stopping at the first" };
        var allowAbsolute = new Option<bool>(Qwen3Tts.Coordinator.Data.DataPaths.AllowFlag, "--allow-absolute-paths") { Description = "let records name clips outside the input's folder (absolute paths, ../ chains): only for data you trust" };
        var revision = new Option<string?>("--revision") { Description = "the revision (branch, tag or commit) of a dataset given by id (default main)" };
        var hubToken = new Option<string?>("--hub_token", "--hub-token") { Description = "Hub token for a private or gated dataset or model (default HF_TOKEN; a flag shows in the process list, the variable does not)" };
        var overwrite = new Option<bool>("--overwrite") { Description = "prepare again when OUTPUT already exists (by default a finished output is left as it is)" };
        var command = new Command("prepare", "Encode raw speech into training records with the 12 Hz speech tokenizer (the reference's prepare_data.py)")
        {
            input, output, model, refAudio, maxSamples, split, skipBad, allowAbsolute, revision, hubToken, overwrite,
        };
        command.SetAction(parse =>
        {
            var env = Qwen3Tts.Rank.Distributed.EnvVars.Snapshot();
            string source = Qwen3Tts.Entry.Hub.HubPaths.Resolve(parse.GetRequiredValue(input), Qwen3Tts.Entry.Hub.HubRepoType.Dataset, "--input", parse.GetValue(revision), env,
                split: parse.GetValue(split), token: parse.GetValue(hubToken));
            var options = new PrepareOptions(source, parse.GetRequiredValue(output), parse.GetValue(refAudio),
                parse.GetValue(maxSamples), parse.GetValue(split), parse.GetValue(skipBad), AllowAbsolutePaths: parse.GetValue(allowAbsolute));
            string modelDir = Qwen3Tts.Entry.Hub.HubPaths.Resolve(parse.GetRequiredValue(model), Qwen3Tts.Entry.Hub.HubRepoType.Model, "--model", null, env,
                token: parse.GetValue(hubToken));
            if (Finished(options.Output) && !parse.GetValue(overwrite))
            {
                // Every rank sees the same file system, so every rank returns here alike (no collective is left waiting).
                Console.WriteLine($"prepare: {options.Output} exists and no unfinished work is in {options.Output}.partial/; nothing to do (--overwrite prepares it again)");
                return 0;
            }
            var run = world ?? (body => RankMain.Run(null, null, null, BackendChoice.Mpi, null, null, null, body));
            return run(comm =>
            {
                DistributedPrepare.Run(options, modelDir, comm, Console.Out);
                return 0;
            });
        });
        return command;
    }

    /// <summary>A prepared output is finished when the file exists and no partial folder (unfinished work) sits beside it.</summary>
    public static bool Finished(string output) => File.Exists(output) && !Directory.Exists(output + ".partial");

    /// <summary>Runs <paramref name="body"/> as the only process: no launcher, no MPI. A bad input prints one line naming
    /// what is wrong (file, line, field) and returns 2.</summary>
    public static int SingleProcess(Func<ICommunicator, int> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        try
        {
            using var comm = new SingleProcessCommunicator();
            return body(comm);
        }
        catch (Exception e) when (e is ArgumentException or IOException or InvalidDataException or InvalidOperationException or UnauthorizedAccessException
                                      or Coordinator.Data.DataException or Model.Audio.AudioException or Model.Config.ConfigException or Model.Checkpoint.CheckpointException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }
}
