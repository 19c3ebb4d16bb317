using System.Globalization;
using Qwen3Tts.Entry;
using Qwen3Tts.Entry.Hub;

namespace Qwen3Tts.Rank.Training;

/// <summary>What the trainer knows of its run for a model card (the checkpoint itself says its step and losses).</summary>
public sealed record HubRunFacts(IReadOnlyList<string> Languages, double? LastTrainLoss, long TotalSteps, int Epochs, string Batch, string Schedule,
    string LossAlignment, string CommandLine);

/// <summary>--upload_to_hub, on rank 0: best/ and last/ published as custom_voice models, each staged as
/// OUTPUT/hub/{best,last}/ (the export <c>qwen3tts export-voice</c> writes, without the local path of
/// exported_from.json, plus a generated model card) and committed by <see cref="HubUploader"/>. With
/// --hub_upload_every_eval each new best/ is staged at once and sent in the background while training goes on (a new best
/// that comes while one is still being sent waits for the end of training). An upload that fails is one line in the log
/// and never stops the run or touches the checkpoints; the staged folder stays for <c>qwen3tts hub-upload</c>.</summary>
public sealed class HubPublisher : IDisposable
{
    readonly TrainingOptions o;
    readonly HubUploader uploader;
    readonly TextWriter log;
    Task? sending;
    volatile bool bestSent; // by the background upload
    bool bestWaiting; // a newer best/ than the one being sent

    HubPublisher(TrainingOptions o, HubUploader uploader, TextWriter log) => (this.o, this.uploader, this.log) = (o, uploader, log);

    /// <summary>The publisher of a run with --upload_to_hub (else null); refused at the start, not after hours of training,
    /// when there is no token to write with.</summary>
    /// <param name="token">--hub_token; else HF_TOKEN or HUGGING_FACE_HUB_TOKEN.</param>
    public static HubPublisher? Create(TrainingOptions o, string? token, IReadOnlyDictionary<string, string> env, TextWriter log, HttpMessageHandler? handler = null)
    {
        if (!o.UploadToHub) return null;
        string? Get(string name) => env.TryGetValue(name, out var v) && !string.IsNullOrWhiteSpace(v) ? v : null;
        token ??= Get("HF_TOKEN") ?? Get("HUGGING_FACE_HUB_TOKEN")
            ?? throw new ArgumentException("--upload_to_hub: no token to write with: set HF_TOKEN (or --hub_token) to a Hub token with write access");
        var synchronized = TextWriter.Synchronized(log); // the background upload writes beside the training loop
        return new HubPublisher(o, HubUploader.Create(Get("HF_ENDPOINT") ?? HubApi.DefaultEndpoint, token, synchronized, handler), synchronized);
    }

    /// <summary>Where a checkpoint folder is staged for the Hub: OUTPUT/hub/{best,last}/.</summary>
    public static string StageDir(string outputDir, string folder) => Path.Combine(outputDir, "hub", folder);

    /// <summary>best/ was just written: with --hub_upload_every_eval it is staged and sent in the background.</summary>
    public void BestChanged(HubRunFacts run)
    {
        if (!o.HubUploadEveryEval || o.HubModelIdBest is not { } repo) return;
        if (sending is { IsCompleted: false })
        {
            log.WriteLine($"hub: best/ improved while the last one is still being sent to {repo}; the newest goes up at the end of training");
            bestWaiting = true;
            return;
        }
        if (Stage(CheckpointRotation.Best, repo, run) is not { } stage) return;
        bestSent = false;
        sending = Task.Run(() => bestSent = Upload(CheckpointRotation.Best, repo, stage.Dir, stage.Message));
    }

    /// <summary>The run ended (last/ written): waits for a background upload, then publishes best/ (unless the newest was
    /// sent already) and last/. Returns whether every upload succeeded.</summary>
    public bool Finish(HubRunFacts run)
    {
        sending?.Wait();
        bool ok = true;
        if (o.HubModelIdBest is { } best && !(bestSent && !bestWaiting))
        {
            if (!Directory.Exists(CheckpointRotation.BestDir(o.OutputModelPath)))
                log.WriteLine($"hub: no best/ to publish to {best} (no evaluation ran)");
            else ok &= Stage(CheckpointRotation.Best, best, run) is { } stage && Upload(CheckpointRotation.Best, best, stage.Dir, stage.Message);
        }
        if (o.HubModelIdLast is { } last)
            ok &= Stage(CheckpointRotation.Last, last, run) is { } stage && Upload(CheckpointRotation.Last, last, stage.Dir, stage.Message);
        return ok;
    }

