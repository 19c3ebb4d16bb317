using Qwen3Tts.Model.Audio;

namespace Qwen3Tts.Tests.Audio;

/// <summary>The Slaney mel scale and librosa's area-normalized triangular filterbank, checked against identities
/// derived by hand rather than against numbers from the implementation.</summary>
public class SlaneyFilterbankTests
{
    const int Sr = 24000, NFft = 1024, NMels = 128;
    const double FMax = 12000;
    const double BinHz = (double)Sr / NFft; // 23.4375 Hz

    static readonly float[,] Bank = MelSpectrogram.SlaneyFilterbank(Sr, NFft, NMels, 0, FMax);
    static readonly double[] Points = MelSpectrogram.MelFrequencies(NMels + 2, 0, FMax); // filter i: Points[i], peak Points[i+1], Points[i+2]

    [Theory]
    [InlineData(0.0, 0.0)]
    [InlineData(200.0, 3.0)]      // linear part: 200 Hz / (200/3 Hz per mel)
    [InlineData(500.0, 7.5)]
    [InlineData(1000.0, 15.0)]    // the knee
    [InlineData(6400.0, 42.0)]    // one factor of 6.4 above 1 kHz is 27 mels
    [InlineData(40960.0, 69.0)]   // 1000 * 6.4^2
    public void Slaney_scale_is_linear_to_1kHz_then_27_mels_per_factor_of_6_4(double hz, double mel)
    {
        Assert.Equal(mel, MelSpectrogram.HzToMel(hz), 10);
        Assert.Equal(hz, MelSpectrogram.MelToHz(mel), 7);
    }

    [Fact]
    public void Mel_to_hz_inverts_hz_to_mel_across_the_band()
    {
        for (double hz = 0; hz <= 24000; hz += 37.5)
            Assert.Equal(hz, MelSpectrogram.MelToHz(MelSpectrogram.HzToMel(hz)), 1e-8 * Math.Max(1, hz));
        // Above the knee equal ratios are equal mel steps.
        Assert.Equal(MelSpectrogram.HzToMel(4000) - MelSpectrogram.HzToMel(2000), MelSpectrogram.HzToMel(8000) - MelSpectrogram.HzToMel(4000), 10);
    }

    [Fact]
    public void Filter_edges_are_evenly_spaced_in_mels_from_fmin_to_fmax()
    {
        Assert.Equal(NMels + 2, Points.Length);
        Assert.Equal(0.0, Points[0]);
        Assert.Equal(FMax, Points[^1], 9);
        double step = (15 + 27 * Math.Log(12) / Math.Log(6.4)) / (NMels + 1); // mel(12 kHz) / 129 ≈ 0.3965
        for (int i = 0; i < Points.Length; i++)
            Assert.Equal(i * step, MelSpectrogram.HzToMel(Points[i]), 9);
    }

    [Fact]
    public void Bank_has_one_row_per_mel_and_one_column_per_one_sided_bin()
    {
        Assert.Equal(NMels, Bank.GetLength(0));
        Assert.Equal(NFft / 2 + 1, Bank.GetLength(1));
    }

    [Fact]
    public void Filters_are_non_negative_and_zero_outside_their_neighbours_centres()
    {
        for (int i = 0; i < NMels; i++)
            for (int k = 0; k <= NFft / 2; k++)
            {
                double f = k * BinHz;
                Assert.True(Bank[i, k] >= 0, $"filter {i} bin {k} is negative");
                if (f <= Points[i] || f >= Points[i + 2])
                    Assert.True(Bank[i, k] == 0, $"filter {i} is {Bank[i, k]} at {f} Hz, outside ({Points[i]}, {Points[i + 2]})");
                else
                    Assert.True(Bank[i, k] > 0, $"filter {i} is zero at {f} Hz, inside ({Points[i]}, {Points[i + 2]})");
            }
    }

    [Fact]
    public void Each_filter_peaks_at_a_bin_next_to_its_centre_frequency()
    {
        for (int i = 0; i < NMels; i++)
        {
            int peak = 0;
            for (int k = 1; k <= NFft / 2; k++)
                if (Bank[i, k] > Bank[i, peak]) peak = k;
            double centreBin = Points[i + 1] / BinHz;
            Assert.True(peak == (int)Math.Floor(centreBin) || peak == (int)Math.Ceiling(centreBin),
                $"filter {i} peaks at bin {peak}, but its centre {Points[i + 1]:F2} Hz is bin {centreBin:F3}");
        }
    }

