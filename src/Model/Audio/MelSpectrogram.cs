using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Audio;

/// <summary>Settings of the log-mel front end. The defaults are the ones the reference's
/// <c>extract_speaker_embedding</c> passes to <c>mel_spectrogram</c> for 24 kHz audio.</summary>
public sealed record MelSettings(
    int SampleRate = 24000,
    int NFft = 1024,
    int NMels = 128,
    int HopLength = 256,
    int WinLength = 1024,
    double FMin = 0,
    double FMax = 12000)
{
    public static MelSettings Default { get; } = new();

    /// <summary>Reflect padding added on each side before a center=false STFT: (n_fft - hop) / 2 (384 by default).</summary>
    public int Padding => (NFft - HopLength) / 2;

    /// <summary>Number of STFT frames for a clip: floor((samples + 2 * pad - n_fft) / hop) + 1
    /// (with the defaults this is floor(samples / 256)).</summary>
    public long FrameCount(long samples) => (samples + 2L * Padding - NFft) / HopLength + 1;

    /// <summary>Shortest clip the front end accepts: reflect padding needs more samples than the pad,
    /// and the padded clip must hold one full FFT window.</summary>
    public long MinSamples => Math.Max(Padding + 1, NFft - 2L * Padding);
}

/// <summary>The reference's <c>mel_spectrogram</c>: reflect-pad by (n_fft - hop) / 2, STFT without centering
/// under a periodic Hann window, magnitude sqrt(re² + im² + 1e-9), a librosa Slaney mel filterbank,
/// then log(clamp(x, 1e-5)). Holds only the filterbank as managed floats, so one instance serves any device.</summary>
public sealed class MelSpectrogram
{
    const double MagnitudeEps = 1e-9;
    const double LogClamp = 1e-5;

    readonly float[,] filterbank; // [n_mels, n_fft / 2 + 1]

    public MelSpectrogram(MelSettings? settings = null)
    {
        Settings = settings ?? MelSettings.Default;
        if (Settings.NFft <= 0 || Settings.HopLength <= 0 || Settings.WinLength <= 0 || Settings.WinLength > Settings.NFft)
            throw new ArgumentException($"mel settings {Settings}: need n_fft, hop and win_length positive and win_length <= n_fft");
        if (Settings.HopLength > Settings.NFft)
            throw new ArgumentException($"mel settings {Settings}: hop {Settings.HopLength} exceeds n_fft {Settings.NFft}, so (n_fft - hop) / 2 padding would be negative");
        filterbank = SlaneyFilterbank(Settings.SampleRate, Settings.NFft, Settings.NMels, Settings.FMin, Settings.FMax);
    }

    public MelSettings Settings { get; }

    /// <summary>Log-mel spectrogram of [batch, samples] audio as [batch, n_mels, frames], float32 on the input's device.
    /// Frames = <see cref="MelSettings.FrameCount"/>(samples). The speaker encoder wants [batch, frames, n_mels]: transpose(1, 2).</summary>
    public Tensor Compute(Tensor wav)
    {
        if (wav.dim() != 2)
            throw new ArgumentException($"expected audio shaped [batch, samples], got [{string.Join(", ", wav.shape)}]", nameof(wav));
        long samples = wav.shape[1];
        if (samples < Settings.MinSamples)
            throw new ArgumentException($"audio has {samples} samples; the mel front end needs at least {Settings.MinSamples} " +
                $"(reflect padding of {Settings.Padding} and one {Settings.NFft}-sample window)", nameof(wav));

        using var scope = NewDisposeScope();
        var x = wav.to_type(ScalarType.Float32);
        int pad = Settings.Padding;
        // [B, T] -> [B, 1, T] (reflect pad works on batched channels) -> [B, T + 2 * pad]
        var padded = nn.functional.pad(x.unsqueeze(1), new long[] { pad, pad }, PaddingModes.Reflect).squeeze(1);
        var window = hann_window(Settings.WinLength, periodic: true, dtype: ScalarType.Float32, device: x.device);
        // complex64 [B, n_fft / 2 + 1, frames]
        var spec = stft(padded, Settings.NFft, Settings.HopLength, Settings.WinLength, window,
            center: false, normalized: false, onesided: true, return_complex: true);
        // view_as_real: [B, bins, frames, 2]; the eps sits inside the root, as in the reference.
        var magnitude = view_as_real(spec).pow(2).sum(-1).add(MagnitudeEps).sqrt();
        var basis = tensor(filterbank, dtype: ScalarType.Float32, device: x.device);
        var mel = matmul(basis, magnitude); // [n_mels, bins] @ [B, bins, frames] -> [B, n_mels, frames]
        return mel.clamp_min(LogClamp).log().MoveToOuterDisposeScope();
    }

