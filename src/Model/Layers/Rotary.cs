using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Layers;

/// <summary>Rotary position embedding tables. The talker uses the multimodal (3-axis) form with
/// interleaved sections; the code predictor uses the standard form. Both end in the same rotation
/// q·cos + rotate_half(q)·sin, so attention takes (cos, sin) of shape [B, T, head_dim].</summary>
public static class Rotary
{
    /// <summary>inv_freq[i] = theta^(-2i/d) for i in [0, d/2) ("default" rope).</summary>
    public static float[] InverseFrequencies(int headDim, double theta)
    {
        var inv = new float[headDim / 2];
        for (int i = 0; i < inv.Length; i++) inv[i] = (float)(1.0 / Math.Pow(theta, 2.0 * i / headDim));
        return inv;
    }

    /// <summary>positions [B, T] → (cos, sin) [B, T, D], computed in fp32 and cast to <paramref name="dtype"/>.</summary>
    public static (Tensor Cos, Tensor Sin) Standard(Tensor positions, float[] invFreq, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var inv = tensor(invFreq, device: positions.device);
        var freqs = positions.to(ScalarType.Float32).unsqueeze(-1) * inv; // [B, T, D/2]
        return Finish(freqs, dtype);
    }

    /// <summary>positions [3, B, T] (temporal, height, width) → (cos, sin) [B, T, D]. Each rotary
    /// frequency j takes its angle from one axis: interleaved, frequency j belongs to axis a (a ≥ 1)
    /// when j ≡ a (mod 3) and j &lt; 3·section[a], else to the temporal axis; not interleaved, the
    /// sections are contiguous runs. For speech-only input the three axes are equal and this reduces to
    /// standard RoPE, but the checkpoints were trained with this layout, so we keep it exact.</summary>
    public static (Tensor Cos, Tensor Sin) Multimodal(Tensor positions, float[] invFreq, IReadOnlyList<int> sections, bool interleaved, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var inv = tensor(invFreq, device: positions.device);
        var freqs = positions.to(ScalarType.Float32).unsqueeze(-1) * inv; // [3, B, T, D/2]
        var axis = tensor(AxisOfFrequency(invFreq.Length, sections, interleaved), device: positions.device);
        // Pick, per frequency, the angle of its axis: gather along dim 0 with a [1, B, T, D/2] index.
        var index = axis.view(1, 1, 1, -1).expand(1, freqs.shape[1], freqs.shape[2], -1);
        var picked = freqs.gather(0, index).squeeze(0); // [B, T, D/2]
        return Finish(picked, dtype);
    }

    /// <summary>Which axis (0 = temporal, 1 = height, 2 = width) drives each of the D/2 frequencies.</summary>
    public static long[] AxisOfFrequency(int half, IReadOnlyList<int> sections, bool interleaved)
    {
        var axis = new long[half];
        if (sections.Count == 0) return axis;
        if (interleaved)
        {
            int modalities = sections.Count;
            for (int a = 1; a < modalities; a++)
                for (int j = a; j < Math.Min(sections[a] * modalities, half); j += modalities)
                    axis[j] = a;
        }
        else
        {
            int j = 0;
            for (int a = 0; a < sections.Count; a++)
                for (int n = 0; n < sections[a] && j < half; n++) axis[j++] = a % 3;
        }
        return axis;
    }

    static (Tensor, Tensor) Finish(Tensor freqs, ScalarType dtype)
    {
        var emb = cat(new[] { freqs, freqs }, -1);
        return (emb.cos().to(dtype).MoveToOuterDisposeScope(), emb.sin().to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>x [B, H, T, D] rotated by (cos, sin) [B, T, D].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        var c = cos.unsqueeze(1);
        var s = sin.unsqueeze(1);
        long half = x.shape[^1] / 2;
        var rotated = cat(new[] { -x[TensorIndex.Ellipsis, TensorIndex.Slice(half)], x[TensorIndex.Ellipsis, TensorIndex.Slice(0, half)] }, -1);
        return (x * c + rotated * s).MoveToOuterDisposeScope();
    }
}
