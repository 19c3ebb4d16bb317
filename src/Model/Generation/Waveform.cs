namespace Qwen3Tts.Model.Generation;

/// <summary>From generated codes to a WAV file: the one place the 12 Hz speech tokenizer's decoder
/// (speech_tokenizer/, Qwen3TTSTokenizer.decode) plugs into synthesis. Until it is ported, <see cref="DecoderAvailable"/>
/// is false and callers write codes instead.</summary>
public static class Waveform
{
    /// <summary>The speech tokenizer's output rate.</summary>
    public const int SampleRate = 24000;

    public const string DecoderMissing = "the 12 Hz decoder is not available in this build yet; write the codes with --codes_out (or --codes_only) instead";

    /// <summary>True once <see cref="WriteWaveform"/> is wired to the decoder.</summary>
    public static bool DecoderAvailable => false;

    /// <summary>Decodes <paramref name="codes"/> [frames, 16] with the decoder in <paramref name="speechTokenizerDir"/>
    /// (a model directory's speech_tokenizer/) and writes a mono 24 kHz WAV to <paramref name="outPath"/>.
    /// For ICL cloning pass the reference clip's codes as <paramref name="referenceCodes"/>: the reference decodes
    /// reference ++ generated codes together (the decoder's context then starts in the cloned voice) and cuts the
    /// first referenceFrames / totalFrames of the samples (generate_voice_clone).</summary>
    /// <remarks>To wire: load the decoder once per directory, decode, apply the ICL cut, <c>WavWriter.Write</c>, and make
    /// <see cref="DecoderAvailable"/> true.</remarks>
    public static void WriteWaveform(long[,] codes, string speechTokenizerDir, string outPath, long[,]? referenceCodes = null)
    {
        ArgumentNullException.ThrowIfNull(codes);
        ArgumentNullException.ThrowIfNull(speechTokenizerDir);
        ArgumentNullException.ThrowIfNull(outPath);
        throw new NotSupportedException(DecoderMissing);
    }
}
