namespace Qwen3Tts.Model.Audio;

/// <summary>Level measurements of a clip, for judging training data: clipping per channel, and over 20 ms frames of the
/// mono mix the share of near-silent frames, a noise-floor estimate and the loudness. Levels are in dBFS (full scale
/// 1.0 = 0 dB; a frame of digital silence counts as <see cref="FloorDb"/>).</summary>
/// <param name="ClippedShare">share of all samples (every channel) that lie in runs of at least <see cref="ClipRun"/>
/// consecutive samples at |x| ≥ <see cref="ClipLevel"/>: flat tops, not single peaks that touch full scale.</param>
/// <param name="ClippedRuns">how many such runs.</param>
/// <param name="PeakDb">the largest |x| of any channel, in dBFS.</param>
/// <param name="SilenceShare">share of 20 ms frames whose RMS is below <see cref="SilenceDb"/>.</param>
/// <param name="NoiseFloorDb">the 10th percentile of the frames' RMS: the level of the pauses, if the clip has any.</param>
/// <param name="SpeechDb">the 90th percentile of the frames' RMS: the level of the loud parts.</param>
public sealed record AudioLevels(double ClippedShare, int ClippedRuns, double PeakDb, double SilenceShare, double NoiseFloorDb, double SpeechDb)
{
    public const double ClipLevel = 0.999;
    public const int ClipRun = 3;
    public const double FrameSeconds = 0.020;
    public const double SilenceDb = -50;
    public const double FloorDb = -120;

    public static double ToDb(double amplitude) => amplitude <= 0 ? FloorDb : Math.Max(FloorDb, 20 * Math.Log10(amplitude));

    public static AudioLevels Measure(AudioChannels audio)
    {
        ArgumentNullException.ThrowIfNull(audio);
        long total = 0, clipped = 0;
        int runs = 0;
        double peak = 0;
        foreach (var channel in audio.Channels)
        {
            total += channel.Length;
            int run = 0;
            for (int i = 0; i <= channel.Length; i++)
            {
                float a = i < channel.Length ? Math.Abs(channel[i]) : 0; // a sentinel closes a run at the end
                if (a > peak) peak = a;
                if (a >= ClipLevel) { run++; continue; }
                if (run >= ClipRun) { clipped += run; runs++; }
                run = 0;
            }
        }

        var mono = audio.ToMono().Samples;
        int frame = Math.Max(1, (int)Math.Round(audio.SampleRate * FrameSeconds));
        int frames = Math.Max(1, mono.Length / frame);
        var levels = new double[frames];
        for (int f = 0; f < frames; f++)
        {
            int start = f * frame, end = Math.Min(mono.Length, start + frame);
            double sum = 0;
            for (int i = start; i < end; i++) sum += (double)mono[i] * mono[i];
            levels[f] = end > start ? ToDb(Math.Sqrt(sum / (end - start))) : FloorDb;
        }
        int silent = levels.Count(l => l < SilenceDb);
        Array.Sort(levels);
        return new AudioLevels(total == 0 ? 0 : (double)clipped / total, runs, ToDb(peak), (double)silent / frames,
            Percentile(levels, 0.10), Percentile(levels, 0.90));
    }

    /// <summary>The nearest-rank percentile of sorted values.</summary>
    static double Percentile(double[] sorted, double p) => sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];
}
