using System.Text.Json;
using System.Text.Json.Nodes;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Codec;
using Qwen3Tts.Model.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model;

/// <summary>A model directory in the released layout: config.json, generation_config.json,
/// preprocessor_config.json, tokenizer_config.json, vocab.json, merges.txt and the weights
/// (model.safetensors, or shards + model.safetensors.index.json).</summary>
public static class ModelDirectory
{
    public const string ConfigFile = "config.json";

    /// <summary>Files that travel with a checkpoint unchanged (the released ones are embedded as defaults).</summary>
    public static readonly IReadOnlyList<string> CompanionFiles = new[]
    {
        "generation_config.json", "preprocessor_config.json", "tokenizer_config.json", "vocab.json", "merges.txt",
    };

    /// <summary>Resolves --config: a preset name (tiny, 0.6b, 1.7b) or a path to a config.json (or its folder).</summary>
    public static (JsonObject Json, string Source, string? CompanionDir, string ReferenceCheckpoint) ResolveConfig(string spec)
    {
        if (Presets.Names.Contains(spec))
            return (Presets.ConfigJson(spec), $"preset '{spec}'", null, Presets.ReferenceCheckpoint(spec));
        string path = Directory.Exists(spec) ? Path.Combine(spec, ConfigFile) : spec;
        if (!File.Exists(path))
            throw new ConfigException($"--config '{spec}': not a preset ({string.Join(", ", Presets.Names)}) and no such file");
        var json = Qwen3TtsConfig.ReadJson(path);
        string reference = json["tts_model_size"]?.ToString() == "0b6" ? Presets.ReferenceCheckpoint("0.6b") : Presets.ReferenceCheckpoint("1.7b");
        return (json, path, Path.GetDirectoryName(Path.GetFullPath(path)), reference);
    }

    /// <summary>Writes a complete model directory with seeded random weights (init-model).
    /// Weights are drawn in fp32 and stored in <paramref name="dtype"/>.</summary>
    public static Qwen3TtsConfig CreateRandom(string outDir, string configSpec, ulong seed, ScalarType dtype)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentException($"--dtype must be fp32 or bf16, not {dtype}");
        var (json, source, companionDir, reference) = ResolveConfig(configSpec);
        var config = Qwen3TtsConfig.Parse(json, source);
        Directory.CreateDirectory(outDir);

        using (var scope = NewDisposeScope())
        {
            var model = new Qwen3TtsModel(config);
            ModelInit.Initialize(model, seed, config.Talker.InitializerRange);
            var tensors = model.state_dict().Select(kv => (kv.Key, dtype == ScalarType.Float32 ? kv.Value : kv.Value.to(dtype)));
            CheckpointFiles.Save(outDir, tensors);
            model.Dispose();
        }
        WriteConfig(outDir, config.Json);
        foreach (var file in CompanionFiles)
        {
            string target = Path.Combine(outDir, file);
            string? local = companionDir is null ? null : Path.Combine(companionDir, file);
            if (local is not null && File.Exists(local) && Path.GetFullPath(local) != Path.GetFullPath(target)) File.Copy(local, target, overwrite: true);
            else if (local is null || !File.Exists(local)) WriteEmbedded(file, reference, target);
        }
        WriteRandomSpeechTokenizer(outDir, configSpec, config, companionDir, seed, reference);
        return config;
    }

    /// <summary>speech_tokenizer/ beside the model, as released: the preset's (tiny widths for the tiny model), or the
    /// config path's own speech_tokenizer/config.json when its folder has one. Always fp32, as released.</summary>
    static void WriteRandomSpeechTokenizer(string outDir, string configSpec, Qwen3TtsConfig config, string? companionDir, ulong seed, string reference)
    {
        string? local = companionDir is null ? null : Path.Combine(companionDir, SpeechTokenizerConfig.FolderName, ConfigFile);
        string target = Path.Combine(outDir, SpeechTokenizerConfig.FolderName);
        if (local is not null && File.Exists(local))
            SpeechTokenizerLayout.WriteRandom(target, Qwen3TtsConfig.ReadJson(local), local, seed, reference); // read before anything is written
        else
        {
            string preset = Presets.Names.Contains(configSpec) ? configSpec : config.TtsModelSize == "tiny" ? "tiny" : "1.7b";
            SpeechTokenizerLayout.WriteRandom(target, SpeechTokenizerConfig.ConfigJson(preset), $"speech tokenizer preset '{preset}'", seed, reference);
        }
    }

    static void WriteEmbedded(string file, string reference, string target)
    {
        string resource = file is "vocab.json" or "merges.txt" ? $"qwen3-text-tokenizer/{file}" : $"{reference}/{file}";
        using var source = Presets.OpenReference(resource);
        AtomicFile.Write(target, stream => source.CopyTo(stream));
    }

    public static void WriteConfig(string dir, JsonObject json) =>
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigFile), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");

    /// <summary>True when the directory holds weights (a single file or a sharded index).</summary>
    public static bool HasWeights(string dir) =>
        File.Exists(Path.Combine(dir, "model.safetensors")) || File.Exists(Path.Combine(dir, "model.safetensors.index.json"));

    /// <summary>Loads config and weights (strict: every tensor present with the right shape).</summary>
    public static Qwen3TtsModel Load(string dir, ScalarType dtype = ScalarType.Float32, Device? device = null, bool strict = true) =>
        Load(dir, Qwen3TtsConfig.Load(Path.Combine(dir, ConfigFile)), dtype, device, strict);

    /// <summary>The folder's weights under <paramref name="config"/>, a config of the same shapes (e.g. with a language added).</summary>
    public static Qwen3TtsModel Load(string dir, Qwen3TtsConfig config, ScalarType dtype = ScalarType.Float32, Device? device = null, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (!HasWeights(dir)) throw new CheckpointException($"{dir}: no model.safetensors or model.safetensors.index.json");
        var model = new Qwen3TtsModel(config, device, dtype);
        CheckpointLoader.Load(model, dir, strict);
        return model;
    }
}

/// <summary>Write-to-temp-then-rename, so a crash never leaves a half-written file under the final name.</summary>
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> write)
    {
        string tmp = path + $".tmp-{Environment.ProcessId}";
        try
        {
            using (var stream = new FileStream(tmp, FileMode.Create, FileAccess.Write))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    public static void WriteAllText(string path, string text) =>
        Write(path, stream => { using var w = new StreamWriter(stream, leaveOpen: true); w.Write(text); });
}
