using System.Text.Json.Nodes;

namespace Qwen3Tts.Model.Config;

/// <summary>The rows of the talker's codec embedding above the codes: the special tags, the languages
/// (codec_language_id) and the speakers (spk_id). New languages and voices take rows nothing names yet, at or above the
/// first named row, so codebook 0's range (<see cref="CodeBounds"/>) never shrinks.</summary>
public static class CodecRows
{
    /// <summary>Every row the config gives a meaning.</summary>
    public static IReadOnlySet<int> Named(TalkerConfig t)
    {
        ArgumentNullException.ThrowIfNull(t);
        return new[] { t.CodecPadId, t.CodecBosId, t.CodecEosTokenId, t.CodecThinkId, t.CodecNothinkId, t.CodecThinkBosId, t.CodecThinkEosId }
            .Concat(t.CodecLanguageId.Values).Concat(t.SpkId.Values).Where(id => id >= 0).ToHashSet();
    }

    /// <summary>The lowest row at or above the first named one that neither the config nor <paramref name="taken"/>
    /// names; null when the vocabulary has none left.</summary>
    public static int? LowestFree(TalkerConfig t, IEnumerable<int>? taken = null)
    {
        var used = Named(t).Concat(taken ?? []).ToHashSet();
        int first = CodeBounds.Of(t).FirstCodebook;
        for (int row = first; row < t.VocabSize; row++)
            if (!used.Contains(row)) return row;
        return null;
    }

    /// <summary>The row upstream's single-voice export uses, where speaker rows start.</summary>
    public const int FirstSpeakerRow = 3000;

    /// <summary>Rows for <paramref name="count"/> new speakers: the free rows from <see cref="FirstSpeakerRow"/> up, then
    /// below it down to the first named row; never a row the config (special tags, languages, its own speakers) names.</summary>
    public static IReadOnlyList<int> SpeakerRows(TalkerConfig t, int count)
    {
        var used = Named(t);
        int first = CodeBounds.Of(t).FirstCodebook, start = Math.Min(FirstSpeakerRow, t.VocabSize - 1);
        var rows = Enumerable.Range(start, t.VocabSize - start).Concat(Enumerable.Range(first, Math.Max(0, start - first)).Reverse())
            .Where(r => !used.Contains(r)).Take(count).ToList();
        if (rows.Count < count)
            throw new ConfigException($"the talker's codec vocabulary ({t.VocabSize} rows) has {rows.Count} free rows for {count} speakers; " +
                "train fewer at once (--max_speakers)");
        return rows;
    }

    /// <summary>The config with a new language tag: <paramref name="name"/> (lower case, as the released keys are) at
    /// the lowest free row. A language the config already has is returned as it is, with its row.</summary>
    public static (Qwen3TtsConfig Config, int Row, bool Added) AddLanguage(Qwen3TtsConfig config, string name)
    {
        ArgumentNullException.ThrowIfNull(config);
        string key = (name ?? "").Trim().ToLowerInvariant();
        if (key.Length == 0 || key == "auto") throw new ArgumentException($"--add_language: '{name}' is not a language name");
        if (config.Talker.CodecLanguageId.TryGetValue(key, out int existing)) return (config, existing, false);
        int row = LowestFree(config.Talker) ?? throw new ConfigException(
            $"--add_language {key}: the talker's codec vocabulary ({config.Talker.VocabSize} rows) has no free row left; every row from " +
            $"{CodeBounds.Of(config.Talker).FirstCodebook} up is a special tag, a language or a speaker");
        var json = (JsonObject)config.Json.DeepClone();
        if (json["talker_config"] is not JsonObject talker) throw new ConfigException("the config has no talker_config object");
        if (talker["codec_language_id"] is not JsonObject languages) talker["codec_language_id"] = languages = new JsonObject();
        languages[key] = row;
        return (Qwen3TtsConfig.Parse(json, $"the config with language '{key}' added"), row, true);
    }
}

/// <summary>A language added to a model for fine-tuning: its codec row starts as the mean of the existing language rows
/// (a language tag the model has never seen, placed among the ones it knows), and is trained from there.</summary>
public static class AddedLanguage
{
    public const string CodecEmbedding = "talker.model.codec_embedding.weight";

    /// <summary>Sets <paramref name="row"/> of the codec embedding to the mean of the other language rows of <paramref name="config"/>.</summary>
    public static void Initialize(Qwen3TtsModel model, Qwen3TtsConfig config, int row)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(config);
        var others = config.Talker.CodecLanguageId.Values.Where(r => r != row).Select(r => (long)r).ToArray();
        if (others.Length == 0) throw new ConfigException("--add_language: the model has no language rows to start the new one from");
        using var noGrad = TorchSharp.torch.no_grad();
        var codec = model.state_dict()[CodecEmbedding];
        using var rows = TorchSharp.torch.tensor(others, device: codec.device);
        using var mean = codec.index_select(0, rows).mean([0L]);
        using var target = codec[row];
        target.copy_(mean);
    }
}
