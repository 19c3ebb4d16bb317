using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Training;

/// <summary>Exports a fine-tuned Base model as a custom_voice model directory with one speaker, as the reference
/// (sft_12hz.py, end of each epoch) does, but with the mean embedding of every training row rather than the first
/// batch's first one, and without writing into the live model's weights.</summary>
public static class VoiceExport
{
    /// <summary>The codec row the reference stores the new speaker's embedding in, and its spk_id.</summary>
    public const int SpeakerRow = 3000;

    public const string CodecEmbedding = AddedLanguage.CodecEmbedding;
    const string SpeakerEncoderPrefix = "speaker_encoder.";

    /// <summary>The Base config JSON turned custom_voice: tts_model_type = "custom_voice",
    /// talker_config.spk_id = {speaker: 3000}, talker_config.spk_is_dialect = {speaker: false}; every other key kept.</summary>
    public static JsonObject CustomVoiceConfig(JsonObject baseConfig, string speaker) =>
        CheckpointVoices.CustomVoiceConfig(baseConfig, [new CheckpointVoice(speaker, SpeakerRow, [])]);

    /// <summary>Writes <paramref name="outDir"/> (replacing it atomically): the Base directory's companion files (and
    /// speech_tokenizer/ when it has one), its config turned custom_voice for <paramref name="speaker"/>, and the
    /// trained weights minus speaker_encoder.* with codec row 3000 set to <paramref name="meanEmbedding"/> [hidden]
    /// (cast to the stored dtype). The weights are checked against the custom_voice layout before anything is written.</summary>
    public static void Export(string outDir, string baseModelDir, string speaker, Qwen3TtsModel trained, Tensor meanEmbedding) =>
        Export(outDir, baseModelDir, speaker, trained.state_dict().Select(kv => (kv.Key, kv.Value)), meanEmbedding);

    public static void Export(string outDir, string baseModelDir, string speaker,
        IEnumerable<(string Name, Tensor Tensor)> trainedWeights, Tensor meanEmbedding, string? speechTokenizerDir = null, JsonObject? source = null)
    {
        if (string.IsNullOrWhiteSpace(speaker)) throw new ArgumentException("the speaker name must not be empty", nameof(speaker));
        long[] shape = meanEmbedding.shape;
        if (shape.Length != 1) throw new ArgumentException($"the mean speaker embedding must be [hidden], got [{string.Join(", ", shape)}]", nameof(meanEmbedding));
        float[] embedding;
        using (var cpu = meanEmbedding.detach().to(ScalarType.Float32).cpu()) embedding = cpu.data<float>().ToArray();
        Export(outDir, baseModelDir, [new CheckpointVoice(speaker, SpeakerRow, embedding)], trainedWeights, speechTokenizerDir, source);
    }

