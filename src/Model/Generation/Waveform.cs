using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Codec;

namespace Qwen3Tts.Model.Generation;

/// <summary>From generated codes to audio: the 12 Hz speech tokenizer's decoder (speech_tokenizer/,
/// Qwen3TTSTokenizer.decode) with the reference's chunking, and the ICL cut of generate_voice_clone.</summary>
public static class Waveform
{
    /// <summary>The speech tokenizer's output rate.</summary>
    public const int SampleRate = 24000;

    /// <summary>Decodes <paramref name="codes"/> [frames, 16] to mono samples at 24 kHz. For ICL cloning pass the reference
    /// clip's codes as <paramref name="referenceCodes"/>: as the reference does, reference ++ generated codes are decoded
    /// together (so the decoder's context starts in the cloned voice) and the first
    /// referenceFrames / totalFrames of the samples are cut.</summary>
    public static float[] Decode(SpeechTokenizerDecoder decoder, long[,] codes, long[,]? referenceCodes = null)
    {
        ArgumentNullException.ThrowIfNull(decoder);
        ArgumentNullException.ThrowIfNull(codes);
        if (codes.GetLength(0) == 0) return [];
        if (referenceCodes is null || referenceCodes.GetLength(0) == 0) return decoder.Decode(codes);

        int groups = codes.GetLength(1), refFrames = referenceCodes.GetLength(0), total = refFrames + codes.GetLength(0);
        if (referenceCodes.GetLength(1) != groups)
            throw new ArgumentException($"the reference codes have {referenceCodes.GetLength(1)} codebooks per frame, the generated ones {groups}");
        var joined = new long[total, groups];
        for (int f = 0; f < total; f++)
            for (int g = 0; g < groups; g++)
                joined[f, g] = f < refFrames ? referenceCodes[f, g] : codes[f - refFrames, g];
        var samples = decoder.Decode(joined);
        int cut = (int)((long)refFrames * samples.Length / total);
        return samples[cut..];
    }

    /// <summary>Decodes with the decoder in <paramref name="speechTokenizerDir"/> (a speech tokenizer folder or a model folder
    /// holding speech_tokenizer/) and writes a mono 24 kHz WAV to <paramref name="outPath"/>.</summary>
    public static void WriteWaveform(long[,] codes, string speechTokenizerDir, string outPath, long[,]? referenceCodes = null)
    {
        ArgumentNullException.ThrowIfNull(outPath);
        var loaded = Decoders.Get(speechTokenizerDir);
        var samples = Decode(loaded.Decoder, codes, referenceCodes);
        string? dir = Path.GetDirectoryName(Path.GetFullPath(outPath));
        if (dir is not null) Directory.CreateDirectory(dir);
        WavWriter.Write(outPath, samples, loaded.OutputSampleRate);
    }

    /// <summary>One loaded decoder per folder for the life of the process (a batch of requests decodes with one).</summary>
    static class Decoders
    {
        static readonly Dictionary<string, LoadedSpeechTokenizerDecoder> Loaded = new(StringComparer.Ordinal);

        public static LoadedSpeechTokenizerDecoder Get(string dir)
        {
            ArgumentNullException.ThrowIfNull(dir);
            string key = Path.GetFullPath(dir);
            lock (Loaded)
            {
                if (!Loaded.TryGetValue(key, out var decoder)) Loaded[key] = decoder = SpeechTokenizerDecoderFiles.Load(dir);
                return decoder;
            }
        }
    }
}
