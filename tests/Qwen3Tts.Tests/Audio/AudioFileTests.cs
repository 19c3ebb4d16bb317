using Qwen3Tts.Model.Audio;
using Xunit.Abstractions;

namespace Qwen3Tts.Tests.Audio;

/// <summary><see cref="AudioFile"/>: WAV variants written by sox and ffmpeg decode to exactly ffmpeg's own float decode;
/// WAV, FLAC and MP3 are told apart by their bytes (not their names), so bytes and files give the same clip; the 24 kHz
/// path keeps a tone's frequency and removes what lies above the new Nyquist; unknown formats fail naming the file.</summary>
public class AudioFileTests(ITestOutputHelper output) : CleansTempDirs
{
    readonly string dir = TestPaths.NewTempDir("audiofile");

    /// <summary>name, sox output options; the tone is left 440 Hz, right 660 Hz (or the one channel 440 Hz).</summary>
    public static TheoryData<string, string> WavVariants() => new()
    {
        { "u8-mono-8k", "-r 8000 -c 1 -b 8 -e unsigned-integer" },
        { "s16-stereo-44k", "-r 44100 -c 2 -b 16" },
        { "s24-stereo-48k", "-r 48000 -c 2 -b 24" },           // sox writes WAVE_FORMAT_EXTENSIBLE above 16 bits
        { "s32-stereo-96k", "-r 96000 -c 2 -b 32" },
        { "f32-stereo-22k", "-r 22050 -c 2 -b 32 -e floating-point" },
        { "f64-mono-16k", "-r 16000 -c 1 -b 64 -e floating-point" },
        { "s16-3ch-32k", "-r 32000 -c 3 -b 16" },                 // extensible again: more than 2 channels
    };

    string Sox(string name, string options, double seconds = 0.5)
    {
        string path = Path.Combine(dir, name);
        int channels = int.Parse(options.Split(' ')[Array.IndexOf(options.Split(' '), "-c") + 1]);
        string[] tones = ["440", "660", "880"];
        AudioTools.Run("sox", ["-n", .. options.Split(' '), path, "synth", seconds.ToString(System.Globalization.CultureInfo.InvariantCulture),
            .. tones.Take(channels).SelectMany(t => new[] { "sine", t }), "vol", "0.5"]);
        return path;
    }

    [Theory]
    [MemberData(nameof(WavVariants))]
    public void Wav_variants_from_sox_equal_ffmpegs_decode(string name, string options)
    {
        if (!AudioTools.Have(output, "sox", "ffmpeg")) return;
        string path = Sox(name + ".wav", options);
        var decoded = AudioFile.ReadChannels(path);
        var reference = AudioTools.FfmpegDecode(path, decoded.Channels.Length);
        Assert.Equal(AudioFormat.Wav, decoded.Format);
        for (int c = 0; c < reference.Length; c++)
        {
            Assert.Equal(reference[c].Length, decoded.Channels[c].Length);
            float worst = 0;
            for (int i = 0; i < reference[c].Length; i++) worst = Math.Max(worst, Math.Abs(reference[c][i] - decoded.Channels[c][i]));
            // ffmpeg turns 32-bit integers into floats in float arithmetic: within one float step of our double-rounded value.
            Assert.True(worst <= (name.StartsWith("s32") ? 6e-8f : 0f), $"{name}: channel {c} differs from ffmpeg by up to {worst}");
        }
    }

    [Fact]
    public void Bytes_and_files_give_the_same_clip_whatever_the_file_is_called()
    {
        if (!AudioTools.Have(output, "sox", "flac", "lame")) return;
        string wav = Sox("tone.wav", "-r 44100 -c 2 -b 16");
        string flac = Path.Combine(dir, "tone.flac"), mp3 = Path.Combine(dir, "tone.mp3"), tagged = Path.Combine(dir, "tagged.mp3");
        AudioTools.Run("flac", ["-s", "-f", wav, "-o", flac]);
        AudioTools.Run("lame", ["--quiet", "-b", "128", wav, mp3]);
        AudioTools.Run("lame", ["--quiet", "-b", "128", "--id3v2-only", "--tt", "a title", "--pad-id3v2-size", "300", wav, tagged]);
        Assert.Equal("ID3"u8.ToArray(), File.ReadAllBytes(tagged)[..3]);

        foreach (var (path, format) in new[] { (wav, AudioFormat.Wav), (flac, AudioFormat.Flac), (mp3, AudioFormat.Mp3), (tagged, AudioFormat.Mp3) })
        {
            byte[] bytes = File.ReadAllBytes(path);
            Assert.Equal(format, AudioFile.Detect(bytes, path));
            string misnamed = Path.Combine(dir, "misnamed-" + Path.GetFileNameWithoutExtension(path) + ".wav");
            File.WriteAllBytes(misnamed, bytes);
            var fromFile = AudioFile.LoadMono24k(misnamed);
            var fromBytes = AudioFile.DecodeMono24k(bytes, "row 7 of train.parquet");
            Assert.Equal(fromFile.Samples, fromBytes.Samples);
            Assert.Equal(24000, fromBytes.SampleRate);
            Assert.Equal(2, fromBytes.Channels);
            Assert.Equal("row 7 of train.parquet", fromBytes.Path);
        }
        // Lossless: the FLAC's 24 kHz mono clip is the WAV's, sample for sample, and so is the old entry point's.
        Assert.Equal(AudioFile.LoadMono24k(wav).Samples, AudioFile.LoadMono24k(flac).Samples);
        Assert.Equal(Resampler.LoadMono24k(flac).Samples, AudioFile.LoadMono24k(flac).Samples);
    }

