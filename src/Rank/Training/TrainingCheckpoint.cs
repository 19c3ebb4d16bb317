using System.Collections;
using System.Text;
using System.Text.Json.Nodes;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Checkpoint;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Training;

/// <summary>A training checkpoint read back: <see cref="Directory"/> is a complete model directory (load it with
/// <see cref="ModelDirectory.Load"/> or <see cref="CheckpointLoader.Load"/>), with the trainer state and the
/// optimizer tensors (CPU, stored dtypes, owned by this object until <see cref="Dispose"/>).</summary>
public sealed class LoadedTrainingCheckpoint(string directory, TrainerState state, IReadOnlyDictionary<string, Tensor> optimizer) : IDisposable
{
    public string Directory { get; } = directory;
    /// <summary>model.safetensors, or model.safetensors.index.json when the weights were sharded (above 5 GB).</summary>
    public string WeightsPath { get; } = File.Exists(Path.Combine(directory, CheckpointFiles.SingleFileName))
        ? Path.Combine(directory, CheckpointFiles.SingleFileName)
        : Path.Combine(directory, CheckpointFiles.IndexFileName);
    public TrainerState State { get; } = state;
    public IReadOnlyDictionary<string, Tensor> Optimizer { get; } = optimizer;

    public void Dispose()
    {
        foreach (var t in Optimizer.Values) t.Dispose();
    }
}

/// <summary>A training checkpoint folder: a complete model directory (config.json, the companion files of the
/// init model, model.safetensors with every weight, the speaker encoder's included, so a run can resume:
/// upstream #204) plus <c>training_state/optimizer.safetensors</c> and <c>training_state/trainer_state.json</c>.
/// Written whole through <see cref="AtomicDirectory"/>: a crash leaves the previous checkpoint or the new one.</summary>
public static class TrainingCheckpoint
{
    public const string StateFolder = "training_state";
    public const string OptimizerFile = "optimizer.safetensors";
    public const string StateFile = "trainer_state.json";

    /// <summary>Stages reported to the test seam before each runs, in order; then the <see cref="AtomicDirectory"/> ones.</summary>
    public static readonly IReadOnlyList<string> WriteStages = ["weights", "config", "companions", "optimizer", "trainer_state"];

    public static IReadOnlyList<string> AllStages { get; } =
        [.. WriteStages, AtomicDirectory.RenameOld, AtomicDirectory.RenameNew, AtomicDirectory.DeleteOld];

    /// <summary>Saves <paramref name="model"/>'s whole state dict (in its own dtypes) with its config.</summary>
    public static void Save(string dir, Qwen3TtsModel model, string initModelDir, IReadOnlyDictionary<string, Tensor> optimizer,
        TrainerState state, Action<string>? beforeStep = null, IReadOnlyList<CheckpointVoice>? voices = null) =>
        Save(dir, model.Config.Json, model.state_dict().Select(kv => (kv.Key, kv.Value)), initModelDir, optimizer, state, beforeStep, voices);

