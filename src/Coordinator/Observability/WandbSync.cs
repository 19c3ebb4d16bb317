namespace Qwen3Tts.Coordinator.Observability;

/// <summary>What <see cref="WandbSync.Run"/> sent.</summary>
public sealed record WandbSyncResult(string RunId, long HistoryRowsSent, long OutputLinesSent, bool Completed);

/// <summary><c>qwen3tts wandb-sync DIR</c>: uploads what a run folder holds and the server lacks (an offline run, or an
/// online run that lost its connection), from the offsets in wandb/state.json, and completes the run if it finished.</summary>
public static class WandbSync
{
    /// <summary>Uploads <paramref name="directory"/> (a run folder or its wandb/ folder) with <paramref name="settings"/>'
    /// key and server; the run keeps the project and entity it was started with. Throws <see cref="WandbException"/>
    /// (never containing the key) if the server stays unreachable or refuses; running it again continues where it stopped.</summary>
    public static WandbSyncResult Run(string directory, WandbSettings settings, TextWriter? log = null, WandbUploadOptions? options = null)
    {
        options ??= new WandbUploadOptions { MaxAttempts = 6 };
        var dir = WandbRunFolder.Find(directory)
            ?? throw new ArgumentException($"{directory} has no {WandbRunFolder.FolderName}/state.json: it is not the output folder of a run started with --use_wandb");
        if (settings.ApiKey is null)
            throw new ArgumentException($"wandb-sync needs {WandbEnv.ApiKey} to upload {dir}");

        using var folder = WandbRunFolder.Open(dir);
        var before = folder.State;
        var (api, http) = WandbApi.Create(settings, options.RequestTimeout, options.Handler);
        using (http)
        {
            using var uploader = new WandbUploader(api, folder, settings, options, message => log?.WriteLine(settings.Scrub(message)));
            try
            {
                uploader.PumpAsync(CancellationToken.None).GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is not WandbException)
            {
                throw new WandbException(settings.Scrub($"wandb-sync of {dir} failed: {e.GetType().Name}: {e.Message}"));
            }
        }
        var after = folder.State;
        var result = new WandbSyncResult(after.RunId, after.HistorySent - before.HistorySent, after.OutputSent - before.OutputSent, after.CompleteSent);
        log?.WriteLine($"wandb-sync: run {result.RunId}: {result.HistoryRowsSent} history rows, {result.OutputLinesSent} output lines sent" +
                       (result.Completed ? ", run complete" : ""));
        return result;
    }
}
