using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Qwen3Tts.Coordinator.Observability;

/// <summary>One WandB run, fed by the trainer on rank 0. <see cref="Log"/>, <see cref="SetSummary"/> and
/// <see cref="Output"/> append to the run folder's <c>wandb/</c> files and return; a background task sends
/// what is pending every <see cref="WandbUploadOptions.FlushInterval"/>, retrying with backoff while the server
/// is down, so training never waits on the network and never fails because of it. Restarting in the same run
/// folder resumes the run (same id, history continues at the next offset). Offline mode writes the same files
/// and sends nothing (<see cref="WandbSync"/> uploads them later); disabled mode does nothing.</summary>
public sealed class WandbRun : IDisposable
{
    readonly WandbSettings settings;
    readonly WandbRunFolder? folder;
    readonly TextWriter? log;
    readonly WandbUploadOptions options;
    readonly TimeProvider clock;
    readonly long startTicks;
    readonly double runtimeBefore;
    readonly Dictionary<string, double> summary = [];
    readonly SemaphoreSlim wake = new(0);
    readonly CancellationTokenSource stop = new();
    readonly Task? sender;
    readonly HttpClient? http;
    readonly WandbUploader? uploader;
    long lastStep = -1;
    bool finished, warnedStep, warnedDisk;

    public WandbMode Mode => settings.Mode;
    /// <summary>The run id (WandB's bucket name); null when disabled.</summary>
    public string? RunId => folder?.State.RunId;
    /// <summary>The run's wandb/ folder; null when disabled.</summary>
    public string? Directory => folder?.Directory;
    public bool Resumed { get; }
    /// <summary>History rows written so far, this session and earlier ones.</summary>
    public long HistoryRows => folder?.HistoryCount ?? 0;

    WandbRun(WandbSettings settings, WandbRunFolder? folder, bool resumed, TextWriter? log, WandbUploadOptions options, TimeProvider clock)
    {
        this.settings = settings;
        this.folder = folder;
        this.log = log is null ? null : TextWriter.Synchronized(log);
        this.options = options;
        this.clock = clock;
        Resumed = resumed;
        startTicks = clock.GetTimestamp();
        if (folder is null) return;

        if (folder.LastHistoryRow is { } last)
        {
            lastStep = ReadNumber(last, "_step") is { } s ? (long)s : -1;
            runtimeBefore = ReadNumber(last, "_runtime") ?? 0;
        }
        LoadSummary(folder.Summary);
        if (settings.Mode == WandbMode.Online)
        {
            (var api, http) = WandbApi.Create(settings, options.RequestTimeout, options.Handler);
            uploader = new WandbUploader(api, folder, settings, options, Warn);
            var u = uploader;
            sender = Task.Run(() => SendLoop(u));
        }
    }

    /// <summary>Starts (or, when <paramref name="runDirectory"/>/wandb holds one, resumes) a run. <paramref name="config"/>
    /// is sent as the run's config (each value JSON-serialized); null keeps a resumed run's config.</summary>
    public static WandbRun Start(WandbSettings settings, string runDirectory, IReadOnlyDictionary<string, object?>? config = null,
        TextWriter? log = null, WandbUploadOptions? options = null, TimeProvider? clock = null)
    {
        options ??= new WandbUploadOptions();
        clock ??= TimeProvider.System;
        if (settings.Mode == WandbMode.Disabled) return new WandbRun(settings, null, false, log, options, clock);

        var dir = Path.GetFullPath(Path.Combine(runDirectory, WandbRunFolder.FolderName));
        WandbRunFolder folder;
        bool resumed = WandbRunFolder.Find(dir) is not null;
        if (resumed)
        {
            folder = WandbRunFolder.Open(dir);
            var state = folder.State;
            if (settings.RunId is { } wanted && wanted != state.RunId)
            {
                folder.Dispose();
                throw new ArgumentException($"{dir} belongs to WandB run '{state.RunId}' but {WandbEnv.RunId}={wanted}; " +
                    $"unset {WandbEnv.RunId} to resume '{state.RunId}', or use another output folder for a new run");
            }
            // A finished run that trains on is running again; its next Finish completes it anew.
            folder.Update(s => s with { ExitCode = null, CompleteSent = false, DisplayName = settings.DisplayName ?? s.DisplayName });
        }
        else
        {
            folder = WandbRunFolder.Create(dir, new WandbRunState
            {
                RunId = settings.RunId ?? NewRunId(),
                Project = settings.Project,
                Entity = settings.Entity,
                DisplayName = settings.DisplayName,
                Group = settings.Group,
                Tags = settings.Tags,
                Notes = settings.Notes,
                JobType = settings.JobType,
            });
        }
        if (config is not null) folder.SaveConfig(settings.Scrub(WrapConfig(config)));
        return new WandbRun(settings, folder, resumed, log, options, clock);
    }

