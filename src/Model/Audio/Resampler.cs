using System.Collections.Concurrent;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Qwen3Tts.Model.Audio;

/// <summary>Band-limited resampling by a Kaiser-windowed sinc, in the style of torchaudio's <c>sinc_interp_kaiser</c>
/// and resampy's <c>kaiser_best</c> (64 zero crossings per side, beta 14.77, roll-off 0.9476: about 140 dB stop band).
/// The ratio is reduced by the gcd to orig : new, output sample m sits at input time m * orig / new, so it needs only
/// one of <c>new</c> filter phases; those phases are precomputed once per (from, to) pair. Samples outside the clip
/// count as zero (as in torchaudio), so the first and last ~64 zero crossings fade at the edges.</summary>
public static class Resampler
{
    /// <summary>The rate the model's speech tokenizer and speaker encoder consume.</summary>
    public const int TargetRate = 24000;

    const int ZeroCrossings = 64;
    const double Beta = 14.769656459379492;
    const double Rolloff = 0.9475937167399596;
    // Beyond this many taps in a bank (e.g. 44100 -> 24001, with 24001 phases) the taps are computed per output sample.
    const long MaxBankTaps = 1 << 22;

    static readonly ConcurrentDictionary<(int From, int To), Bank> Banks = new();

    /// <summary>Reads a WAV, FLAC or MP3 file, mixes it to mono and resamples it to 24 kHz (<see cref="AudioFile.LoadMono24k"/>).
    /// <see cref="AudioClip.Channels"/> keeps the source file's channel count.</summary>
    public static AudioClip LoadMono24k(string path) => AudioFile.LoadMono24k(path);

    /// <summary>Resamples <paramref name="x"/> from <paramref name="from"/> Hz to <paramref name="to"/> Hz; the output
    /// has ceil(n * to / from) samples. The same rate returns a copy.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float[] Resample(float[] x, int from, int to)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(from);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(to);
        if (from == to) return (float[])x.Clone();

        var bank = Banks.GetOrAdd((from, to), key => new Bank(key.From, key.To));
        long outLength = ((long)x.Length * bank.New + bank.Orig - 1) / bank.Orig;
        var y = new float[outLength];
        if (x.Length == 0) return y;

        int taps = bank.Taps, k = taps / 2;
        // Zero-padded copy: output m reads input samples q - k + 1 .. q + k with q = floor(m * orig / new) < n.
        var padded = new float[x.Length + taps];
        x.CopyTo(padded, k - 1);
        var scratch = bank.Filters is null ? new float[taps] : null;

        long q = 0;
        int phase = 0;
        for (long m = 0; m < outLength; m++)
        {
            var filter = bank.Filters is null
                ? bank.Compute(phase, scratch!)
                : bank.Filters.AsSpan(phase * taps, taps);
            y[m] = Dot(padded.AsSpan((int)q, taps), filter); // padded index of input q - k + 1 is q
            phase += bank.Orig;
            q += phase / bank.New;
            phase %= bank.New;
        }
        return y;
    }

    // AggressiveOptimization here and on Resample: the hot loop is jitted optimised at once, even in Debug builds.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        int i = 0;
        var acc = Vector<float>.Zero;
        if (Vector.IsHardwareAccelerated)
            for (int w = Vector<float>.Count; i <= a.Length - w; i += w)
                acc += new Vector<float>(a.Slice(i, w)) * new Vector<float>(b.Slice(i, w));
        float sum = Vector.Sum(acc);
        for (; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }

    /// <summary>The polyphase filters for one rate pair. Phase p (output at input time q + p / new) holds taps for input
    /// samples q - K + 1 .. q + K, tap j at distance d = (K - 1 - j) + p / new from the output instant.</summary>
    sealed class Bank
    {
        public Bank(int from, int to)
        {
            int g = (int)BigInteger.GreatestCommonDivisor(from, to);
            Orig = from / g;
            New = to / g;
            // Cut-off as a fraction of the input's Nyquist: the lower of the two Nyquists, times the roll-off.
            Cutoff = Math.Min(1.0, (double)New / Orig) * Rolloff;
            HalfWidth = ZeroCrossings / Cutoff; // in input samples
            Taps = 2 * ((int)Math.Ceiling(HalfWidth) + 1);
            if ((long)New * Taps <= MaxBankTaps)
            {
                Filters = new float[New * Taps];
                for (int p = 0; p < New; p++) Compute(p, Filters.AsSpan(p * Taps, Taps));
            }
        }

        public int Orig { get; }
        public int New { get; }
        public int Taps { get; }
        public float[]? Filters { get; }
        double Cutoff { get; }
        double HalfWidth { get; }

        static readonly double I0Beta = BesselI0(Beta);

        public Span<float> Compute(int phase, Span<float> filter)
        {
            int k = Taps / 2;
            double frac = (double)phase / New, sum = 0;
            Span<double> h = filter.Length <= 1024 ? stackalloc double[filter.Length] : new double[filter.Length];
            for (int j = 0; j < filter.Length; j++)
            {
                double d = k - 1 - j + frac;
                double r = d / HalfWidth;
                if (Math.Abs(r) >= 1) { h[j] = 0; continue; }
                double window = BesselI0(Beta * Math.Sqrt(1 - r * r)) / I0Beta;
                double t = Math.PI * Cutoff * d;
                h[j] = Cutoff * (t == 0 ? 1 : Math.Sin(t) / t) * window;
                sum += h[j];
            }
            // The windowed sinc already sums to one within float rounding (measured < 4e-7 for the usual rates);
            // normalising each phase makes a constant stay constant by construction, for any ratio.
            for (int j = 0; j < filter.Length; j++) filter[j] = (float)(h[j] / sum);
            return filter;
        }

        static double BesselI0(double x)
        {
            double term = 1, sum = 1, q = x * x / 4;
            for (int k = 1; term > sum * 1e-17; k++)
            {
                term *= q / ((double)k * k);
                sum += term;
            }
            return sum;
        }
    }
}
