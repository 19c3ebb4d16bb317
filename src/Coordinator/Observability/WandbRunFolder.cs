using Qwen3Tts.Model;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Qwen3Tts.Coordinator.Observability;

/// <summary>What <c>wandb/state.json</c> holds: who the run is and how much of each file the server has.
/// Never the API key.</summary>
sealed record WandbRunState
{
    public required string RunId { get; init; }
    public required string Project { get; init; }
    public string? Entity { get; init; }
    public string? BucketId { get; init; }
    public string? DisplayName { get; init; }
    public string? Group { get; init; }
    public IReadOnlyList<string> Tags { get; init; } = [];
    public string? Notes { get; init; }
    public string? JobType { get; init; }
    /// <summary>History rows (lines of history.jsonl) the server has acknowledged: the next file_stream offset.</summary>
    public long HistorySent { get; init; }
    public long OutputSent { get; init; }
    public bool SummarySent { get; init; }
    /// <summary>Set by Finish; the completion is sent once every row is.</summary>
    public int? ExitCode { get; init; }
    public bool CompleteSent { get; init; }
    /// <summary>Run files (under wandb/files/, e.g. media/audio/...) the server has stored.</summary>
    public IReadOnlyList<string> FilesUploaded { get; init; } = [];
}

/// <summary>The run folder's <c>wandb/</c>: history.jsonl (one row a line, in step order), output.log, summary.json,
/// config.json (the JSONString sent as config) and state.json. The files are the truth; the server is a copy that
/// <see cref="WandbUploader"/> brings up to date from the offsets in state.json. Thread-safe: the trainer appends
/// while the uploader takes batches.</summary>
sealed class WandbRunFolder : IDisposable
{
    public const string FolderName = "wandb";
    const string StateFile = "state.json", HistoryFile = "history.jsonl", OutputFile = "output.log",
        SummaryFile = "summary.json", ConfigFile = "config.json";
    /// <summary>Run files to upload (media), by their name on the server, e.g. files/media/audio/eval_x_12_ab.wav.</summary>
    public const string FilesFolder = "files";

    static readonly JsonSerializerOptions StateJson = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    readonly Lock gate = new();
    readonly Lock stateFileGate = new(); // orders writes of state.json and summary.json (taken before gate, never inside it)
    readonly List<string> pendingHistory = [], pendingOutput = [];
    StreamWriter? historyWriter, outputWriter;
    WandbRunState state;
    string? summaryJson;
    bool summaryDirty;

    public string Directory { get; }
    public long HistoryCount { get; private set; }
    public long OutputCount { get; private set; }

    WandbRunFolder(string directory, WandbRunState state, string? summary)
    {
        Directory = directory;
        this.state = state;
        summaryJson = summary;
        summaryDirty = summary is not null && !state.SummarySent;
        HistoryCount = LoadPending(HistoryFile, state.HistorySent, pendingHistory);
        OutputCount = LoadPending(OutputFile, state.OutputSent, pendingOutput);
    }

    public WandbRunState State { get { lock (gate) return state; } }
    public string? Summary { get { lock (gate) return summaryJson; } }
    public string? LastHistoryRow { get; private set; }

    /// <summary>Resolves <paramref name="path"/> (a run folder or its wandb/ folder) to the wandb/ folder, or null if it has no state.json.</summary>
    public static string? Find(string path)
    {
        foreach (var candidate in new[] { path, Path.Combine(path, FolderName) })
            if (File.Exists(Path.Combine(candidate, StateFile))) return Path.GetFullPath(candidate);
        return null;
    }

    public static WandbRunFolder Open(string wandbDirectory)
    {
        var stateText = File.ReadAllText(Path.Combine(wandbDirectory, StateFile));
        var state = JsonSerializer.Deserialize<WandbRunState>(stateText, StateJson)
            ?? throw new InvalidDataException($"{Path.Combine(wandbDirectory, StateFile)} is empty");
        var summaryPath = Path.Combine(wandbDirectory, SummaryFile);
        return new WandbRunFolder(wandbDirectory, state, File.Exists(summaryPath) ? File.ReadAllText(summaryPath).Trim() : null);
    }

    public static WandbRunFolder Create(string wandbDirectory, WandbRunState state)
    {
        System.IO.Directory.CreateDirectory(wandbDirectory);
        var folder = new WandbRunFolder(wandbDirectory, state, null);
        folder.SaveState();
        return folder;
    }

    /// <summary>Counts the lines of a file, repairing a last line cut short by a crash, and keeps those from <paramref name="sent"/> on.</summary>
    long LoadPending(string name, long sent, List<string> pending)
    {
        var path = Path.Combine(Directory, name);
        if (!File.Exists(path)) return 0;
        var text = File.ReadAllText(path);
        int end = text.LastIndexOf('\n');
        if (end != text.Length - 1)
        {
            text = end < 0 ? "" : text[..(end + 1)];
            File.WriteAllText(path, text);
        }
        var lines = text.Length == 0 ? [] : text[..^1].Split('\n');
        if (sent > lines.Length)
            throw new InvalidDataException($"{Path.Combine(Directory, StateFile)} says {sent} lines of {name} were sent, but the file has {lines.Length}");
        pending.AddRange(lines.Skip((int)sent));
        if (name == HistoryFile && lines.Length > 0) LastHistoryRow = lines[^1];
        return lines.Length;
    }

    public void Update(Func<WandbRunState, WandbRunState> change)
    {
        lock (gate) state = change(state);
        SaveState();
    }

    public void SaveConfig(string configJson) => File.WriteAllText(Path.Combine(Directory, ConfigFile), configJson);

    public string? LoadConfig()
    {
        var path = Path.Combine(Directory, ConfigFile);
        return File.Exists(path) ? File.ReadAllText(path) : null;
    }

