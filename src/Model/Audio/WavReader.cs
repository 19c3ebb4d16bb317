using System.Buffers.Binary;
using System.Text;

namespace Qwen3Tts.Model.Audio;

/// <summary>A decoded clip: mono float samples (integer PCM scaled into [-1, 1]; float files are passed through
/// unclipped, as librosa does), the sample rate, the source file's channel count before mixdown, and its path.</summary>
public sealed record AudioClip(float[] Samples, int SampleRate, int Channels, string Path)
{
    public double DurationSeconds => SampleRate > 0 ? (double)Samples.Length / SampleRate : 0;
}

/// <summary>The container or codec an audio file was decoded from.</summary>
public enum AudioFormat
{
    Wav,
    Flac,
    Mp3,
}

/// <summary>A decoded file before mixdown: one float array per channel (integer PCM scaled into [-1, 1) by 2^(bits - 1)),
/// at the file's own sample rate. <see cref="BitsPerSample"/> is the stored depth (0 for MP3, which has none).</summary>
public sealed record AudioChannels(float[][] Channels, int SampleRate, AudioFormat Format, int BitsPerSample, string Path)
{
    public int Length => Channels.Length == 0 ? 0 : Channels[0].Length;

    public double DurationSeconds => SampleRate > 0 ? (double)Length / SampleRate : 0;

    /// <summary>Mixes down by averaging the channels, as librosa's <c>load(mono=True)</c> does (sums in double).</summary>
    public AudioClip ToMono()
    {
        int channels = Channels.Length, n = Length;
        if (channels == 1) return new AudioClip(Channels[0], SampleRate, 1, Path);
        var mono = new float[n];
        double inv = 1.0 / channels;
        for (int i = 0; i < n; i++)
        {
            double sum = 0;
            for (int c = 0; c < channels; c++) sum += Channels[c][i];
            mono[i] = (float)(sum * inv);
        }
        return new AudioClip(mono, SampleRate, channels, Path);
    }
}

/// <summary>An audio file that cannot be decoded. The message names the file and what is wrong with it.</summary>
public sealed class AudioException(string path, string problem, Exception? inner = null)
    : IOException($"{path}: {problem}", inner) // an unreadable file, as the reader's callers already treat it
{
    public string FilePath { get; } = path;
}

/// <summary>RIFF/WAVE decoder in pure C#: PCM 8 (unsigned), 16, 24, 32-bit (signed little-endian), IEEE float 32/64,
/// and WAVE_FORMAT_EXTENSIBLE with the PCM or float sub-format. Any channel count is mixed down to mono by
/// averaging, as librosa's <c>load(mono=True)</c> does. Unknown chunks (LIST, fact, ...) are skipped with their
/// pad byte; a data chunk that runs past the end of the file (a truncated or still-being-written file) is read
/// as far as it goes, and a trailing partial frame is dropped.</summary>
public static class WavReader
{
    const ushort FormatPcm = 0x0001;
    const ushort FormatFloat = 0x0003;
    const ushort FormatExtensible = 0xFFFE;

    // KSDATAFORMAT_SUBTYPE_{PCM,IEEE_FLOAT}: the format code in the first two bytes, then this fixed tail.
    static ReadOnlySpan<byte> SubFormatTail => [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71];