    /// <summary>Appends the history row {"_step", "_runtime", "_timestamp", metrics…} and folds the metrics into the
    /// summary. Steps must not go back (WandB drops such rows; so does this, with one warning); to put train and eval
    /// numbers in one row, pass them in one call.</summary>
    public void Log(long step, IReadOnlyDictionary<string, double> metrics) => Log(step, metrics, []);

    /// <summary><see cref="Log(long, IReadOnlyDictionary{string, double})"/> with audio clips in the same row: each WAV is copied
    /// into the run folder as <c>media/audio/KEY_STEP_HASH.wav</c> and uploaded as a run file (signed URL), and the row
    /// holds WandB's audio-file object for it (path, sha256, size, sample_rate, caption), as <c>wandb.Audio</c> logs it.</summary>
    public void Log(long step, IReadOnlyDictionary<string, double> metrics, IReadOnlyList<WandbAudio> audio)
    {
        if (folder is null) return;
        foreach (var key in metrics.Keys.Concat(audio.Select(a => a.Key)))
            if (key.StartsWith('_')) throw new ArgumentException($"metric '{key}': names starting with '_' are WandB's own", nameof(metrics));
        if (step < lastStep)
        {
            if (!warnedStep) Warn($"wandb: step {step} is before the last logged step {lastStep}; such rows are dropped");
            warnedStep = true;
            return;
        }
        lastStep = step;
        double runtime = runtimeBefore + clock.GetElapsedTime(startTicks).TotalSeconds;
        double timestamp = clock.GetUtcNow().ToUnixTimeMilliseconds() / 1000.0;

        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteNumber("_step", step);
            w.WriteNumber("_runtime", Math.Round(runtime, 3));
            w.WriteNumber("_timestamp", timestamp);
            foreach (var (key, value) in metrics) WriteDouble(w, key, value);
            foreach (var clip in audio)
            {
                byte[] bytes;
                try { bytes = File.ReadAllBytes(clip.Path); }
                catch (IOException e) { Warn($"wandb: cannot read {clip.Path} for '{clip.Key}' ({e.Message}); the clip is left out"); continue; }
                string sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));
                string name = $"media/audio/{MediaName(clip.Key)}_{step}_{sha[..20]}.wav";
                if (!Append(() => folder.AddFile(name, bytes))) continue;
                w.WriteStartObject(clip.Key);
                w.WriteString("_type", "audio-file");
                w.WriteString("path", name);
                w.WriteString("sha256", sha);
                w.WriteNumber("size", bytes.Length);
                w.WriteNumber("sample_rate", clip.SampleRate);
                if (clip.Caption is not null) w.WriteString("caption", clip.Caption);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        if (!Append(() => folder.AppendHistory(Encoding.UTF8.GetString(buffer.WrittenSpan)))) return;