    // Slaney's mel scale, as librosa's hz_to_mel / mel_to_hz with htk=False: linear below 1 kHz at 200/3 Hz
    // per mel (so 1 kHz is mel 15), logarithmic above with 27 mels per factor of 6.4.
    const double SlaneyHzPerMel = 200.0 / 3;
    const double SlaneyMinLogHz = 1000.0;
    static readonly double SlaneyMinLogMel = SlaneyMinLogHz / SlaneyHzPerMel;
    static readonly double SlaneyLogStep = Math.Log(6.4) / 27.0;

    public static double HzToMel(double hz) =>
        hz >= SlaneyMinLogHz ? SlaneyMinLogMel + Math.Log(hz / SlaneyMinLogHz) / SlaneyLogStep : hz / SlaneyHzPerMel;

    public static double MelToHz(double mel) =>
        mel >= SlaneyMinLogMel ? SlaneyMinLogHz * Math.Exp(SlaneyLogStep * (mel - SlaneyMinLogMel)) : SlaneyHzPerMel * mel;

    /// <summary>librosa.mel_frequencies(count, fmin, fmax, htk=False): count points evenly spaced in Slaney mels,
    /// in Hz. Spaced as numpy.linspace does it (start + i * step, last point exactly the stop).</summary>
    public static double[] MelFrequencies(int count, double fmin, double fmax)
    {
        double start = HzToMel(fmin), stop = HzToMel(fmax);
        var hz = new double[count];
        double step = count > 1 ? (stop - start) / (count - 1) : 0;
        for (int i = 0; i < count; i++)
            hz[i] = MelToHz(i == count - 1 && count > 1 ? stop : i * step + start);
        return hz;
    }

    /// <summary>Centre frequencies of the one-sided FFT bins, as numpy.fft.rfftfreq(n_fft, 1 / sr): k * sr / n_fft.</summary>
    public static double[] FftFrequencies(int sampleRate, int nFft)
    {
        double binHz = 1.0 / (nFft * (1.0 / sampleRate));
        var hz = new double[nFft / 2 + 1];
        for (int k = 0; k < hz.Length; k++) hz[k] = k * binHz;
        return hz;
    }

    /// <summary>librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=False, norm="slaney") as [n_mels, n_fft / 2 + 1]:
    /// filter i is the triangle rising from mel point i to 1 at point i + 1 and falling to 0 at point i + 2
    /// (n_mels + 2 points evenly spaced in Slaney mels from fmin to fmax), sampled at the FFT bin frequencies and
    /// scaled by 2 / (f[i + 2] - f[i]) so its area in Hz is 1. Rounded to float32 after the triangle and again after
    /// the scaling, as librosa's float32 weights array is.</summary>
    public static float[,] SlaneyFilterbank(int sampleRate, int nFft, int nMels, double fmin, double fmax)
    {
        if (sampleRate <= 0 || nFft <= 0 || nMels <= 0)
            throw new ArgumentException($"Slaney filterbank: sample rate ({sampleRate}), n_fft ({nFft}) and n_mels ({nMels}) must be positive");
        if (fmin < 0 || fmax <= fmin)
            throw new ArgumentException($"Slaney filterbank: need 0 <= fmin < fmax, got fmin {fmin}, fmax {fmax}");

        var binHz = FftFrequencies(sampleRate, nFft);
        var melHz = MelFrequencies(nMels + 2, fmin, fmax);
        var weights = new float[nMels, binHz.Length];
        for (int i = 0; i < nMels; i++)
        {
            double rise = melHz[i + 1] - melHz[i], fall = melHz[i + 2] - melHz[i + 1];
            double areaNorm = 2.0 / (melHz[i + 2] - melHz[i]);
            for (int k = 0; k < binHz.Length; k++)
            {
                double lower = (binHz[k] - melHz[i]) / rise;
                double upper = (melHz[i + 2] - binHz[k]) / fall;
                float triangle = (float)Math.Max(0.0, Math.Min(lower, upper));
                weights[i, k] = (float)(triangle * areaNorm);
            }
        }
        return weights;
    }
}
