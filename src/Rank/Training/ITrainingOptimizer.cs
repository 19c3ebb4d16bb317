using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Training;

/// <summary>The optimizer as the training loop sees it: <see cref="AdamW"/> over whole parameters, or
/// <see cref="ShardedAdamW"/> (ZeRO) over this rank's partition. <see cref="Start"/> once; then per optimizer step,
/// after the gradients are reduced: <see cref="ClipGradNorm"/>, <see cref="Step"/>, <see cref="ZeroGrad"/>.</summary>
public interface ITrainingOptimizer : IDisposable
{
    /// <summary>Call once every rank's master weights are final (loaded, resumed, broadcast), before the first step.</summary>
    void Start();

    /// <summary>A collective (every rank calls it): for the scope, rank 0's fp32 masters hold the whole current weights
    /// (a checkpoint, synthesis). With ZeRO in bf16 they are gathered from every rank's slice; otherwise they are already.</summary>
    IDisposable WholeMasters();

    /// <summary>Optimizer steps taken; what an lr schedule is evaluated at.</summary>
    long StepCount { get; }

    /// <summary>Scales the gradients by max_norm / (norm + 1e-6) when that is below 1; returns the global L2 norm
    /// (every rank the same; a collective with ZeRO).</summary>
    double ClipGradNorm(double maxNorm);

    /// <summary>One AdamW update at this rate; afterwards every rank's master weights hold the updated values.</summary>
    void Step(double lr);

    void ZeroGrad();

    /// <summary>Rank 0: what a checkpoint writes: the model's weights and AdamW's "exp_avg.{name}", "exp_avg_sq.{name}",
    /// "step.{name}" per parameter, whole, in the files <see cref="AdamW"/> writes; with ZeRO some as placeholders that
    /// <see cref="CheckpointTensors.Fill"/> gathers while they are written, with the other ranks in
    /// <see cref="ServeCheckpoint"/> until rank 0 calls <see cref="EndCheckpoint"/>.</summary>
    CheckpointTensors CheckpointTensors(IEnumerable<(string Name, Tensor Tensor)> modelState);

    /// <summary>Every rank but 0 while rank 0 writes a checkpoint (nothing to do without ZeRO).</summary>
    void ServeCheckpoint();

    /// <summary>Rank 0 after writing a checkpoint, whether it succeeded or not.</summary>
    void EndCheckpoint();

    /// <summary>Restores whole-parameter state written by <see cref="StateTensors"/> (by any world size or stage).</summary>
    void LoadState(IReadOnlyDictionary<string, Tensor> state, long stepCount);
}

/// <summary>A checkpoint's tensors as rank 0 writes them (see <see cref="ITrainingOptimizer.CheckpointTensors"/>);
/// <see cref="Fill"/> makes the data of the meta-device placeholders among them.</summary>
public sealed record CheckpointTensors(IReadOnlyList<(string Name, Tensor Tensor)> Weights, IReadOnlyDictionary<string, Tensor> Optimizer,
    Func<string, Tensor>? Fill = null);

