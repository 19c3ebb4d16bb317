namespace Qwen3Tts.Model.Generation;

/// <summary>One utterance to synthesize and the voice to use. The voice is one of
/// <list type="bullet">
/// <item>none (no speaker slot; a voice_design model, or a Base model speaking with no voice given),</item>
/// <item><see cref="Speaker"/>: a named speaker of a custom_voice checkpoint (config talker_config.spk_id),</item>
/// <item><see cref="SpeakerEmbedding"/> alone: x-vector cloning (the speaker encoder's output for a reference clip),</item>
/// <item><see cref="SpeakerEmbedding"/> + <see cref="RefText"/> + <see cref="RefCodes"/>: in-context cloning (ICL), where
/// the reference clip's transcript and 12 Hz codes precede the text, as generate_icl_prompt lays them out.</item>
/// </list></summary>
public sealed record SynthesisRequest
{
    public required string Text { get; init; }

    /// <summary>"auto" (no language tag: the nothink prefix) or a key of talker_config.codec_language_id, any case.</summary>
    public string Language { get; init; } = "auto";

    /// <summary>A named speaker of talker_config.spk_id (matched ignoring case, as the reference lower-cases it).</summary>
    public string? Speaker { get; init; }

    /// <summary>An x-vector [talker hidden size] that fills the speaker slot.</summary>
    public float[]? SpeakerEmbedding { get; init; }

    /// <summary>ICL: the reference clip's transcript.</summary>
    public string? RefText { get; init; }

    /// <summary>ICL: the reference clip's codes [frames, num_code_groups].</summary>
    public long[,]? RefCodes { get; init; }

    /// <summary>An instruction (voice design, or a 1.7B custom voice's style), prepended as a user turn.</summary>
    public string? Instruct { get; init; }

    /// <summary>Whole text in the prompt (true) or the text fed one token per generated frame (false). Null takes the
    /// reference wrapper's default for the mode: false for voice cloning (x-vector or ICL), true otherwise.</summary>
    public bool? NonStreaming { get; init; }

    public bool IsIcl => RefCodes is not null;

    public bool IsVoiceClone => SpeakerEmbedding is not null;

    public bool EffectiveNonStreaming => NonStreaming ?? !IsVoiceClone;
}