    [Fact]
    public void Each_filter_has_height_two_over_its_width_so_its_area_in_hz_is_one()
    {
        // Triangle i rises over a = f[i+1] - f[i] and falls over b = f[i+2] - f[i+1]; Slaney scaling makes its height
        // 2 / (a + b), so its integral in Hz is exactly 1. The bank samples it at bins spaced h = sr / n_fft apart and
        // is zero at both grid ends, so sum_k w[k] * h is the composite trapezoid rule. The triangle is a sum of three
        // ramps with slope changes H/a, H/a + H/b and H/b; the trapezoid error of one kink with slope change s is
        // s h^2 t (1 - t) / 2 <= s h^2 / 8, so |sum_k w[k] h - 1| <= h^2 / 8 * 2H (1/a + 1/b) = h^2 / (2 a b).
        for (int i = 0; i < NMels; i++)
        {
            double a = Points[i + 1] - Points[i], b = Points[i + 2] - Points[i + 1];
            double area = 0;
            for (int k = 0; k <= NFft / 2; k++) area += Bank[i, k] * BinHz;
            double bound = BinHz * BinHz / (2 * a * b) + 1e-5;
            Assert.True(Math.Abs(area - 1) <= bound, $"filter {i} has area {area}, more than {bound} from 1");
        }
        // The high filters are many bins wide, so there the area is 1 to well under a percent.
        double top = 0;
        for (int k = 0; k <= NFft / 2; k++) top += Bank[NMels - 1, k] * BinHz;
        Assert.Equal(1.0, top, 0.003);
    }

    [Fact]
    public void Unscaled_triangles_sum_to_one_between_the_first_and_last_centres()
    {
        // Neighbouring triangles cross linearly, so without the 2 / (f[i+2] - f[i]) scaling they partition unity
        // on [f[1], f[n_mels]].
        for (int k = 0; k <= NFft / 2; k++)
        {
            double f = k * BinHz;
            if (f < Points[1] || f > Points[NMels]) continue;
            double sum = 0;
            for (int i = 0; i < NMels; i++) sum += Bank[i, k] * (Points[i + 2] - Points[i]) / 2;
            Assert.True(Math.Abs(sum - 1) < 1e-5, $"unscaled triangles sum to {sum} at bin {k} ({f} Hz)");
        }
    }

    [Fact]
    public void All_128_filters_are_non_empty_at_24kHz_with_1024_point_ffts()
    {
        // The narrowest filter spans 2 * 26.4 Hz (two mel steps in the linear part), wider than the 23.4 Hz bin
        // spacing, so every filter holds at least one bin.
        Assert.True(Points[2] - Points[0] > BinHz);
        Assert.Equal(NMels, CountNonEmpty(Bank));
    }

    [Fact]
    public void Filters_narrower_than_the_bin_spacing_can_be_empty()
    {
        // With 64-point FFTs bins are 375 Hz apart. The filters below 1 kHz are 52.9 Hz wide; filter i is empty
        // unless a multiple of 375 Hz falls strictly inside (f[i], f[i+2]).
        var coarse = MelSpectrogram.SlaneyFilterbank(Sr, 64, NMels, 0, FMax);
        int expectedEmpty = 0;
        for (int i = 0; i < NMels; i++)
        {
            bool holdsBin = false;
            for (int k = 0; k <= 32; k++) holdsBin |= k * 375.0 > Points[i] && k * 375.0 < Points[i + 2];
            if (!holdsBin) expectedEmpty++;
        }
        Assert.True(expectedEmpty > 0);
        Assert.Equal(NMels - expectedEmpty, CountNonEmpty(coarse));
        Assert.Equal(0f, RowSum(coarse, 0)); // (0, 52.9 Hz) holds no bin.
    }

    [Fact]
    public void Lower_fmax_moves_the_last_filter_edge()
    {
        var bank = MelSpectrogram.SlaneyFilterbank(Sr, NFft, 40, 0, 8000);
        int lastBin = 0;
        for (int k = 0; k <= NFft / 2; k++) if (bank[39, k] > 0) lastBin = k;
        Assert.True(lastBin * BinHz < 8000 && (lastBin + 1) * BinHz >= 8000, $"last non-zero bin {lastBin} is not the last below 8 kHz");
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        Assert.Throws<ArgumentException>(() => MelSpectrogram.SlaneyFilterbank(Sr, NFft, NMels, 100, 100));
        Assert.Throws<ArgumentException>(() => MelSpectrogram.SlaneyFilterbank(Sr, NFft, 0, 0, FMax));
    }

    static float RowSum(float[,] bank, int row)
    {
        float s = 0;
        for (int k = 0; k < bank.GetLength(1); k++) s += bank[row, k];
        return s;
    }

    static int CountNonEmpty(float[,] bank) => Enumerable.Range(0, bank.GetLength(0)).Count(i => RowSum(bank, i) > 0);
}