    static double Db(double ratio) => 20 * Math.Log10(ratio);

    static double Rms(ReadOnlySpan<float> x)
    {
        double sum = 0;
        foreach (float v in x) sum += (double)v * v;
        return Math.Sqrt(sum / x.Length);
    }

    [Fact]
    public void A_44k_stereo_flac_tone_keeps_its_frequency_at_24k()
    {
        if (!AudioTools.Have(output, "sox", "flac")) return;
        string wav = Path.Combine(dir, "440.wav"), flac = Path.Combine(dir, "440.flac");
        AudioTools.Run("sox", ["-n", "-r", "44100", "-c", "2", "-b", "24", wav, "synth", "1", "sine", "440", "vol", "0.5"]);
        AudioTools.Run("flac", ["-s", "-f", wav, "-o", flac]);
        var clip = AudioFile.LoadMono24k(flac);
        Assert.Equal(24000, clip.Samples.Length);
        var mid = clip.Samples[1000..^1000];
        // Upward zero crossings, interpolated: 440 Hz to 0.1 Hz; and the amplitude (RMS * sqrt 2) stays 0.5.
        double first = double.NaN, last = 0;
        int count = 0;
        for (int i = 1; i < mid.Length; i++)
            if (mid[i - 1] < 0 && mid[i] >= 0)
            {
                double t = i - 1 + mid[i - 1] / (double)(mid[i - 1] - mid[i]);
                if (count++ == 0) first = t;
                last = t;
            }
        Assert.InRange((count - 1) / (last - first) * 24000, 439.9, 440.1);
        Assert.InRange(Rms(mid) * Math.Sqrt(2), 0.495, 0.505);
    }

    [Theory]
    [InlineData(48000, 20000)] // would alias to 4 kHz
    [InlineData(44100, 16000)] // would alias to 8 kHz
    public void A_tone_above_12kHz_in_a_file_is_removed_at_24k(int rate, int hz)
    {
        if (!AudioTools.Have(output, "sox", "flac")) return;
        string wav = Path.Combine(dir, $"{hz}.wav"), flac = Path.Combine(dir, $"{hz}.flac");
        AudioTools.Run("sox", ["-n", "-r", rate.ToString(), "-c", "1", "-b", "24", wav, "synth", "1", "sine", hz.ToString(), "vol", "0.5"]);
        AudioTools.Run("flac", ["-s", "-f", wav, "-o", flac]);
        var clip = AudioFile.LoadMono24k(flac);
        double level = Db(Rms(clip.Samples.AsSpan(1000, clip.Samples.Length - 2000)) * Math.Sqrt(2) / 0.5);
        output.WriteLine($"{hz} Hz at {rate} Hz -> 24 kHz: {level:F1} dB");
        // Everything left is below -120 dB relative to the tone (measured: -137.5 dB for 16 kHz at 44.1 kHz, -142.2 dB for
        // 20 kHz at 48 kHz, near the 24-bit file's own noise floor); an aliased tone would sit near 0 dB.
        Assert.True(level < -120, $"{hz} Hz at {rate} Hz leaks through at {level:F1} dB");
    }

    [Fact]
    public void Unknown_formats_fail_naming_the_file_and_what_it_looks_like()
    {
        void Fails(byte[] bytes, string problem)
        {
            var e = Assert.Throws<AudioException>(() => AudioFile.DecodeMono24k(bytes, "clips/x.bin"));
            Assert.StartsWith("clips/x.bin: not a WAV, FLAC or MP3 file", e.Message);
            Assert.Contains(problem, e.Message);
        }
        Fails([], "empty");
        Fails("OggS\0\u0002"u8.ToArray(), "Ogg");
        Fails([0, 0, 0, 0x20, .. "ftypM4A "u8], "MP4/M4A");
        Fails("<html>hello</html>"u8.ToArray(), "starts with '<html>he'");
        Fails([0xFF, 0xF1, 0x50, 0x80, 0, 0x1F, 0xFC], "ADTS AAC");

        string missing = Path.Combine(dir, "absent.flac");
        var e = Assert.Throws<AudioException>(() => AudioFile.LoadMono24k(missing));
        Assert.Contains(missing, e.Message);
    }
}