    /// <summary>OUTPUT/hub/{folder}/: the custom_voice export of the checkpoint and its card; null (logged) when it fails.</summary>
    (string Dir, string Message)? Stage(string folder, string repo, HubRunFacts run)
    {
        string checkpoint = Path.Combine(o.OutputModelPath, folder), stage = StageDir(o.OutputModelPath, folder);
        try
        {
            VoiceExport.FromCheckpoint(checkpoint, stage, o.MultiSpeaker ? null : o.SpeakerName);
            File.Delete(Path.Combine(stage, VoiceExport.SourceFile)); // names a local path; the card says which checkpoint it is
            var state = TrainingCheckpoint.ReadState(checkpoint);
            var speakers = CheckpointVoices.Read(checkpoint).Select(v => v.Name).Where(n => o.MultiSpeaker || n == o.SpeakerName).ToList();
            var facts = new ModelCardFacts(repo, folder, o.BaseModelId ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(o.InitModelPath))),
                o.BaseModelId is not null, o.DatasetId, run.Languages, speakers, state.GlobalStep, run.TotalSteps, state.Epoch, run.Epochs,
                state.BestEvalLoss, state.BestEvalStep, run.LastTrainLoss, run.Batch, run.Schedule, run.LossAlignment, run.CommandLine,
                SpeakLanguage(stage, run.Languages));
            string card = ModelCard.Render(facts);
            if (SecretValues.FoundIn(card, SecretValues.Current()) is { } secret)
                throw new HubException($"the model card would contain the value of {secret}; not publishing it");
            File.WriteAllText(Path.Combine(stage, ModelCard.FileName), card);
            string message = folder == CheckpointRotation.Best && state.BestEvalLoss is { } loss
                ? string.Create(CultureInfo.InvariantCulture, $"Upload best/: step {state.GlobalStep}, validation loss {loss:F4}")
                : $"Upload {folder}/: step {state.GlobalStep}";
            return (stage, message);
        }
        catch (Exception e)
        {
            log.WriteLine($"hub: could not stage {folder}/ for {repo}: {Describe(e)}; {checkpoint} is unchanged (publish it by hand: qwen3tts export-voice, then qwen3tts hub-upload)");
            return null;
        }
    }

    /// <summary>The run's one language when the exported config has a codec tag for it, else auto.</summary>
    static string SpeakLanguage(string stage, IReadOnlyList<string> languages)
    {
        var tags = Qwen3Tts.Model.Config.Qwen3TtsConfig.Load(Path.Combine(stage, Qwen3Tts.Model.ModelDirectory.ConfigFile)).Talker.CodecLanguageId;
        return languages is [var only] && tags.ContainsKey(only) ? only : "auto";
    }

    bool Upload(string folder, string repo, string stage, string message)
    {
        try
        {
            var result = uploader.UploadFolderAsync(new HubRepo(repo, HubRepoType.Model), stage, message, o.HubPrivate).GetAwaiter().GetResult();
            if (result.CommitOid is not null) log.WriteLine($"hub: published {folder}/ to {repo} ({message})");
            return true;
        }
        catch (Exception e)
        {
            log.WriteLine($"hub: publishing {folder}/ to {repo} failed: {Describe(e)}. The checkpoint is kept; publish it later with: " +
                $"qwen3tts hub-upload {stage} --repo {repo}{(o.HubPrivate ? " --private" : "")}");
            return false;
        }
    }

    /// <summary>A user error in its own words; anything else with its kind (no trace: training itself succeeded).</summary>
    static string Describe(Exception e) => ErrorReport.IsUserError(e) ? e.Message : $"{e.GetType().Name}: {e.Message}";

    /// <summary>Waits for a background upload (a run stopped early keeps what it sent).</summary>
    public void Dispose() => sending?.Wait();
}
