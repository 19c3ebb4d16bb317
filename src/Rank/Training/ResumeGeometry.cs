using Qwen3Tts.Coordinator;

namespace Qwen3Tts.Rank.Training;

/// <summary>How a run cuts its data: <see cref="BatchPerRank"/> samples on each of <see cref="WorldSize"/> ranks make one
/// global batch of the plan (<see cref="GlobalBatch"/>), and <see cref="AccumulationSteps"/> consecutive global batches one
/// optimizer step. The plan depends on the global batch only, never on how it is split across ranks.</summary>
public sealed record BatchGeometry(int BatchPerRank, int WorldSize, int AccumulationSteps)
{
    public int GlobalBatch => BatchPerRank * WorldSize;

    public long SamplesPerStep => (long)GlobalBatch * AccumulationSteps;

    public override string ToString() =>
        $"{BatchPerRank} per rank x {WorldSize} rank{(WorldSize == 1 ? "" : "s")} x {AccumulationSteps} accumulation = {SamplesPerStep} samples per step";
}

/// <summary>What a resume makes of the checkpoint's batch at this run's world size: the per-rank batch to train with,
/// where the plan continues, and a line to log (null when nothing changed).</summary>
public sealed record ResumeDecision(int BatchPerRank, PlanPosition Start, string? Note);

/// <summary>Resume at another world size (a job restarted on fewer or more GPUs). The optimizer state is whole per
/// parameter and the plan position counts global batches, so a resume that keeps the global batch and the accumulation
/// continues the very same run: the same samples in the same optimizer steps. --batch_size is adjusted for that when the
/// new world size divides the global batch; otherwise the resume is refused with the numbers, unless
/// --allow_new_global_batch, which trains on with the new batch from the nearest earlier point of the epoch.</summary>
public static class ResumeGeometry
{
    public static ResumeDecision Resolve(BatchGeometry saved, BatchGeometry now, PlanPosition position, bool allowNewGlobalBatch, string checkpoint)
    {
        if (saved.GlobalBatch == now.GlobalBatch && saved.AccumulationSteps == now.AccumulationSteps)
            return new ResumeDecision(now.BatchPerRank, position, saved.WorldSize == now.WorldSize ? null
                : $"resuming at {now.WorldSize} ranks a run written by {saved.WorldSize}: the global batch stays {saved.GlobalBatch} samples, the same samples in the same steps");
        if (saved.AccumulationSteps == now.AccumulationSteps && saved.GlobalBatch % now.WorldSize == 0)
        {
            int batch = saved.GlobalBatch / now.WorldSize;
            return new ResumeDecision(batch, position,
                $"resuming at {now.WorldSize} ranks a run written by {saved.WorldSize}: --batch_size {now.BatchPerRank} → {batch} per rank keeps its global batch " +
                $"of {saved.GlobalBatch} samples ({saved}), so the same samples go into the same steps");
        }
        if (!allowNewGlobalBatch)
        {
            string why = saved.AccumulationSteps != now.AccumulationSteps
                ? $"--gradient_accumulation_steps {now.AccumulationSteps} differs from its {saved.AccumulationSteps}"
                : $"{now.WorldSize} ranks cannot split its global batch of {saved.GlobalBatch} samples evenly";
            throw new ArgumentException($"--resume_from_checkpoint {checkpoint}: the run was trained with {saved}; this one has {now}, and {why}. " +
                $"Resume with a world size that divides {saved.GlobalBatch} and --gradient_accumulation_steps {saved.AccumulationSteps}, " +
                "or pass --allow_new_global_batch to train on with this batch (the data order and the learning-rate schedule change)");
        }
        // The plan of the new global batch cuts the epoch differently: continue at the batch that starts at or before the
        // samples the checkpoint had consumed, so no sample of the epoch is skipped (some are seen twice).
        long consumed = position.NextBatch * saved.GlobalBatch;
        var start = position with { NextBatch = consumed / now.GlobalBatch };
        return new ResumeDecision(now.BatchPerRank, start,
            $"warning: --allow_new_global_batch: the checkpoint was trained with {saved}, this run trains with {now}; epoch {position.Epoch} continues at " +
            $"batch {start.NextBatch} of the new plan (from sample {start.NextBatch * now.GlobalBatch} of the {consumed} it had consumed: their order differs, " +
            "some are seen twice), the optimizer steps and the learning-rate schedule follow the new batch; this is not the run the checkpoint was part of");
    }
}