    /// <summary>Writes the checkpoint folder <paramref name="dir"/> (replacing one that exists): the given weights
    /// and config, the companion files copied from <paramref name="initModelDir"/>, the optimizer tensors bit for
    /// bit and the state, and the run's <paramref name="voices"/> (<see cref="CheckpointVoices"/>), so the checkpoint speaks by
    /// name. <paramref name="beforeStep"/> is a test seam called with each stage name
    /// (<see cref="AllStages"/>); an exception from it stands for a crash at that point.</summary>
    /// <param name="fill">makes the data of weights or optimizer tensors given as meta-device placeholders, one at a
    /// time as they are written (ZeRO: gathered from every rank's shard; see Safetensors.Save).</param>
    public static void Save(string dir, JsonObject config, IEnumerable<(string Name, Tensor Tensor)> weights, string initModelDir,
        IReadOnlyDictionary<string, Tensor> optimizer, TrainerState state, Action<string>? beforeStep = null,
        IReadOnlyList<CheckpointVoice>? voices = null, Func<string, Tensor>? fill = null)
    {
        var missing = ModelDirectory.CompanionFiles.Where(f => !File.Exists(Path.Combine(initModelDir, f))).ToList();
        if (missing.Count > 0)
            throw new TrainingCheckpointException($"{initModelDir}: the init model directory lacks {string.Join(", ", missing)}, "
                + "which every checkpoint copies to stay a complete model directory; re-create it with init-model or copy them from the released model");
        string configText = config.ToJsonString(new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n";
        string stateText = state.ToJson();
        SecretGuard.Check(configText, "config.json");
        SecretGuard.Check(stateText, StateFile);

        AtomicDirectory.Replace(dir, temp =>
        {
            Directory.CreateDirectory(temp);
            beforeStep?.Invoke("weights");
            CheckpointFiles.Save(temp, weights, fill: fill);
            beforeStep?.Invoke("config");
            AtomicDirectory.WriteFile(Path.Combine(temp, ModelDirectory.ConfigFile), s => s.Write(Encoding.UTF8.GetBytes(configText)));
            beforeStep?.Invoke("companions");
            foreach (var file in ModelDirectory.CompanionFiles)
                AtomicDirectory.CopyFile(Path.Combine(initModelDir, file), Path.Combine(temp, file));
            if (voices is { Count: > 0 }) CheckpointVoices.Write(temp, voices);
            string stateDir = Directory.CreateDirectory(Path.Combine(temp, StateFolder)).FullName;
            beforeStep?.Invoke("optimizer");
            Safetensors.Save(Path.Combine(stateDir, OptimizerFile), optimizer.Select(kv => (kv.Key, kv.Value)), fill: fill);
            beforeStep?.Invoke("trainer_state");
            AtomicDirectory.WriteFile(Path.Combine(stateDir, StateFile), s => s.Write(Encoding.UTF8.GetBytes(stateText)));
        }, beforeStep);
    }

    /// <summary>The files of a complete checkpoint that <paramref name="dir"/> lacks (relative paths); empty when complete.</summary>
    public static IReadOnlyList<string> MissingFiles(string dir)
    {
        var missing = new List<string>();
        foreach (var file in ModelDirectory.CompanionFiles.Prepend(ModelDirectory.ConfigFile))
            if (!File.Exists(Path.Combine(dir, file))) missing.Add(file);
        if (!ModelDirectory.HasWeights(dir)) missing.Add($"{CheckpointFiles.SingleFileName} (or {CheckpointFiles.IndexFileName})");
        foreach (var file in new[] { OptimizerFile, StateFile })
            if (!File.Exists(Path.Combine(dir, StateFolder, file))) missing.Add($"{StateFolder}/{file}");
        return missing;
    }

    /// <summary>Only the trainer state of the checkpoint at <paramref name="dir"/> (or its <c>.old</c> copy).</summary>
    public static TrainerState ReadState(string dir)
    {
        string found = Find(dir);
        string path = Path.Combine(found, StateFolder, StateFile);
        if (!File.Exists(path)) throw new TrainingCheckpointException($"{found}: not a training checkpoint: {StateFolder}/{StateFile} is missing");
        return TrainerState.FromJson(File.ReadAllText(path), path);
    }

    /// <summary>Opens the checkpoint at <paramref name="dir"/> (or, after a crash between the two renames of a save,
    /// its <c>.old</c> copy), checking that every file is there, and reads its state and optimizer tensors.</summary>
    public static LoadedTrainingCheckpoint Load(string dir)
    {
        string found = Find(dir);
        var missing = MissingFiles(found);
        if (missing.Count > 0)
            throw new TrainingCheckpointException($"{found}: incomplete training checkpoint, missing {string.Join(", ", missing)}");
        var state = ReadState(found);
        var optimizer = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            using var files = CheckpointFiles.Open(Path.Combine(found, StateFolder, OptimizerFile));
            foreach (var entry in files.Entries) optimizer[entry.Name] = files.Read(entry.Name);
        }
        catch
        {
            foreach (var t in optimizer.Values) t.Dispose();
            throw;
        }
        return new LoadedTrainingCheckpoint(found, state, optimizer);
    }

    static string Find(string dir) => AtomicDirectory.Locate(dir)
        ?? throw new TrainingCheckpointException($"{Path.GetFullPath(dir)}: no such training checkpoint folder");
}

/// <summary>Refuses to write text that holds the value of a secret-looking environment variable (WANDB_API_KEY,
/// HF_TOKEN, ...): checkpoints get copied and shared; keys must never travel with them.</summary>
static class SecretGuard
{
    public static void Check(string text, string file)
    {
        if (Qwen3Tts.Entry.SecretValues.FoundIn(text, Qwen3Tts.Entry.SecretValues.Current()) is { } name)
            throw new TrainingCheckpointException($"{file} would contain the value of the environment variable {name}; "
                + "refusing to write a secret into a checkpoint. Remove it from the config or trainer state.");
    }
}
