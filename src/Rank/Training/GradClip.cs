using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Training;

/// <summary>torch.nn.utils.clip_grad_norm_ with the L2 norm: the global norm over every gradient, computed in
/// fp32 whatever the gradients' dtype, and gradients scaled in place by max_norm / (norm + 1e-6) when that
/// factor is below 1 (torch clamps the factor at 1; multiplying by 1 is skipped here). Null gradients are skipped.
/// With data parallelism, clip after the gradients are reduced so every rank scales by the same norm.</summary>
public static class GradClip
{
    /// <returns>the total norm before clipping. It may be inf or NaN (torch's error_if_nonfinite=False): the caller
    /// decides whether to skip the step. On a NaN norm the gradients are left as they are.</returns>
    public static double ClipGradNorm(IEnumerable<Tensor> parameters, double maxNorm)
    {
        if (!(maxNorm > 0)) throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, "max_grad_norm must be > 0");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var grads = parameters.Select(p => p.grad).OfType<Tensor>().ToList();
        if (grads.Count == 0) return 0;
        // Norms per tensor then the norm of norms, as torch (foreach off); all in fp32.
        var norms = grads.Select(g => linalg.vector_norm(g.to(ScalarType.Float32), 2)).ToList();
        var device = norms[0].device;
        double total = linalg.vector_norm(stack(norms.Select(n => n.to(device))), 2).item<float>();
        double coefficient = maxNorm / (total + 1e-6);
        if (coefficient < 1)
            foreach (var g in grads) g.mul_(coefficient);
        return total;
    }
}