    /// <summary>Writes <paramref name="outDir"/> as a custom_voice model speaking as every voice of <paramref name="voices"/>:
    /// each one's mean embedding in its codec row, and spk_id / spk_is_dialect naming them all.</summary>
    public static void Export(string outDir, string baseModelDir, IReadOnlyList<CheckpointVoice> voices,
        IEnumerable<(string Name, Tensor Tensor)> trainedWeights, string? speechTokenizerDir = null, JsonObject? source = null)
    {
        ArgumentNullException.ThrowIfNull(voices);
        if (voices.Count == 0) throw new ArgumentException("a custom voice export needs at least one voice", nameof(voices));
        if (voices.Any(v => string.IsNullOrWhiteSpace(v.Name))) throw new ArgumentException("the speaker name must not be empty", nameof(voices));
        string configPath = Path.Combine(baseModelDir, ModelDirectory.ConfigFile);
        var baseConfig = Qwen3TtsConfig.Load(configPath);
        if (baseConfig.TtsModelType != "base")
            throw new ConfigException($"{configPath}: tts_model_type is '{baseConfig.TtsModelType}'; a custom voice is exported from a fine-tuned Base model");
        var missingCompanions = ModelDirectory.CompanionFiles.Where(f => !File.Exists(Path.Combine(baseModelDir, f))).ToList();
        if (missingCompanions.Count > 0)
            throw new TrainingCheckpointException($"{baseModelDir}: the Base model directory lacks {string.Join(", ", missingCompanions)}");

        var json = CheckpointVoices.CustomVoiceConfig(baseConfig.Json, voices);
        var config = Qwen3TtsConfig.Parse(json, $"{configPath} (as custom_voice)");
        long hidden = config.Talker.HiddenSize;
        foreach (var v in voices)
        {
            if (v.CodecRow < 0 || v.CodecRow >= config.Talker.VocabSize)
                throw new ConfigException($"{configPath}: talker_config.vocab_size is {config.Talker.VocabSize}; the speaker row {v.CodecRow} of '{v.Name}' does not fit");
            if (v.Embedding.Length != hidden)
                throw new ArgumentException($"the mean speaker embedding of '{v.Name}' must be [{hidden}] (talker hidden size), got [{v.Embedding.Length}]", nameof(voices));
            if (v.Embedding.Any(x => !float.IsFinite(x))) throw new ArgumentException($"the mean speaker embedding of '{v.Name}' has non-finite values", nameof(voices));
        }

        using var scope = NewDisposeScope();
        var weights = new List<(string Name, Tensor Tensor)>();
        foreach (var (name, t) in trainedWeights)
        {
            if (name.StartsWith(SpeakerEncoderPrefix, StringComparison.Ordinal)) continue;
            if (name != CodecEmbedding) { weights.Add((name, t)); continue; }
            // A copy: the reference writes into state_dict() tensors, which on CPU are the live model's.
            var codec = t.detach().cpu().clone();
            using (no_grad())
                foreach (var v in voices)
                    codec[v.CodecRow].copy_(tensor(v.Embedding).to(codec.dtype));
            weights.Add((name, codec));
        }
        CheckLayout(config, weights, configPath);

        string configText = json.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n";
        SecretGuard.Check(configText, ModelDirectory.ConfigFile);
        AtomicDirectory.Replace(outDir, temp =>
        {
            Directory.CreateDirectory(temp);
            CheckpointFiles.Save(temp, weights);
            AtomicDirectory.WriteFile(Path.Combine(temp, ModelDirectory.ConfigFile), s => s.Write(Encoding.UTF8.GetBytes(configText)));
            foreach (var file in ModelDirectory.CompanionFiles)
                AtomicDirectory.CopyFile(Path.Combine(baseModelDir, file), Path.Combine(temp, file));
            string speechTokenizer = speechTokenizerDir ?? Path.Combine(baseModelDir, "speech_tokenizer");
            if (Directory.Exists(speechTokenizer)) AtomicDirectory.CopyTree(speechTokenizer, Path.Combine(temp, "speech_tokenizer"));
            if (source is not null)
                AtomicDirectory.WriteFile(Path.Combine(temp, SourceFile), s => s.Write(Encoding.UTF8.GetBytes(source.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n")));
        });
    }

    /// <summary>Beside an export from a checkpoint: which checkpoint (full path), its global step, and the speaker.</summary>
    public const string SourceFile = "exported_from.json";

    /// <summary>Exports the training checkpoint <paramref name="checkpointDir"/> (best/, last/, epoch-N/, checkpoint-N/) as
    /// a custom_voice model speaking as <paramref name="speaker"/> (default: its only voice), from the checkpoint's own
    /// weights, config, companions and speaker table, with the base model's speech_tokenizer/ when the trainer state
    /// names one. <see cref="SourceFile"/> says which checkpoint it came from.</summary>
    public static void FromCheckpoint(string checkpointDir, string outDir, string? speaker = null)
    {
        var state = TrainingCheckpoint.ReadState(checkpointDir);
        var voices = CheckpointVoices.Read(checkpointDir);
        if (voices.Count == 0)
            throw new TrainingCheckpointException($"{checkpointDir}: the checkpoint has no {CheckpointVoices.FileName} (written by runs before checkpoints " +
                "carried their voice); export from a checkpoint of a newer run, or from the run's custom_voice/");
        // Every voice of the checkpoint, or the one named.
        var chosen = speaker is null ? voices
            : [voices.FirstOrDefault(v => v.Name == speaker)
              ?? throw new ArgumentException($"--speaker {speaker}: {checkpointDir} speaks as {string.Join(", ", voices.Select(v => v.Name))}")];
        string? speechTokenizer = state.BaseModel is { Length: > 0 } baseModel && Directory.Exists(Path.Combine(baseModel, "speech_tokenizer"))
            ? Path.Combine(baseModel, "speech_tokenizer") : null;
        var source = new JsonObject
        {
            ["checkpoint"] = Path.GetFullPath(checkpointDir), ["global_step"] = state.GlobalStep,
        };
        if (chosen.Count == 1) (source["speaker"], source["codec_row"]) = (chosen[0].Name, chosen[0].CodecRow);
        else source["speakers"] = new JsonObject(chosen.Select(v => KeyValuePair.Create(v.Name, (JsonNode?)v.CodecRow)));
        using var scope = NewDisposeScope();
        using var weights = CheckpointFiles.Open(checkpointDir);
        Export(outDir, checkpointDir, chosen, weights.Entries.Select(e => (e.Name, weights.Read(e.Name))), speechTokenizer, source);
    }

    /// <summary>The exported weights must be exactly the custom_voice model's state dict, so it loads strictly.</summary>
    static void CheckLayout(Qwen3TtsConfig config, List<(string Name, Tensor Tensor)> weights, string source)
    {
        using var model = new Qwen3TtsModel(config, new Device("meta"));
        var expected = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        var given = weights.ToDictionary(w => w.Name, w => w.Tensor.shape);
        var missing = expected.Keys.Where(k => !given.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        var unexpected = given.Keys.Where(k => !expected.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        var misshaped = expected.Where(kv => given.TryGetValue(kv.Key, out var s) && !s.SequenceEqual(kv.Value))
            .Select(kv => $"{kv.Key}: expected [{string.Join(", ", kv.Value)}], got [{string.Join(", ", given[kv.Key])}]").ToList();
        if (missing.Count + unexpected.Count + misshaped.Count == 0) return;
        var text = new StringBuilder($"the trained weights do not match the custom_voice model built from {source}:");
        if (missing.Count > 0) text.Append($"\n  missing: {string.Join(", ", missing.Take(10))}{(missing.Count > 10 ? $" and {missing.Count - 10} more" : "")}");
        if (unexpected.Count > 0) text.Append($"\n  unexpected: {string.Join(", ", unexpected.Take(10))}{(unexpected.Count > 10 ? $" and {unexpected.Count - 10} more" : "")}");
        if (misshaped.Count > 0) text.Append($"\n  mismatched: {string.Join("; ", misshaped.Take(10))}");
        throw new TrainingCheckpointException(text.ToString());
    }
}
