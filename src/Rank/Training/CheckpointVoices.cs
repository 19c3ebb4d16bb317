using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Training;

/// <summary>A voice a checkpoint speaks: the speaker's name, the codec row its custom_voice export stores it in, and
/// the fp32 mean speaker embedding of the run's reference clips for that speaker.</summary>
public sealed record CheckpointVoice(string Name, int CodecRow, float[] Embedding);

/// <summary>The speaker table every training checkpoint carries (<see cref="FileName"/> beside the weights), so
/// <c>synthesize --model output/best --speaker NAME</c> and <c>export-voice</c> work from any checkpoint, not only from
/// the final custom_voice export. The embeddings are computed once per run by the frozen speaker encoder, and a resumed
/// run takes them from its checkpoint: they never depend on the trained weights.
/// One fp32 [hidden] tensor per speaker, named by the speaker; the metadata maps each name to its codec row.</summary>
public static class CheckpointVoices
{
    public const string FileName = "speakers.safetensors";
    const string RowsKey = "codec_rows";

    public static void Write(string dir, IReadOnlyList<CheckpointVoice> voices)
    {
        using var scope = NewDisposeScope();
        var rows = new JsonObject();
        foreach (var v in voices) rows[v.Name] = v.CodecRow;
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt", ["content"] = "qwen3tts checkpoint voices: mean speaker embeddings (fp32)", [RowsKey] = rows.ToJsonString(),
        };
        Safetensors.Save(Path.Combine(dir, FileName), voices.Select(v => (v.Name, tensor(v.Embedding))).ToList(), metadata);
    }

    /// <summary>The voices of the checkpoint at <paramref name="dir"/>; empty when it has no table (a model folder, or
    /// a checkpoint written before checkpoints spoke).</summary>
    public static IReadOnlyList<CheckpointVoice> Read(string dir)
    {
        string path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) return [];
        using var file = SafetensorsFile.Open(path);
        if (!file.Metadata.TryGetValue(RowsKey, out string? rowsText))
            throw new CheckpointException($"{path}: no '{RowsKey}' in the metadata; not a speaker table this program wrote");
        JsonObject rows;
        try { rows = JsonNode.Parse(rowsText) as JsonObject ?? throw new JsonException("not an object"); }
        catch (JsonException e) { throw new CheckpointException($"{path}: metadata '{RowsKey}' is not a JSON object of codec rows: {e.Message}"); }
        var voices = new List<CheckpointVoice>();
        foreach (var entry in file.Entries)
        {
            if (rows[entry.Name] is not JsonValue row || !row.TryGetValue(out int codecRow))
                throw new CheckpointException($"{path}: speaker '{entry.Name}' has no codec row in the metadata");
            using var t = file.Read(entry.Name, ScalarType.Float32);
            voices.Add(new CheckpointVoice(entry.Name, codecRow, t.data<float>().ToArray()));
        }
        return voices;
    }

    /// <summary>The checkpoint's Base config turned custom_voice for <paramref name="voices"/>: tts_model_type
    /// custom_voice, spk_id {name: row}, spk_is_dialect {name: false}; every other key kept.</summary>
    public static JsonObject CustomVoiceConfig(JsonObject baseConfig, IReadOnlyList<CheckpointVoice> voices)
    {
        var json = (JsonObject)baseConfig.DeepClone();
        json["tts_model_type"] = "custom_voice";
        if (json["talker_config"] is not JsonObject talker) throw new ConfigException("the Base config has no talker_config object");
        var ids = new JsonObject();
        var dialects = new JsonObject();
        foreach (var v in voices)
        {
            ids[v.Name] = v.CodecRow;
            dialects[v.Name] = false;
        }
        talker["spk_id"] = ids;
        talker["spk_is_dialect"] = dialects;
        return json;
    }

    /// <summary>The checkpoint at <paramref name="dir"/> as the custom_voice model its export would be, in memory: the
    /// Base weights without the speaker encoder, each voice's embedding in its codec row. Null when the folder has no
    /// speaker table.</summary>
    public static Qwen3TtsModel? LoadSpeaking(string dir, ScalarType dtype)
    {
        var voices = Read(dir);
        if (voices.Count == 0) return null;
        string configPath = Path.Combine(dir, ModelDirectory.ConfigFile);
        var baseConfig = Qwen3TtsConfig.Load(configPath);
        var config = Qwen3TtsConfig.Parse(CustomVoiceConfig(baseConfig.Json, voices), $"{configPath} (speaking as {string.Join(", ", voices.Select(v => v.Name))})");
        var model = new Qwen3TtsModel(config, dtype: dtype);
        try
        {
            var report = CheckpointLoader.Load(model, dir, strict: false);
            var stray = report.Unexpected.Where(k => !k.StartsWith("speaker_encoder.", StringComparison.Ordinal)).ToList();
            if (report.Missing.Count > 0 || report.Mismatched.Count > 0 || stray.Count > 0)
                throw new CheckpointException($"{dir}: the weights do not fit the custom voice model: " + report.Describe());
            using var noGrad = no_grad();
            var codec = model.state_dict()[VoiceExport.CodecEmbedding];
            foreach (var v in voices)
            {
                if (v.CodecRow < 0 || v.CodecRow >= codec.shape[0] || v.Embedding.Length != codec.shape[1])
                    throw new CheckpointException(string.Create(CultureInfo.InvariantCulture,
                        $"{dir}: voice '{v.Name}' (row {v.CodecRow}, width {v.Embedding.Length}) does not fit the codec embedding [{codec.shape[0]}, {codec.shape[1]}]"));
                using var row = tensor(v.Embedding);
                codec[v.CodecRow].copy_(row.to(codec.dtype));
            }
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
