using System.Text;
using NLayer;

namespace Qwen3Tts.Model.Audio;

/// <summary>The one entry point for audio input: WAV (PCM 8/16/24/32, IEEE float 32/64, extensible; <see cref="WavReader"/>),
/// FLAC (<see cref="FlacDecoder"/>) and MP3 (MPEG-1/2 layer III through NLayer), recognised by their first bytes, not by
/// the file name, so the bytes a Hugging Face Parquet file carries in its audio struct decode the same way as files.
/// Any sample rate and channel count: channels are averaged to mono, then resampled to 24 kHz by
/// <see cref="Resampler"/>.</summary>
public static class AudioFile
{
    /// <summary>Reads a file into its channels at its own rate.</summary>
    public static AudioChannels ReadChannels(string path) => DecodeChannels(ReadBytes(path), path);

    /// <summary>Reads a file as mono at its own rate.</summary>
    public static AudioClip Read(string path) => ReadChannels(path).ToMono();

    /// <summary>Reads a file as mono 24 kHz; <see cref="AudioClip.Channels"/> keeps the file's channel count.</summary>
    public static AudioClip LoadMono24k(string path) => To24k(Read(path));

    /// <summary>Decodes an encoded file held in memory (WAV, FLAC or MP3 bytes) as mono 24 kHz;
    /// <paramref name="nameForErrors"/> names it in errors and becomes the clip's <see cref="AudioClip.Path"/>.</summary>
    public static AudioClip DecodeMono24k(ReadOnlySpan<byte> bytes, string nameForErrors) => To24k(DecodeChannels(bytes, nameForErrors).ToMono());

    /// <summary>Decodes an encoded file held in memory into its channels at its own rate.</summary>
    public static AudioChannels DecodeChannels(ReadOnlySpan<byte> bytes, string nameForErrors)
    {
        ArgumentNullException.ThrowIfNull(nameForErrors);
        return Detect(bytes, nameForErrors) switch
        {
            AudioFormat.Wav => WavReader.DecodeChannels(bytes, nameForErrors),
            AudioFormat.Flac => DecodeFlac(bytes, nameForErrors),
            _ => DecodeMp3(bytes, nameForErrors),
        };
    }

    /// <summary>A mono clip resampled to <see cref="Resampler.TargetRate"/>.</summary>
    public static AudioClip To24k(AudioClip clip) =>
        clip with { Samples = Resampler.Resample(clip.Samples, clip.SampleRate, Resampler.TargetRate), SampleRate = Resampler.TargetRate };

    /// <summary>The format by magic bytes: RIFF....WAVE, fLaC (also after an ID3v2 tag), or an MP3 frame sync (after an
    /// optional ID3v2 tag). Anything else throws, naming what it looks like where that is known.</summary>
    public static AudioFormat Detect(ReadOnlySpan<byte> bytes, string nameForErrors)
    {
        if (bytes.Length >= 12 && bytes[..4].SequenceEqual("RIFF"u8) && bytes[8..12].SequenceEqual("WAVE"u8)) return AudioFormat.Wav;
        if (bytes.StartsWith("fLaC"u8)) return AudioFormat.Flac;
        int start = Id3v2Length(bytes);
        var body = bytes[start..];
        if (body.StartsWith("fLaC"u8)) return AudioFormat.Flac;
        if (IsMp3FrameHeader(body)) return AudioFormat.Mp3;
        if (start > 0 && FindMp3Frame(body) >= 0) return AudioFormat.Mp3; // an ID3 tag with padding the size field does not count

        string what = bytes switch
        {
            _ when bytes.Length == 0 => "the file is empty",
            _ when bytes.StartsWith("OggS"u8) => "an Ogg file (Vorbis or Opus), which is not read; convert it, e.g. ffmpeg -i in.ogg out.flac",
            _ when bytes.Length >= 12 && bytes[4..8].SequenceEqual("ftyp"u8) => "an MP4/M4A file (AAC), which is not read; convert it, e.g. ffmpeg -i in.m4a out.flac",
            _ when bytes.StartsWith("RIFF"u8) => "a RIFF file that is not WAVE",
            _ when bytes.StartsWith("RF64"u8) => "an RF64 (64-bit WAV) file, which is not read; convert it, e.g. sox in.wav out.flac",
            _ when body.Length >= 2 && body[0] == 0xFF && (body[1] & 0xF6) == 0xF0 => "ADTS AAC, which is not read; convert it, e.g. ffmpeg -i in.aac out.flac",
            _ => $"unknown (starts with {Printable(bytes[..Math.Min(8, bytes.Length)])})",
        };
        throw new AudioException(nameForErrors, $"not a WAV, FLAC or MP3 file: {what}");
    }

