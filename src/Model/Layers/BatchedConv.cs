using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Layers;

/// <summary>Conv1d that stays correct on AVX-512 CPUs. The oneDNN build in libtorch-cpu 2.10 computes float32 conv1d
/// wrongly (errors the size of the output, sometimes NaN) when the batch has more than one row and the input has more
/// than 16 channels that are not a multiple of 16 (24, 40, 100 ...; groups = 1, any kernel): measured against float64
/// and against the same rows one at a time, which are right, as is every shape on AVX2 (ONEDNN_MAX_CPU_ISA=AVX2).
/// Released checkpoints use multiples of 16 everywhere, but tiny and custom configs do not, so such batches run row
/// by row: the same result as the kernel would give were it right, at the cost of one call per row.</summary>
public static class BatchedConv
{
    /// <summary>Whether <paramref name="x"/> [B, C_in, L] meets the faulty kernel.</summary>
    public static bool RunsRowByRow(Tensor x, long groups) =>
        x.device_type == DeviceType.CPU && x.dtype == ScalarType.Float32 && groups == 1
        && x.shape[0] > 1 && x.shape[1] > 16 && x.shape[1] % 16 != 0;

    public static Tensor Forward(Conv1d conv, Tensor x, long groups)
    {
        if (!RunsRowByRow(x, groups)) return conv.forward(x);
        using var scope = NewDisposeScope();
        var rows = new Tensor[x.shape[0]];
        for (long i = 0; i < rows.Length; i++) rows[i] = conv.forward(x[TensorIndex.Slice(i, i + 1)]);
        return cat(rows, 0).MoveToOuterDisposeScope();
    }
}
