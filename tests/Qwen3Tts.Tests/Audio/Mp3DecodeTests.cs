using Qwen3Tts.Model.Audio;
using Xunit.Abstractions;

namespace Qwen3Tts.Tests.Audio;

/// <summary>MP3 through <see cref="AudioFile"/> (NLayer) on files made by two encoders, the lame command line and
/// ffmpeg's libmp3lame, from a sox WAV: left a 440 Hz sine, right a 200 Hz to 4 kHz sweep (which makes the alignment
/// unique; mono files hold their average). MP3 is lossy and its decoders start with a delay (encoder delay plus decoder delay, ~1100-2300 samples, not
/// trimmed here), so the checks are: the file's rate and channels; the left channel's dominant DFT bin is 440 Hz; after
/// the best alignment each channel correlates with the source at 0.999 or better (measured: 0.99999 and above at these
/// bitrates); and the decode equals ffmpeg's own decoder of the same file, aligned the same way, to an RMS difference
/// below 1e-5 of full scale (measured: ~3e-7, float rounding: two decoders of one bitstream agree).</summary>
public class Mp3DecodeTests(ITestOutputHelper output) : CleansTempDirs
{
    readonly string dir = TestPaths.NewTempDir("mp3");

    public static TheoryData<string, int, int, string, string> Cases() => new()
    {
        { "lame-cbr128", 44100, 2, "lame", "-b 128" },
        { "lame-vbr-V2", 44100, 2, "lame", "-V 2" },
        { "lame-cbr64-mono", 44100, 1, "lame", "-b 64" },
        { "ffmpeg-cbr96", 48000, 2, "ffmpeg", "-b:a 96k" },
        { "ffmpeg-vbr-q4", 44100, 2, "ffmpeg", "-q:a 4" },
        { "lame-22050-mpeg2", 22050, 2, "lame", "-b 48" },
        { "lame-16000-mpeg2-mono", 16000, 1, "lame", "-b 32" },
    };

    /// <summary>Normalized correlation of x[lag + i] with y[i] over y's middle (edges excluded).</summary>
    static double Correlation(float[] x, float[] y, int lag, int from, int to)
    {
        double xy = 0, xx = 0, yy = 0;
        for (int i = from; i < to && i + lag < x.Length; i++)
        {
            xy += (double)x[i + lag] * y[i];
            xx += (double)x[i + lag] * x[i + lag];
            yy += (double)y[i] * y[i];
        }
        return xy / Math.Sqrt(xx * yy + 1e-30);
    }

    /// <summary>The lag of the decode against the source that correlates best over a quarter second of the source.</summary>
    static (int Lag, double Corr) Align(float[] decoded, float[] source, int maxLag)
    {
        int from = source.Length / 2, to = from + source.Length / 6;
        var best = (Lag: 0, Corr: double.MinValue);
        for (int lag = 0; lag <= maxLag; lag++)
        {
            double c = Correlation(decoded, source, lag, from, to);
            if (c > best.Corr) best = (lag, c);
        }
        return best;
    }

    /// <summary>The frequency of the largest DFT bin (Hann window) over x between 50 Hz and 4 kHz: a 10 Hz scan, then
    /// 1 Hz steps around its peak.</summary>
    static double DominantHz(float[] x, int rate)
    {
        double coarse = Peak(x, rate, Enumerable.Range(5, 396).Select(k => 10 * k));
        return Peak(x, rate, Enumerable.Range((int)coarse - 10, 21));
    }

    static double Peak(float[] x, int rate, IEnumerable<int> frequencies)
    {
        double bestHz = 0, bestPower = -1;
        foreach (int hz in frequencies)
        {
            double re = 0, im = 0, step = 2 * Math.PI * hz / rate;
            for (int n = 0; n < x.Length; n++)
            {
                double w = 0.5 - 0.5 * Math.Cos(2 * Math.PI * n / (x.Length - 1));
                re += w * x[n] * Math.Cos(step * n);
                im -= w * x[n] * Math.Sin(step * n);
            }
            double p = re * re + im * im;
            if (p > bestPower) (bestPower, bestHz) = (p, hz);
        }
        return bestHz;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Decodes_the_tone_and_the_sweep_that_were_encoded(string name, int rate, int channels, string encoder, string options)
    {
        if (!AudioTools.Have(output, "sox", encoder, "ffmpeg")) return;
        string wav = Path.Combine(dir, name + ".wav"), mp3 = Path.Combine(dir, name + ".mp3");
        string stereo = Path.Combine(dir, name + ".stereo.wav");
        AudioTools.Run("sox", ["-n", "-r", rate.ToString(), "-c", "2", "-b", "16", stereo, "synth", "1.5", "sine", "440", "sine", "200-4000", "vol", "0.5"]);
        if (channels == 1) AudioTools.Run("sox", [stereo, "-c", "1", wav]); // the average: the tone and the sweep in one channel
        else File.Move(stereo, wav);
        if (encoder == "lame") AudioTools.Run("lame", ["--quiet", .. options.Split(' '), wav, mp3]);
        else AudioTools.Run("ffmpeg", ["-v", "error", "-y", "-i", wav, "-c:a", "libmp3lame", .. options.Split(' '), mp3]);

        var source = AudioTools.PcmInts(wav).Channels.Select(c => c.Select(v => v / 32768f).ToArray()).ToArray();
        var decoded = AudioFile.ReadChannels(mp3);
        Assert.Equal(AudioFormat.Mp3, decoded.Format);
        Assert.Equal(rate, decoded.SampleRate);
        Assert.Equal(channels, decoded.Channels.Length);

        // Aligned on the channel with the sweep: a pure tone would also line up one period off.
        int sweep = channels - 1;
        var (lag, _) = Align(decoded.Channels[sweep], source[sweep], maxLag: 4000);
        output.WriteLine($"{name}: the decode lags the source by {lag} samples");
        Assert.Equal(440, DominantHz(decoded.Channels[0][(lag + 2000)..(lag + 2000 + rate / 2)], rate), 1.0);
        for (int c = 0; c < channels; c++)
        {
            double cc = Correlation(decoded.Channels[c], source[c], lag, 4000, source[c].Length - 4000);
            output.WriteLine($"  channel {c}: correlation {cc:F5}");
            Assert.True(cc >= 0.999, $"{name}: channel {c} correlates {cc:F5} with the source at lag {lag}");
        }

        // ffmpeg's decoder trims the encoder delay from the LAME tag where there is one; align it the same way.
        var reference = AudioTools.FfmpegDecode(mp3, channels);
        var (refLag, _) = Align(decoded.Channels[sweep], reference[sweep], maxLag: 4000);
        for (int c = 0; c < channels; c++)
        {
            double sum = 0;
            int count = 0;
            for (int i = 4000; i < reference[c].Length - 4000 && i + refLag < decoded.Length; i++, count++)
            {
                double d = decoded.Channels[c][i + refLag] - reference[c][i];
                sum += d * d;
            }
            double rms = Math.Sqrt(sum / count);
            output.WriteLine($"  channel {c}: RMS difference from ffmpeg's decode {rms:E2} (lag {refLag})");
            Assert.True(rms < 1e-5, $"{name}: channel {c} differs from ffmpeg's decode by RMS {rms:E2}");
        }
    }
}