    static byte[] ReadBytes(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        try { return File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new AudioException(path, $"cannot read the file ({e.Message})", e);
        }
    }

    static AudioChannels DecodeFlac(ReadOnlySpan<byte> bytes, string name)
    {
        var flac = FlacDecoder.Decode(bytes, name);
        return new AudioChannels(flac.ToFloat(), flac.SampleRate, AudioFormat.Flac, flac.BitsPerSample, name);
    }

    /// <summary>NLayer's decoded output as it comes, float samples in [-1, 1], including the encoder's leading delay
    /// (LAME's ~1105 samples) and trailing padding, which NLayer does not trim.</summary>
    static AudioChannels DecodeMp3(ReadOnlySpan<byte> bytes, string name)
    {
        try
        {
            using var mpeg = new MpegFile(new MemoryStream(bytes.ToArray(), writable: false));
            int channels = mpeg.Channels, rate = mpeg.SampleRate;
            if (channels < 1 || rate <= 0) throw new AudioException(name, $"MP3 stream reports {channels} channels at {rate} Hz");
            var interleaved = new List<float>(checked((int)Math.Min(int.MaxValue / 2, mpeg.Length / sizeof(float))));
            var buffer = new float[1152 * 2 * 16];
            int read;
            while ((read = mpeg.ReadSamples(buffer, 0, buffer.Length)) > 0)
                interleaved.AddRange(buffer.AsSpan(0, read));
            if (interleaved.Count == 0) throw new AudioException(name, "no MP3 frame could be decoded");
            int frames = interleaved.Count / channels;
            var result = new float[channels][];
            for (int c = 0; c < channels; c++)
            {
                result[c] = new float[frames];
                for (int i = 0; i < frames; i++) result[c][i] = interleaved[i * channels + c];
            }
            return new AudioChannels(result, rate, AudioFormat.Mp3, 0, name);
        }
        catch (Exception e) when (e is not AudioException and not OutOfMemoryException)
        {
            throw new AudioException(name, $"cannot decode it as MP3 ({e.GetType().Name}: {e.Message})", e);
        }
    }

    static int Id3v2Length(ReadOnlySpan<byte> b)
    {
        if (b.Length < 10 || !b[..3].SequenceEqual("ID3"u8)) return 0;
        int size = (b[6] & 0x7F) << 21 | (b[7] & 0x7F) << 14 | (b[8] & 0x7F) << 7 | (b[9] & 0x7F);
        return (int)Math.Min(b.Length, 10L + size + ((b[5] & 0x10) != 0 ? 10 : 0));
    }

    /// <summary>An MPEG audio frame header: 11 sync bits, a version other than reserved, layer I-III, a bitrate index
    /// other than 15 and a sample-rate index other than 3.</summary>
    static bool IsMp3FrameHeader(ReadOnlySpan<byte> b) =>
        b.Length >= 4 && b[0] == 0xFF && (b[1] & 0xE0) == 0xE0
        && (b[1] >> 3 & 3) != 1 && (b[1] >> 1 & 3) != 0
        && (b[2] >> 4) != 15 && (b[2] >> 2 & 3) != 3;

    static int FindMp3Frame(ReadOnlySpan<byte> b)
    {
        int limit = Math.Min(b.Length, 64 * 1024);
        for (int i = 0; i + 4 <= limit; i++)
            if (IsMp3FrameHeader(b[i..])) return i;
        return -1;
    }

    static string Printable(ReadOnlySpan<byte> b)
    {
        var sb = new StringBuilder();
        foreach (byte c in b) sb.Append(c is >= 0x20 and < 0x7F ? ((char)c).ToString() : $"\\x{c:X2}");
        return $"'{sb}'";
    }
}