    public void AppendHistory(string row)
    {
        lock (gate)
        {
            historyWriter ??= OpenAppend(HistoryFile);
            historyWriter.Write(row + "\n");
            pendingHistory.Add(row);
            HistoryCount++;
            LastHistoryRow = row;
        }
    }

    public void AppendOutput(string line)
    {
        lock (gate)
        {
            outputWriter ??= OpenAppend(OutputFile);
            outputWriter.Write(line + "\n");
            pendingOutput.Add(line);
            OutputCount++;
        }
    }

    public void SetSummary(string json)
    {
        lock (gate) (summaryJson, summaryDirty) = (json, true);
    }

    /// <summary>Writes summary.json (the uploader does it after each batch; Finish and Dispose do it too).</summary>
    public void SaveSummary()
    {
        lock (stateFileGate)
            if (Summary is { } summary) AtomicFile.WriteAllText(Path.Combine(Directory, SummaryFile), summary + "\n");
    }

    StreamWriter OpenAppend(string name) =>
        new(new FileStream(Path.Combine(Directory, name), FileMode.Append, FileAccess.Write, FileShare.Read), new UTF8Encoding(false)) { AutoFlush = true };

    public int PendingHistoryCount { get { lock (gate) return pendingHistory.Count; } }

    /// <summary>Writes <paramref name="bytes"/> to files/<paramref name="name"/> (whole, then renamed), to be uploaded as the
    /// run file <paramref name="name"/>. Written before the row that names it, so a row never names a file the folder lacks.</summary>
    public void AddFile(string name, byte[] bytes)
    {
        if (name.Contains("..", StringComparison.Ordinal) || Path.IsPathRooted(name)) throw new ArgumentException($"run file name '{name}' must be relative");
        string target = Path.Combine(Directory, FilesFolder, name);
        System.IO.Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        AtomicFile.Write(target, stream => stream.Write(bytes));
    }

    /// <summary>Run files in files/ the server does not have yet, by name ('/'-separated), in name order.</summary>
    public IReadOnlyList<string> PendingFiles
    {
        get
        {
            string root = Path.Combine(Directory, FilesFolder);
            if (!System.IO.Directory.Exists(root)) return [];
            var uploaded = State.FilesUploaded.ToHashSet(StringComparer.Ordinal);
            return System.IO.Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
                .Where(f => !Path.GetFileName(f).Contains(".tmp-", StringComparison.Ordinal)) // AtomicFile's temporaries
                .Select(f => Path.GetRelativePath(root, f).Replace(Path.DirectorySeparatorChar, '/'))
                .Where(n => !uploaded.Contains(n)).Order(StringComparer.Ordinal).ToList();
        }
    }

    public string FilePath(string name) => Path.Combine(Directory, FilesFolder, name.Replace('/', Path.DirectorySeparatorChar));

    public void MarkUploaded(string name) => Update(s => s with { FilesUploaded = [.. s.FilesUploaded, name] });

    /// <summary>Everything sent, and the completion too if Finish asked for one.</summary>
    public bool Delivered
    {
        get
        {
            lock (gate)
                if (!(pendingHistory.Count == 0 && pendingOutput.Count == 0 && !summaryDirty && (state.ExitCode is null || state.CompleteSent))) return false;
            return PendingFiles.Count == 0;
        }
    }

    /// <summary>The next lines to send, at most <paramref name="maxLines"/> of each file, with the offsets they start at; null when nothing is pending.</summary>
    public WandbBatch? TakeBatch(int maxLines)
    {
        lock (gate)
        {
            if (pendingHistory.Count == 0 && pendingOutput.Count == 0 && !summaryDirty) return null;
            return new WandbBatch(
                state.HistorySent, pendingHistory.Take(maxLines).ToArray(),
                state.OutputSent, pendingOutput.Take(maxLines).ToArray(),
                summaryDirty ? summaryJson : null);
        }
    }

    /// <summary>Records that the server has <paramref name="batch"/>.</summary>
    public void Commit(WandbBatch batch)
    {
        lock (gate)
        {
            pendingHistory.RemoveRange(0, batch.History.Count);
            pendingOutput.RemoveRange(0, batch.Output.Count);
            if (batch.Summary is not null && ReferenceEquals(batch.Summary, summaryJson)) summaryDirty = false;
            state = state with
            {
                HistorySent = state.HistorySent + batch.History.Count,
                OutputSent = state.OutputSent + batch.Output.Count,
                SummarySent = !summaryDirty,
            };
        }
        SaveState();
        SaveSummary();
    }

    public void SaveState()
    {
        // Snapshot inside the file lock, so the file never goes back to an older state than one already written.
        lock (stateFileGate) AtomicFile.WriteAllText(Path.Combine(Directory, StateFile), JsonSerializer.Serialize(State, StateJson));
    }

    public void Dispose()
    {
        lock (gate)
        {
            historyWriter?.Dispose();
            outputWriter?.Dispose();
            historyWriter = outputWriter = null;
        }
    }
}

/// <summary>Lines of history.jsonl and output.log to send from the given offsets, and the summary if it changed.</summary>
sealed record WandbBatch(long HistoryOffset, IReadOnlyList<string> History, long OutputOffset, IReadOnlyList<string> Output, string? Summary)
{
    public FileStreamRequest ToRequest()
    {
        var files = new Dictionary<string, FileStreamChunk>();
        if (History.Count > 0) files[WandbApi.HistoryFile] = new FileStreamChunk(HistoryOffset, History);
        if (Summary is not null) files[WandbApi.SummaryFile] = new FileStreamChunk(0, [Summary]);
        if (Output.Count > 0) files[WandbApi.OutputFile] = new FileStreamChunk(OutputOffset, Output);
        return new FileStreamRequest { Files = files };
    }
}