    public static AudioClip Read(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new AudioException(path, $"cannot read the file ({e.Message})", e);
        }
        return Decode(bytes, path);
    }

    /// <summary>Decodes a whole WAV file held in memory; <paramref name="path"/> only names it in errors and in the clip.</summary>
    public static AudioClip Decode(ReadOnlySpan<byte> file, string path) => DecodeChannels(file, path).ToMono();

    /// <summary>Decodes a whole WAV file held in memory into its channels, before mixdown.</summary>
    public static AudioChannels DecodeChannels(ReadOnlySpan<byte> file, string path)
    {
        if (file.Length < 12)
            throw new AudioException(path, $"truncated header: {file.Length} bytes, a RIFF/WAVE header needs 12");
        if (!file[..4].SequenceEqual("RIFF"u8) || !file[8..12].SequenceEqual("WAVE"u8))
            throw new AudioException(path, $"not a RIFF/WAVE file (starts with '{Printable(file[..4])}' ... '{Printable(file[8..12])}')");

        Format? format = null;
        int dataOffset = -1, dataLength = 0;
        // The RIFF size field is ignored: streaming writers leave it 0 or 0xFFFFFFFF. Chunks are walked to the end of the bytes.
        for (int pos = 12; pos + 8 <= file.Length;)
        {
            var id = file.Slice(pos, 4);
            long size = BinaryPrimitives.ReadUInt32LittleEndian(file.Slice(pos + 4, 4));
            int body = pos + 8;
            long available = file.Length - body;
            if (id.SequenceEqual("fmt "u8))
            {
                if (size > available)
                    throw new AudioException(path, $"truncated header: fmt chunk declares {size} bytes but only {available} remain");
                format = ParseFormat(file.Slice(body, (int)size), path);
            }
            else if (id.SequenceEqual("data"u8))
            {
                dataOffset = body;
                dataLength = (int)Math.Min(size, available);
                if (format is not null) break; // everything needed is known; what follows the samples does not matter
            }
            long next = body + size + (size & 1);
            if (next > file.Length) break;
            pos = (int)next;
        }

        if (format is null)
            throw new AudioException(path, "no 'fmt ' chunk before the end of the file");
        if (dataOffset < 0)
            throw new AudioException(path, "no 'data' chunk");
        var f = format.Value;
        return new AudioChannels(Deinterleave(file.Slice(dataOffset, dataLength), f), f.SampleRate, AudioFormat.Wav, f.BitsPerSample, path);
    }

    readonly record struct Format(bool IsFloat, int Channels, int SampleRate, int BitsPerSample)
    {
        public int BytesPerSample => BitsPerSample / 8;
        public int FrameBytes => Channels * BytesPerSample;
    }

    static Format ParseFormat(ReadOnlySpan<byte> fmt, string path)
    {
        if (fmt.Length < 16)
            throw new AudioException(path, $"truncated header: fmt chunk is {fmt.Length} bytes, needs at least 16");
        ushort tag = BinaryPrimitives.ReadUInt16LittleEndian(fmt);
        int channels = BinaryPrimitives.ReadUInt16LittleEndian(fmt[2..]);
        uint rate = BinaryPrimitives.ReadUInt32LittleEndian(fmt[4..]);
        int bits = BinaryPrimitives.ReadUInt16LittleEndian(fmt[14..]);

        if (tag == FormatExtensible)
        {
            if (fmt.Length < 40)
                throw new AudioException(path, $"truncated header: WAVE_FORMAT_EXTENSIBLE fmt chunk is {fmt.Length} bytes, needs 40");
            var guid = fmt.Slice(24, 16);
            ushort code = BinaryPrimitives.ReadUInt16LittleEndian(guid);
            if (!guid[2..].SequenceEqual(SubFormatTail) || (code != FormatPcm && code != FormatFloat))
                throw new AudioException(path, $"unsupported WAVE_FORMAT_EXTENSIBLE sub-format {new Guid(guid)}; only PCM and IEEE float are read");
            tag = code;
        }
        if (tag != FormatPcm && tag != FormatFloat)
            throw new AudioException(path, $"unsupported format tag 0x{tag:X4} ({FormatName(tag)}); only PCM (1), IEEE float (3) and extensible (0xFFFE) are read");
        if (channels == 0)
            throw new AudioException(path, "fmt chunk declares zero channels");
        if (rate == 0 || rate > int.MaxValue)
            throw new AudioException(path, $"fmt chunk declares an invalid sample rate {rate}");

        bool isFloat = tag == FormatFloat;
        bool supported = isFloat ? bits is 32 or 64 : bits is 8 or 16 or 24 or 32;
        if (!supported)
            throw new AudioException(path, $"unsupported bit depth {bits} for {(isFloat ? "IEEE float (32 or 64 are read)" : "PCM (8, 16, 24 or 32 are read)")}");
        return new Format(isFloat, channels, (int)rate, bits);
    }

    static float[][] Deinterleave(ReadOnlySpan<byte> data, Format f)
    {
        int frames = data.Length / f.FrameBytes; // a partial trailing frame is dropped
        int bps = f.BytesPerSample, channels = f.Channels;
        var result = new float[channels][];
        for (int c = 0; c < channels; c++) result[c] = new float[frames];
        for (int i = 0, pos = 0; i < frames; i++)
            for (int c = 0; c < channels; c++, pos += bps)
                result[c][i] = (float)Sample(data.Slice(pos, bps), f);
        return result;
    }

    static double Sample(ReadOnlySpan<byte> s, Format f) => (f.IsFloat, f.BitsPerSample) switch
    {
        (true, 32) => BinaryPrimitives.ReadSingleLittleEndian(s),
        (true, _) => BinaryPrimitives.ReadDoubleLittleEndian(s),
        (false, 8) => (s[0] - 128) / 128.0,
        (false, 16) => BinaryPrimitives.ReadInt16LittleEndian(s) / 32768.0,
        (false, 24) => ((s[0] | s[1] << 8 | s[2] << 16) << 8 >> 8) / 8388608.0, // sign-extend the top byte
        _ => BinaryPrimitives.ReadInt32LittleEndian(s) / 2147483648.0,
    };

    static string FormatName(ushort tag) => tag switch
    {
        0x0002 => "Microsoft ADPCM",
        0x0006 => "A-law",
        0x0007 => "mu-law",
        0x0011 => "IMA ADPCM",
        0x0055 => "MP3",
        _ => "unknown",
    };

    static string Printable(ReadOnlySpan<byte> b)
    {
        var sb = new StringBuilder(b.Length);
        foreach (byte c in b) sb.Append(c is >= 0x20 and < 0x7F ? (char)c : '?');
        return sb.ToString();
    }
}

