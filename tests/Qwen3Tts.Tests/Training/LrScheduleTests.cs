using Qwen3Tts.Rank.Training;

namespace Qwen3Tts.Tests.Training;

public class LrScheduleTests
{
    const double Lr = 2e-5;

    [Fact]
    public void Warmup_rises_linearly_from_zero_to_the_peak()
    {
        var s = new LrSchedule(Lr, WarmupSteps: 10, TotalSteps: 110).Validated();
        Assert.Equal(0, s.At(0));
        Assert.Equal(0.2e-5, s.At(1), 15);
        Assert.Equal(1e-5, s.At(5), 15);   // midpoint: half
        Assert.Equal(2e-5, s.At(10), 15);  // end of warmup: peak
    }

    [Fact]
    public void Cosine_halves_at_its_midpoint_and_ends_at_zero()
    {
        var s = new LrSchedule(Lr, WarmupSteps: 10, TotalSteps: 110, LrDecay.Cosine).Validated();
        Assert.Equal(1e-5, s.At(60), 15);
        // A quarter of the way: 0.5·(1 + cos(π/4)) = 0.853553...
        Assert.Equal(2e-5 * 0.8535533905932737, s.At(35), 15);
        Assert.Equal(0, s.At(110), 15);
        Assert.Equal(0, s.At(500), 15);
    }

    [Fact]
    public void Cosine_with_a_min_ratio_ends_at_that_fraction_of_the_peak()
    {
        var s = new LrSchedule(Lr, WarmupSteps: 10, TotalSteps: 110, LrDecay.Cosine, MinLrRatio: 0.1).Validated();
        Assert.Equal(2e-6 + 1.8e-5 * 0.5, s.At(60), 15);
        Assert.Equal(2e-6, s.At(110), 15);
    }

    [Fact]
    public void Constant_stays_at_the_peak_after_warmup()
    {
        var s = new LrSchedule(Lr, WarmupSteps: 4, TotalSteps: 0, LrDecay.Constant).Validated();
        Assert.Equal(1e-5, s.At(2), 15);
        Assert.All(new long[] { 4, 5, 100, 1_000_000 }, step => Assert.Equal(Lr, s.At(step)));
    }

    [Fact]
    public void No_warmup_starts_at_the_peak()
    {
        Assert.Equal(Lr, new LrSchedule(Lr, 0, 100).Validated().At(0));
    }

    [Fact]
    public void Invalid_settings_are_refused_up_front()
    {
        Assert.Contains("warmup", Assert.Throws<ArgumentOutOfRangeException>(() => new LrSchedule(Lr, 100, 50).Validated()).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new LrSchedule(Lr, -1, 50).Validated());
        Assert.Throws<ArgumentException>(() => LrSchedule.ParseDecay("linear"));
        Assert.Equal(LrDecay.Constant, LrSchedule.ParseDecay("constant"));
    }
}
