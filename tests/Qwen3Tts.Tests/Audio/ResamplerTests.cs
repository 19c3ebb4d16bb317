using Qwen3Tts.Model.Audio;

namespace Qwen3Tts.Tests.Audio;

/// <summary>The Kaiser-sinc resampler on pure tones: pass-band tones keep frequency and amplitude, tones above the
/// target's Nyquist vanish instead of aliasing, upsampling adds no images, constants stay constant, lengths are
/// ceil(n * to / from).</summary>
public class ResamplerTests
{
    // The filter reaches ~64 / 0.95 input samples (about 200 output samples at 8 kHz -> 24 kHz) into each edge,
    // where samples beyond the clip count as zero; measurements skip this margin.
    const int Edge = 1000;

    static float[] Sine(double hz, int rate, double seconds, double amplitude = 0.5) =>
        Enumerable.Range(0, (int)(rate * seconds)).Select(n => (float)(amplitude * Math.Sin(2 * Math.PI * hz * n / rate))).ToArray();

    static float[] Interior(float[] y) => y[Edge..^Edge];

    static double Rms(float[] x) => Math.Sqrt(x.Sum(v => (double)v * v) / x.Length);

    static double Db(double ratio) => 20 * Math.Log10(ratio);

    /// <summary>Frequency from the first and last upward zero crossings (linearly interpolated) and the count between.</summary>
    static double ZeroCrossingHz(float[] x, int rate)
    {
        double first = double.NaN, last = double.NaN;
        int count = 0;
        for (int i = 1; i < x.Length; i++)
            if (x[i - 1] < 0 && x[i] >= 0)
            {
                double t = i - 1 + x[i - 1] / (double)(x[i - 1] - x[i]);
                if (count++ == 0) first = t;
                last = t;
            }
        return (count - 1) / (last - first) * rate;
    }

    /// <summary>Amplitude of the component at <paramref name="hz"/> under a 4-term Blackman-Harris window (side lobes -92 dB).</summary>
    static double Amplitude(float[] x, double hz, int rate)
    {
        double re = 0, im = 0, wsum = 0, step = 2 * Math.PI * hz / rate;
        for (int n = 0; n < x.Length; n++)
        {
            double a = 2 * Math.PI * n / (x.Length - 1);
            double w = 0.35875 - 0.48829 * Math.Cos(a) + 0.14128 * Math.Cos(2 * a) - 0.01168 * Math.Cos(3 * a);
            re += w * x[n] * Math.Cos(step * n);
            im -= w * x[n] * Math.Sin(step * n);
            wsum += w;
        }
        return 2 * Math.Sqrt(re * re + im * im) / wsum;
    }

    [Theory]
    [InlineData(16000)]
    [InlineData(22050)]
    [InlineData(44100)]
    [InlineData(48000)]
    public void A_1kHz_tone_keeps_its_frequency_and_amplitude_at_24kHz(int from)
    {
        var y = Resampler.Resample(Sine(1000, from, 1.0), from, 24000);
        Assert.Equal(24000, y.Length);
        var mid = Interior(y);

        Assert.InRange(ZeroCrossingHz(mid, 24000), 999.9, 1000.1);
        var spectrumPeak = Enumerable.Range(0, 201).Select(i => 990 + i * 0.1).MaxBy(f => Amplitude(mid, f, 24000));
        Assert.InRange(spectrumPeak, 999.0, 1001.0);
        // 22000 whole 24-sample periods: RMS * sqrt(2) is the amplitude.
        Assert.InRange(Rms(mid) * Math.Sqrt(2), 0.495, 0.505);
    }

    [Theory]
    [InlineData(48000, 15000)] // would alias to 9 kHz
    [InlineData(48000, 20000)] // would alias to 4 kHz
    [InlineData(44100, 14000)] // would alias to 10 kHz
    [InlineData(32000, 12500)] // just above the target Nyquist: would alias to 11.5 kHz
    public void A_tone_above_the_target_nyquist_is_removed_not_aliased(int from, double hz)
    {
        const double amplitude = 0.5;
        var mid = Interior(Resampler.Resample(Sine(hz, from, 1.0, amplitude), from, 24000));
        double attenuation = Db(Rms(mid) * Math.Sqrt(2) / amplitude);
        Assert.True(attenuation < -60, $"{hz} Hz at {from} Hz leaks through at {attenuation:F1} dB");
        Assert.True(Db(Amplitude(mid, 24000 - hz, 24000) / amplitude) < -60, $"alias at {24000 - hz} Hz");
    }

