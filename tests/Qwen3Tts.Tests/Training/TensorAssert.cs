using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Training;

static class TensorAssert
{
    /// <summary>Same shape, dtype and values (torch.equal; TorchSharp's Tensor.equal is elementwise).</summary>
    public static bool Same(this Tensor a, Tensor b) =>
        a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();
}