        lock (summary)
        {
            foreach (var (key, value) in metrics) summary[key] = value;
            summary["_step"] = step;
            summary["_runtime"] = Math.Round(runtime, 3);
            summary["_timestamp"] = timestamp;
            folder.SetSummary(SummaryJson());
        }
        if (folder.PendingHistoryCount >= options.MaxLinesPerRequest) wake.Release();
    }

    /// <summary>Sets summary values that are not the last logged ones (best eval loss, final step…).</summary>
    public void SetSummary(string key, double value)
    {
        if (folder is null) return;
        lock (summary)
        {
            summary[key] = value;
            folder.SetSummary(SummaryJson());
        }
    }

    /// <summary>A console line for the run's output.log (the trainer's log lines).</summary>
    public void Output(string line)
    {
        if (folder is null) return;
        var stamp = clock.GetUtcNow().UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff", CultureInfo.InvariantCulture);
        foreach (var part in line.Replace("\r\n", "\n").Split('\n'))
            if (!Append(() => folder.AppendOutput($"{stamp} {settings.Scrub(part)}"))) return;
    }

    /// <summary>A full or failing disk must not end training over metrics: warn once and drop the line.</summary>
    bool Append(Action append)
    {
        try
        {
            append();
            return true;
        }
        catch (IOException e)
        {
            if (!warnedDisk) Warn($"wandb: cannot write to {folder!.Directory} ({e.Message}); metrics are dropped until it can");
            warnedDisk = true;
            return false;
        }
    }

    /// <summary>Marks the run finished with <paramref name="exitCode"/> and waits up to <paramref name="timeout"/>
    /// (default <see cref="WandbUploadOptions.FinishTimeout"/>) for everything to reach the server. Returns whether it
    /// did; what did not stays in the run folder for <see cref="WandbSync"/>. Offline runs return false.</summary>
    public bool Finish(int exitCode = 0, TimeSpan? timeout = null)
    {
        if (folder is null || finished) return folder is null || folder.Delivered;
        finished = true;
        folder.Update(s => s with { ExitCode = exitCode });
        folder.SaveSummary();
        if (sender is null) return false;
        wake.Release();
        bool done = sender.Wait(timeout ?? options.FinishTimeout);
        if (!done)
        {
            Warn($"wandb: could not send everything within {(timeout ?? options.FinishTimeout).TotalSeconds:F0} s; " +
                 $"upload the rest with `qwen3tts wandb-sync {folder.Directory}`");
            stop.Cancel();
            try { sender.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
        }
        return folder.Delivered;
    }

    async Task SendLoop(WandbUploader uploader)
    {
        var ct = stop.Token;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await wake.WaitAsync(options.FlushInterval, ct);
                await uploader.PumpAsync(ct);
                if (finished && folder!.Delivered) return;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (WandbException e)
            {
                Warn($"wandb: {e.Message}; no more uploads this run, the rows stay in {folder!.Directory} for `qwen3tts wandb-sync`");
                return;
            }
            catch (Exception e)
            {
                // A bug or a disk error must not end training; report it and try again next interval.
                Warn(settings.Scrub($"wandb: sending failed: {e.GetType().Name}: {e.Message}"));
            }
        }
    }

    void Warn(string message)
    {
        var clean = settings.Scrub(message);
        log?.WriteLine(clean);
    }

    string SummaryJson()
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            foreach (var (key, value) in summary) WriteDouble(w, key, value);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    void LoadSummary(string? json)
    {
        if (json is null) return;
        try
        {
            using var doc = JsonDocument.Parse(json);
            foreach (var p in doc.RootElement.EnumerateObject())
                if (p.Value.ValueKind == JsonValueKind.Number) summary[p.Name] = p.Value.GetDouble();
        }
        catch (JsonException) { } // NaN values (written bare, like Python's json) are not JSON to .NET; the next Log refills them.
    }

    /// <summary>Python's json writes NaN and ±Infinity bare, and WandB's server reads them that way; .NET refuses, so write them raw.</summary>
    static void WriteDouble(Utf8JsonWriter w, string key, double value)
    {
        if (double.IsFinite(value)) { w.WriteNumber(key, value); return; }
        w.WritePropertyName(key);
        w.WriteRawValue(double.IsNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity", skipInputValidation: true);
    }

    /// <summary>The config as the official client sends it: a JSON object text with each value wrapped as {"value": v}.</summary>
    internal static string WrapConfig(IReadOnlyDictionary<string, object?> config)
    {
        var wrapped = config.ToDictionary(kv => kv.Key, kv => new Dictionary<string, object?> { ["value"] = kv.Value });
        return JsonSerializer.Serialize(wrapped, WandbApi.Json);
    }

    static double? ReadNumber(string row, string key)
    {
        var m = Regex.Match(row, $"\"{Regex.Escape(key)}\":(-?[0-9.eE+-]+)");
        return m.Success && double.TryParse(m.Groups[1].Value, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : null;
    }

    static string MediaName(string key) => Regex.Replace(key, "[^A-Za-z0-9_.-]", "_");

    static string NewRunId()
    {
        const string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
        return string.Create(8, 0, (span, _) => { for (int i = 0; i < span.Length; i++) span[i] = alphabet[Random.Shared.Next(alphabet.Length)]; });
    }

    /// <summary>Stops sending (without completing the run: call <see cref="Finish"/> for that) and closes the files.</summary>
    public void Dispose()
    {
        if (sender is not null && !sender.IsCompleted)
        {
            stop.Cancel();
            try { sender.Wait(TimeSpan.FromSeconds(5)); } catch (AggregateException) { }
        }
        folder?.SaveSummary();
        folder?.SaveState();
        folder?.Dispose();
        http?.Dispose();
        uploader?.Dispose();
        stop.Dispose();
        wake.Dispose();
    }
}

/// <summary>An audio clip for a history row (a WAV file), shown as a player in the run's media panel.</summary>
public sealed record WandbAudio(string Key, string Path, int SampleRate, string? Caption = null);