    [Fact]
    public void Upsampling_8kHz_adds_nothing_above_4kHz()
    {
        double[] tones = [1000, 2500, 3500];
        var x = new float[8000];
        foreach (var hz in tones)
        {
            var s = Sine(hz, 8000, 1.0, 0.3);
            for (int i = 0; i < x.Length; i++) x[i] += s[i];
        }
        var y = Resampler.Resample(x, 8000, 24000);
        Assert.Equal(24000, y.Length);
        var mid = y[Edge..(Edge + 4800)]; // 0.2 s: 5 Hz resolution, tones on exact bins

        foreach (var hz in tones)
            Assert.InRange(Amplitude(mid, hz, 24000), 0.297, 0.303);
        // Images of the tones would sit at 8000 - f and 8000 + f: 4500, 5500, 7000, 9000, 10500, 11500 Hz.
        double worst = Enumerable.Range(0, 791).Select(i => 4100.0 + i * 10).Max(f => Amplitude(mid, f, 24000));
        Assert.True(Db(worst / 0.3) < -60, $"energy above 4 kHz at {Db(worst / 0.3):F1} dB");
    }

    [Theory]
    [InlineData(0, 44100, 24000, 0)]
    [InlineData(1, 48000, 24000, 1)]
    [InlineData(1000, 44100, 24000, 545)]  // 544.2 rounds up
    [InlineData(441, 44100, 24000, 240)]   // exact
    [InlineData(7, 8000, 24000, 21)]
    [InlineData(1001, 22050, 24000, 1090)] // 1089.5...
    [InlineData(1000, 24000, 16000, 667)]
    [InlineData(12345, 11025, 24000, 26874)]
    [InlineData(100, 44100, 24001, 55)]    // an awkward ratio: 24001 filter phases
    public void Output_length_is_ceil_of_n_times_to_over_from(int n, int from, int to, int expected)
    {
        Assert.Equal(expected, (int)Math.Ceiling((double)n * to / from));
        Assert.Equal(expected, Resampler.Resample(new float[n], from, to).Length);
    }

    [Theory]
    [InlineData(44100, 24000)]
    [InlineData(48000, 24000)]
    [InlineData(16000, 24000)]
    [InlineData(8000, 24000)]
    [InlineData(24000, 16000)]
    public void A_constant_stays_constant_away_from_the_edges(int from, int to)
    {
        var y = Resampler.Resample(Enumerable.Repeat(0.3f, from).ToArray(), from, to);
        foreach (var v in Interior(y)) Assert.InRange(v, 0.3f - 1e-6f, 0.3f + 1e-6f);
    }

    [Fact]
    public void The_same_rate_returns_an_equal_copy()
    {
        float[] x = [0.1f, -0.2f, 0.3f];
        var y = Resampler.Resample(x, 24000, 24000);
        Assert.Equal(x, y);
        Assert.NotSame(x, y);
    }

    [Fact]
    public void An_awkward_ratio_computed_per_sample_still_keeps_a_tone()
    {
        // 44100 -> 24001 reduces to 44100 : 24001, too many phases to precompute, so taps are built per output sample.
        var mid = Interior(Resampler.Resample(Sine(1000, 44100, 0.3), 44100, 24001));
        Assert.InRange(ZeroCrossingHz(mid, 24001), 999.9, 1000.1);
        Assert.InRange(Rms(mid) * Math.Sqrt(2), 0.49, 0.51);
    }

    [Fact]
    public void Rates_must_be_positive()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Resampler.Resample([1f], 0, 24000));
        Assert.Throws<ArgumentOutOfRangeException>(() => Resampler.Resample([1f], 44100, -1));
    }

    [Fact]
    public void LoadMono24k_reads_mixes_and_resamples()
    {
        var path = Path.Combine(TestPaths.NewTempDir("resample"), "tone48k.wav");
        WavWriter.WriteFloat32(path, Sine(1000, 48000, 0.5), 48000);
        var clip = Resampler.LoadMono24k(path);
        Assert.Equal(24000, clip.SampleRate);
        Assert.Equal(12000, clip.Samples.Length);
        Assert.Equal(path, clip.Path);
        Assert.InRange(ZeroCrossingHz(Interior(clip.Samples), 24000), 999.9, 1000.1);
    }
}
