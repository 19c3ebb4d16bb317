using Qwen3Tts.Model.Audio;
using Xunit.Abstractions;

namespace Qwen3Tts.Tests.Audio;

/// <summary>The WAV decoder on files assembled byte by byte here (never with <see cref="WavWriter"/>), so a bug
/// shared by reader and writer cannot hide: every sample encoding, extensible headers, mixdown, chunk skipping,
/// truncation, and an error naming the file and the fault for every malformed header.</summary>
public class WavReaderTests(ITestOutputHelper output)
{
    static readonly string Dir = TestPaths.NewTempDir("wav");

    /// <summary>A RIFF/WAVE file: "fmt " (16 bytes, or 40 for extensible), any extra chunks, then "data".</summary>
    static byte[] Wav(ushort tag, int channels, int rate, int bits, byte[] data,
        ushort subFormat = 0, (string Id, byte[] Body)[]? before = null, bool padData = true, uint? dataSize = null)
    {
        var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, System.Text.Encoding.ASCII, leaveOpen: true))
        {
            w.Write("RIFF"u8); w.Write(0u); w.Write("WAVE"u8);
            bool ext = tag == 0xFFFE;
            w.Write("fmt "u8); w.Write(ext ? 40u : 16u);
            w.Write(tag); w.Write((ushort)channels); w.Write((uint)rate);
            w.Write((uint)(rate * channels * bits / 8)); w.Write((ushort)(channels * bits / 8)); w.Write((ushort)bits);
            if (ext)
            {
                w.Write((ushort)22); w.Write((ushort)bits); w.Write(channels == 2 ? 3u : 4u);
                w.Write(subFormat); w.Write(new byte[] { 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71 });
            }
            foreach (var (id, body) in before ?? [])
            {
                w.Write(System.Text.Encoding.ASCII.GetBytes(id)); w.Write((uint)body.Length); w.Write(body);
                if (body.Length % 2 == 1) w.Write((byte)0);
            }
            w.Write("data"u8); w.Write(dataSize ?? (uint)data.Length); w.Write(data);
            if (padData && data.Length % 2 == 1) w.Write((byte)0);
        }
        var bytes = ms.ToArray();
        BitConverter.GetBytes((uint)(bytes.Length - 8)).CopyTo(bytes, 4);
        return bytes;
    }

    static string Save(byte[] bytes, string name)
    {
        var path = Path.Combine(Dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    static AudioClip Load(byte[] bytes, string name) => WavReader.Read(Save(bytes, name));

    static byte[] Int16s(params short[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();
    static byte[] Int32s(params int[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();
    static byte[] Floats(params float[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();
    static byte[] Doubles(params double[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();
    static byte[] Int24s(params int[] v) => v.SelectMany(x => new[] { (byte)x, (byte)(x >> 8), (byte)(x >> 16) }).ToArray();

    [Fact]
    public void Pcm8_is_unsigned_with_128_as_zero()
    {
        var clip = Load(Wav(1, 1, 8000, 8, [0, 64, 128, 192, 255]), "u8.wav");
        Assert.Equal(new[] { -1f, -0.5f, 0f, 0.5f, 127 / 128f }, clip.Samples);
        Assert.Equal(8000, clip.SampleRate);
        Assert.Equal(1, clip.Channels);
    }

    [Fact]
    public void Pcm16_divides_by_32768()
    {
        var clip = Load(Wav(1, 1, 16000, 16, Int16s(short.MinValue, -16384, 0, 1, 16384, short.MaxValue)), "s16.wav");
        Assert.Equal(new[] { -1f, -0.5f, 0f, 1 / 32768f, 0.5f, 32767 / 32768f }, clip.Samples);
        Assert.Equal(16000, clip.SampleRate);
    }

    [Fact]
    public void Pcm24_sign_extends_and_divides_by_2_pow_23()
    {
        var clip = Load(Wav(1, 1, 44100, 24, Int24s(-8388608, -4194304, -1, 0, 4194304, 8388607)), "s24.wav");
        Assert.Equal(new[] { -1f, -0.5f, (float)(-1 / 8388608.0), 0f, 0.5f, (float)(8388607 / 8388608.0) }, clip.Samples);
    }

    [Fact]
    public void Pcm32_divides_by_2_pow_31()
    {
        var clip = Load(Wav(1, 1, 48000, 32, Int32s(int.MinValue, -1073741824, 0, 1073741824, int.MaxValue)), "s32.wav");
        Assert.Equal(new[] { -1f, -0.5f, 0f, 0.5f, (float)(int.MaxValue / 2147483648.0) }, clip.Samples);
    }

    [Fact]
    public void Float32_and_float64_pass_through()
    {
        Assert.Equal(new[] { -0.75f, 0.1f, 0.3f }, Load(Wav(3, 1, 22050, 32, Floats(-0.75f, 0.1f, 0.3f)), "f32.wav").Samples);
        Assert.Equal(new[] { -0.75f, 0.1f, (float)1.5 }, Load(Wav(3, 1, 22050, 64, Doubles(-0.75, 0.1, 1.5)), "f64.wav").Samples);
    }

    [Theory]
    [InlineData(1, 16)]
    [InlineData(1, 24)]
    [InlineData(3, 32)]
    [InlineData(3, 64)]
    public void Extensible_reads_its_pcm_or_float_subformat(ushort subFormat, int bits)
    {
        byte[] data = (subFormat, bits) switch
        {
            (1, 16) => Int16s(16384, -8192),
            (1, _) => Int24s(4194304, -2097152),
            (3, 32) => Floats(0.5f, -0.25f),
            _ => Doubles(0.5, -0.25),
        };
        var clip = Load(Wav(0xFFFE, 1, 24000, bits, data, subFormat), $"ext-{subFormat}-{bits}.wav");
        Assert.Equal(new[] { 0.5f, -0.25f }, clip.Samples);
        Assert.Equal(24000, clip.SampleRate);
    }

    [Fact]
    public void Stereo_is_averaged_to_mono()
    {
        var clip = Load(Wav(1, 2, 44100, 16, Int16s(16384, -8192, 0, 32767, -32768, -32768)), "stereo.wav");
        Assert.Equal(new[] { 0.125f, 32767 / 65536f, -1f }, clip.Samples);
        Assert.Equal(2, clip.Channels);
    }

    [Fact]
    public void Any_channel_count_is_averaged()
    {
        var clip = Load(Wav(3, 3, 16000, 32, Floats(0.3f, 0.6f, 0.9f, -0.3f, 0f, 0f)), "3ch.wav");
        Assert.Equal(0.6f, clip.Samples[0], 6);
        Assert.Equal(-0.1f, clip.Samples[1], 6);
        Assert.Equal(3, clip.Channels);
    }

    [Fact]
    public void Unknown_chunks_with_odd_sizes_are_skipped_with_their_pad_byte()
    {
        (string, byte[])[] extra = [("LIST", "INFOISFT\x05\0\0\0abcd\0"u8.ToArray()[..13]), ("fact", Int32s(2))];
        Assert.Equal(13, extra[0].Item2.Length);
        var clip = Load(Wav(1, 1, 16000, 16, Int16s(8192, -8192), before: extra), "list.wav");
        Assert.Equal(new[] { 0.25f, -0.25f }, clip.Samples);
    }

    [Fact]
    public void Odd_sized_8_bit_data_is_read_whole()
    {
        var clip = Load(Wav(1, 1, 8000, 8, [255, 0, 128]), "odd.wav");
        Assert.Equal(new[] { 127 / 128f, -1f, 0f }, clip.Samples);
    }

    [Fact]
    public void A_truncated_final_frame_and_an_overlong_data_size_are_tolerated()
    {
        // Stereo 16-bit: two whole frames, then half a frame; the header claims far more data than the file holds.
        var data = Int16s(16384, 16384, -16384, -16384, 8192);
        var clip = Load(Wav(1, 2, 16000, 16, data, padData: false, dataSize: 1_000_000), "trunc.wav");
        Assert.Equal(new[] { 0.5f, -0.5f }, clip.Samples);
    }

    [Fact]
    public void Path_is_kept_on_the_clip()
    {
        var path = Save(Wav(1, 1, 8000, 16, Int16s(1)), "named.wav");
        Assert.Equal(path, WavReader.Read(path).Path);
    }

    public static TheoryData<string, string> Malformed() => new()
    {
        { "not-riff", "not a RIFF/WAVE file" },
        { "not-wave", "not a RIFF/WAVE file" },
        { "short", "truncated header" },
        { "no-fmt", "no 'fmt ' chunk" },
        { "no-data", "no 'data' chunk" },
        { "short-fmt", "truncated header" },
        { "fmt-past-end", "truncated header" },
        { "short-ext", "truncated header" },
        { "mp3", "unsupported format tag 0x0055" },
        { "adpcm", "unsupported format tag 0x0002" },
        { "ext-mulaw", "unsupported WAVE_FORMAT_EXTENSIBLE sub-format" },
        { "pcm12", "unsupported bit depth 12" },
        { "pcm64", "unsupported bit depth 64" },
        { "float16", "unsupported bit depth 16" },
        { "zero-channels", "zero channels" },
        { "zero-rate", "invalid sample rate 0" },
    };

    static byte[] MalformedBytes(string kind)
    {
        var good = Wav(1, 1, 16000, 16, Int16s(1, 2));
        switch (kind)
        {
            case "not-riff": var a = (byte[])good.Clone(); "RIFX"u8.CopyTo(a); return a;
            case "not-wave": var b = (byte[])good.Clone(); "AVI "u8.CopyTo(b.AsSpan(8)); return b;
            case "short": return good[..10];
            case "no-fmt": return [.. good[..12], .. "data"u8, .. BitConverter.GetBytes(4u), .. Int16s(1, 2)];
            case "no-data": return good[..(12 + 8 + 16)];
            case "short-fmt": return [.. good[..12], .. "fmt "u8, .. BitConverter.GetBytes(14u), .. good[20..34], .. good[36..]];
            case "fmt-past-end": return good[..30];
            case "short-ext":
                var e = Wav(1, 1, 16000, 16, Int16s(1)); BitConverter.GetBytes((ushort)0xFFFE).CopyTo(e, 20); return e;
            case "mp3": return Wav(0x55, 1, 16000, 16, Int16s(1));
            case "adpcm": return Wav(2, 1, 16000, 4, [1, 2]);
            case "ext-mulaw": return Wav(0xFFFE, 1, 16000, 16, Int16s(1), subFormat: 7);
            case "pcm12": return Wav(1, 1, 16000, 12, Int16s(1));
            case "pcm64": return Wav(1, 1, 16000, 64, Doubles(0.5));
            case "float16": return Wav(3, 1, 16000, 16, Int16s(1));
            case "zero-channels": return Wav(1, 0, 16000, 16, Int16s(1));
            case "zero-rate": return Wav(1, 1, 0, 16, Int16s(1));
            default: throw new ArgumentException(kind);
        }
    }

    [Theory]
    [MemberData(nameof(Malformed))]
    public void Malformed_files_throw_naming_the_path_and_the_problem(string kind, string problem)
    {
        var path = Save(MalformedBytes(kind), kind + ".wav");
        var ex = Assert.Throws<AudioException>(() => WavReader.Read(path));
        Assert.Contains(path, ex.Message);
        Assert.Contains(problem, ex.Message);
        Assert.Equal(path, ex.FilePath);
    }

    [Fact]
    public void A_missing_file_throws_naming_it()
    {
        var path = Path.Combine(Dir, "absent.wav");
        var ex = Assert.Throws<AudioException>(() => WavReader.Read(path));
        Assert.Contains(path, ex.Message);
    }

    [Fact]
    public void Writer_pcm16_round_trips_clamps_and_has_a_44_byte_header()
    {
        var path = Path.Combine(Dir, "w16.wav");
        WavWriter.Write(path, [0.5f, -0.25f, 2f, -3f, 1 / 32768f, 0.4f / 32768], 22050);
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(44 + 12, bytes.Length);
        Assert.Equal(1, BitConverter.ToUInt16(bytes, 20));   // PCM
        Assert.Equal(16, BitConverter.ToUInt16(bytes, 34));  // bits
        Assert.Equal(bytes.Length - 8, (int)BitConverter.ToUInt32(bytes, 4));
        var clip = WavReader.Read(path);
        Assert.Equal(new[] { 0.5f, -0.25f, 32767 / 32768f, -1f, 1 / 32768f, 0f }, clip.Samples);
        Assert.Equal(22050, clip.SampleRate);
    }

    [Fact]
    public void Writer_float32_round_trips_exactly()
    {
        var path = Path.Combine(Dir, "wf.wav");
        float[] x = [0.1f, -0.7f, 1.25f];
        WavWriter.WriteFloat32(path, x, 24000);
        Assert.Equal(3, BitConverter.ToUInt16(File.ReadAllBytes(path), 20));
        Assert.Equal(x, WavReader.Read(path).Samples);
    }

    [Fact]
    public void Decodes_a_file_written_by_sox()
    {
        if (!AudioTools.Have(output, "sox")) return;
        var path = Path.Combine(Dir, "sox.wav");
        // Half a second of a 0.5-amplitude 441 Hz sine, stereo 24-bit at 44.1 kHz, with sox's own header layout.
        AudioTools.Run("sox", "-n", "-r", "44100", "-c", "2", "-b", "24", path, "synth", "0.5", "sine", "441", "vol", "0.5");
        var clip = WavReader.Read(path);
        Assert.Equal(44100, clip.SampleRate);
        Assert.Equal(2, clip.Channels);
        Assert.Equal(22050, clip.Samples.Length);
        // Phase-agnostic checks (sox may dither the last 24-bit LSB): 220 whole 100-sample periods of amplitude 0.5.
        var x = clip.Samples[..22000];
        Assert.InRange(Math.Sqrt(x.Average(v => (double)v * v)) * Math.Sqrt(2), 0.498, 0.502);
        Assert.InRange(x.Max(Math.Abs), 0.499f, 0.501f);
        int upward = Enumerable.Range(1, x.Length - 1).Count(i => x[i - 1] < 0 && x[i] >= 0);
        Assert.InRange(upward, 219, 221);
    }
}
