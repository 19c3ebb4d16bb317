using Qwen3Tts.Model.Audio;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Audio;

/// <summary>The log-mel front end: frame count, silence, pure tones, and agreement with a slow textbook
/// reflect-pad / periodic-Hann / DFT / filterbank / log computation written out in doubles.</summary>
public class MelSpectrogramTests
{
    static readonly MelSpectrogram Mel = new();
    static readonly MelSettings S = MelSettings.Default;

    static Tensor Wave(params float[][] clips) =>
        stack(clips.Select(c => tensor(c)).ToArray()); // [B, samples]

    static float[] Tone(double hz, int samples, double amplitude = 0.5) =>
        Enumerable.Range(0, samples).Select(n => (float)(amplitude * Math.Sin(2 * Math.PI * hz * n / S.SampleRate))).ToArray();

    static float[] Noise(int samples, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, samples).Select(_ => (float)(rng.NextDouble() * 2 - 1) * 0.3f).ToArray();
    }

    [Fact]
    public void Defaults_are_the_references_speaker_embedding_settings()
    {
        Assert.Equal(new MelSettings(24000, 1024, 128, 256, 1024, 0, 12000), S);
        Assert.Equal(384, S.Padding);
    }

    [Theory]
    [InlineData(385, 1)]    // shortest: reflect padding needs more samples than the 384 pad
    [InlineData(511, 1)]
    [InlineData(512, 2)]
    [InlineData(1000, 3)]
    [InlineData(24000, 93)] // one second: floor((24000 + 768 - 1024) / 256) + 1
    [InlineData(24255, 94)]
    public void Frame_count_is_floor_of_padded_length_minus_window_over_hop_plus_one(int samples, int frames)
    {
        using var scope = NewDisposeScope();
        Assert.Equal(frames, (samples + 2 * 384 - 1024) / 256 + 1);
        Assert.Equal(frames, S.FrameCount(samples));
        var mel = Mel.Compute(zeros(2, samples));
        Assert.Equal(new long[] { 2, 128, frames }, mel.shape);
        Assert.Equal(ScalarType.Float32, mel.dtype);
    }

    [Fact]
    public void Too_short_or_unbatched_audio_is_refused_with_the_reason()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<ArgumentException>(() => Mel.Compute(zeros(1, 384)));
        Assert.Contains("at least 385", e.Message);
        Assert.Throws<ArgumentException>(() => Mel.Compute(zeros(2000)));
    }

    [Fact]
    public void Silence_gives_log_of_the_clamp_in_every_band()
    {
        // All-zero audio: every bin's magnitude is sqrt(0 + 1e-9) = 3.162e-5, so band i is rowsum_i * 3.162e-5.
        // Row sums are about 1 / 23.4 Hz (unit area over 23.4 Hz bins), at most ~0.05, so every band is below the
        // 1e-5 clamp and the output is ln(1e-5) = -11.5129.
        using var scope = NewDisposeScope();
        var bank = MelSpectrogram.SlaneyFilterbank(24000, 1024, 128, 0, 12000);
        var expected = new double[128];
        for (int i = 0; i < 128; i++)
        {
            double rowSum = 0;
            for (int k = 0; k < 513; k++) rowSum += bank[i, k];
            double band = rowSum * Math.Sqrt(1e-9);
            Assert.True(band < 1e-5, $"band {i} ({band}) would escape the clamp");
            expected[i] = Math.Log(Math.Max(band, 1e-5));
        }
        Assert.All(expected, v => Assert.Equal(-11.5129255, v, 1e-6));

        var mel = Mel.Compute(zeros(1, 4096)); // [1, 128, 16]
        var values = mel[0].data<float>().ToArray();
        for (int i = 0; i < 128; i++)
            for (int t = 0; t < 16; t++)
                Assert.Equal(expected[i], values[i * 16 + t], 1e-5);
    }

    [Theory]
    [InlineData(440.0)]
    [InlineData(3000.0)]
    [InlineData(7000.0)]
    public void A_pure_tone_peaks_in_the_band_centred_nearest_it(double hz)
    {
        using var scope = NewDisposeScope();
        var centres = MelSpectrogram.MelFrequencies(130, 0, 12000).Skip(1).Take(128).ToArray();
        int nearest = Array.IndexOf(centres, centres.MinBy(c => Math.Abs(c - hz)));

        var mel = Mel.Compute(Wave(Tone(hz, 24000))).mean(new long[] { 2 })[0]; // [128], averaged over frames
        int loudest = (int)mel.argmax().item<long>();
        Assert.Equal(nearest, loudest);
        // And it stands far above bands an octave away.
        int octaveDown = Array.IndexOf(centres, centres.MinBy(c => Math.Abs(c - hz / 2)));
        Assert.True(mel[loudest].item<float>() - mel[octaveDown].item<float>() > 5, "an octave below should be much quieter (log-mel)");
    }

    [Fact]
    public void Matches_a_slow_textbook_computation_in_doubles()
    {
        using var scope = NewDisposeScope();
        var clip = Tone(523.25, 2000).Zip(Noise(2000, 7), (a, b) => a + b).ToArray();
        var mel = Mel.Compute(Wave(clip))[0].data<float>().ToArray(); // [128, frames]
        var expected = SlowLogMel(clip);
        int frames = expected.GetLength(1);
        Assert.Equal(S.FrameCount(2000), frames);
        Assert.Equal(128 * frames, mel.Length);
        for (int i = 0; i < 128; i++)
            for (int t = 0; t < frames; t++)
                Assert.True(Math.Abs(expected[i, t] - mel[i * frames + t]) < 2e-3,
                    $"band {i} frame {t}: {mel[i * frames + t]} vs textbook {expected[i, t]}");
    }

    [Fact]
    public void Clips_in_a_batch_do_not_affect_each_other()
    {
        using var scope = NewDisposeScope();
        var a = Noise(3000, 1);
        var b = Tone(1000, 3000);
        var both = Mel.Compute(Wave(a, b));
        Assert.True(both[0].allclose(Mel.Compute(Wave(a))[0], rtol: 1e-5, atol: 1e-5));
        Assert.True(both[1].allclose(Mel.Compute(Wave(b))[0], rtol: 1e-5, atol: 1e-5));
        Assert.False(both[0].allclose(both[1], rtol: 1e-3, atol: 1e-3));
    }

    // Reflect pad by (n_fft - hop) / 2, frame every hop without centring, periodic Hann w[n] = 0.5 - 0.5 cos(2 pi n / N),
    // one-sided DFT, |X| with the 1e-9 inside the root, Slaney filterbank, ln(max(x, 1e-5)).
    static double[,] SlowLogMel(float[] clip)
    {
        int pad = 384, n = 1024, hop = 256;
        var padded = new double[clip.Length + 2 * pad];
        for (int j = 0; j < padded.Length; j++)
        {
            int src = j - pad;
            if (src < 0) src = -src;                                   // reflect without repeating the edge sample
            else if (src >= clip.Length) src = 2 * (clip.Length - 1) - src;
            padded[j] = clip[src];
        }
        int frames = (padded.Length - n) / hop + 1;
        var bank = MelSpectrogram.SlaneyFilterbank(24000, n, 128, 0, 12000);
        var result = new double[128, frames];
        var magnitude = new double[n / 2 + 1];
        for (int t = 0; t < frames; t++)
        {
            for (int k = 0; k <= n / 2; k++)
            {
                double re = 0, im = 0;
                for (int j = 0; j < n; j++)
                {
                    double x = padded[t * hop + j] * (0.5 - 0.5 * Math.Cos(2 * Math.PI * j / n));
                    re += x * Math.Cos(2 * Math.PI * k * j / n);
                    im -= x * Math.Sin(2 * Math.PI * k * j / n);
                }
                magnitude[k] = Math.Sqrt(re * re + im * im + 1e-9);
            }
            for (int i = 0; i < 128; i++)
            {
                double band = 0;
                for (int k = 0; k <= n / 2; k++) band += bank[i, k] * magnitude[k];
                result[i, t] = Math.Log(Math.Max(band, 1e-5));
            }
        }
        return result;
    }
}
