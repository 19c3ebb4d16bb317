using Qwen3Tts.Model.Config;

namespace Qwen3Tts.Model.Generation;

/// <summary>The codec tags the talker reads before the speaker slot, as Qwen3TTSForConditionalGeneration.generate
/// builds them: [nothink, think_bos, think_eos] without a language ("auto"), or [think, think_bos, language,
/// think_eos] with one. Synthesis (<see cref="PromptBuilder"/>) and training (<see cref="Sft.SftCollate"/>) both take
/// them from here, so a voice is trained on the very prompt it is generated with.</summary>
public static class CodecPrefix
{
    /// <summary>The tags by name, as <see cref="PromptPosition.Codec"/> describes them.</summary>
    public static IReadOnlyList<string> Tags(int? languageId) => languageId is int id
        ? ["think", "think_bos", $"language:{id}", "think_eos"]
        : ["nothink", "think_bos", "think_eos"];

    /// <summary>The same tags as codec ids.</summary>
    public static long[] Ids(int? languageId, TalkerConfig talker)
    {
        ArgumentNullException.ThrowIfNull(talker);
        return languageId is int id
            ? [talker.CodecThinkId, talker.CodecThinkBosId, id, talker.CodecThinkEosId]
            : [talker.CodecNothinkId, talker.CodecThinkBosId, talker.CodecThinkEosId];
    }

    /// <summary>The codec row of a language name in <paramref name="talker"/>'s codec_language_id (case-insensitive),
    /// or null for "auto", no language, or one the model has no tag for (then the no-language prefix is used).</summary>
    public static int? LanguageId(string? language, TalkerConfig talker)
    {
        ArgumentNullException.ThrowIfNull(talker);
        if (string.IsNullOrWhiteSpace(language) || language.Equals("auto", StringComparison.OrdinalIgnoreCase)) return null;
        foreach (var (name, id) in talker.CodecLanguageId)
            if (name.Equals(language.Trim(), StringComparison.OrdinalIgnoreCase)) return id;
        return null;
    }
}