/// <summary>Writes mono WAV files: 16-bit PCM (clamped to [-1, 1], rounded to the nearest of x * 32768) or 32-bit IEEE float.</summary>
public static class WavWriter
{
    public static void Write(string path, float[] samples, int sampleRate)
    {
        var pcm = new byte[samples.Length * 2];
        for (int i = 0; i < samples.Length; i++)
        {
            float x = float.IsNaN(samples[i]) ? 0 : samples[i];
            double v = Math.Clamp(Math.Round(x * 32768.0, MidpointRounding.AwayFromZero), short.MinValue, short.MaxValue);
            BinaryPrimitives.WriteInt16LittleEndian(pcm.AsSpan(i * 2), (short)v);
        }
        WriteFile(path, pcm, formatTag: 1, bitsPerSample: 16, sampleRate);
    }

    public static void WriteFloat32(string path, float[] samples, int sampleRate)
    {
        var data = new byte[samples.Length * 4];
        for (int i = 0; i < samples.Length; i++)
            BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(i * 4), samples[i]);
        WriteFile(path, data, formatTag: 3, bitsPerSample: 32, sampleRate);
    }

    static void WriteFile(string path, byte[] data, ushort formatTag, ushort bitsPerSample, int sampleRate)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sampleRate);
        ushort blockAlign = (ushort)(bitsPerSample / 8);
        using var w = new BinaryWriter(File.Create(path));
        w.Write("RIFF"u8);
        w.Write((uint)(4 + 8 + 16 + 8 + data.Length + (data.Length & 1)));
        w.Write("WAVE"u8);
        w.Write("fmt "u8);
        w.Write(16u);
        w.Write(formatTag);
        w.Write((ushort)1);           // mono
        w.Write((uint)sampleRate);
        w.Write((uint)(sampleRate * blockAlign));
        w.Write(blockAlign);
        w.Write(bitsPerSample);
        w.Write("data"u8);
        w.Write((uint)data.Length);
        w.Write(data);
        if ((data.Length & 1) != 0) w.Write((byte)0);
    }
}
