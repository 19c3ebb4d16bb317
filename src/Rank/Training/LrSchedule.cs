namespace Qwen3Tts.Rank.Training;

/// <summary>What the learning rate does after warmup.</summary>
public enum LrDecay
{
    /// <summary>Half a cosine from the peak down to <see cref="LrSchedule.MinLrRatio"/>·peak at the last step, then flat.</summary>
    Cosine,

    /// <summary>Stays at the peak.</summary>
    Constant,
}

/// <summary>Learning rate as a pure function of optimizer steps done: linear warmup from 0 over
/// <see cref="WarmupSteps"/> (as transformers' get_*_schedule_with_warmup, so the very first update runs at
/// lr 0 when there is warmup), then cosine or constant.</summary>
public sealed record LrSchedule(double PeakLr, long WarmupSteps, long TotalSteps, LrDecay Decay = LrDecay.Cosine, double MinLrRatio = 0)
{
    public static LrDecay ParseDecay(string value) => value switch
    {
        "cosine" => LrDecay.Cosine,
        "constant" => LrDecay.Constant,
        _ => throw new ArgumentException($"--lr_scheduler '{value}' is not one of: cosine, constant"),
    };

    /// <summary>Throws naming the setting at fault; call once up front.</summary>
    public LrSchedule Validated()
    {
        if (!(PeakLr >= 0)) throw new ArgumentOutOfRangeException(nameof(PeakLr), PeakLr, "the learning rate must be >= 0");
        if (WarmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(WarmupSteps), WarmupSteps, "warmup steps must be >= 0");
        if (!(MinLrRatio >= 0 && MinLrRatio <= 1)) throw new ArgumentOutOfRangeException(nameof(MinLrRatio), MinLrRatio, "the min-lr ratio must be in [0, 1]");
        if (Decay == LrDecay.Cosine && TotalSteps <= WarmupSteps)
            throw new ArgumentOutOfRangeException(nameof(TotalSteps), TotalSteps,
                $"a cosine schedule needs more total steps than warmup steps ({WarmupSteps}); lower the warmup or train longer");
        return this;
    }

    /// <summary>The rate for the update after <paramref name="step"/> updates have been done.</summary>
    public double At(long step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), step, "step must be >= 0");
        if (step < WarmupSteps) return PeakLr * step / WarmupSteps;
        if (Decay == LrDecay.Constant) return PeakLr;
        double progress = Math.Min(1.0, (double)(step - WarmupSteps) / (TotalSteps - WarmupSteps));
        double cosine = 0.5 * (1 + Math.Cos(Math.PI * progress));
        return PeakLr * (MinLrRatio + (1 - MinLrRatio) * cosine);
    }
}
