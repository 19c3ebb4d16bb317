using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Training;

/// <summary>Tensors of one dtype and device laid end to end in one contiguous 1-D buffer, each a view of its slice (in
/// list order), as FSDP's flat parameters and DeepSpeed's flat fp32 groups are: one allocation instead of hundreds, and
/// whoever walks all of them (a dtype cast, a checksum, a collective) walks contiguous memory. Elementwise ops on a view
/// give the bits they give on a standalone tensor of that shape (a slice is processed as a tensor of its own length).</summary>
public static class FlatBuffer
{
    /// <summary>Moves each tensor's values into one buffer and makes the tensor a view of its slice (<c>set_</c>: the
    /// tensor object, a registered parameter included, stays the same; its old storage is freed unless held elsewhere).
    /// Moved one tensor at a time, so on the CPU the process grows by about one tensor, not by the whole set.</summary>
    /// <returns>the buffer (the caller owns it), or null for an empty list.</returns>
    public static Tensor? Adopt(IReadOnlyList<Tensor> tensors)
    {
        if (tensors.Count == 0) return null;
        var (dtype, device) = (tensors[0].dtype, tensors[0].device);
        foreach (var t in tensors)
            if (t.dtype != dtype || t.device_type != device.type || t.device_index != device.index)
                throw new ArgumentException($"a flat buffer holds one dtype on one device: {t.dtype} on {t.device} next to {dtype} on {device}", nameof(tensors));
        var buffer = empty(tensors.Sum(t => t.numel()), dtype, device).DetachFromDisposeScope(); // lives as long as the tensors
        using var noGrad = no_grad();
        long at = 0;
        foreach (var t in tensors)
        {
            using var view = buffer.narrow(0, at, t.numel()).view(t.shape);
            view.copy_(t);
            t.set_(view);
            at += t.numel();
        }
        return buffer;
    }

    /// <summary>A zero buffer and views of it shaped as <paramref name="shapes"/>, in order (the caller owns all of them).</summary>
    public static (Tensor Buffer, Tensor[] Views) Zeros(IReadOnlyList<long[]> shapes, ScalarType dtype, Device device)
    {
        var buffer = zeros(shapes.Sum(s => s.Aggregate(1L, (a, b) => a * b)), dtype, device).DetachFromDisposeScope();
        var views = new Tensor[shapes.Count];
        long at = 0;
        for (int i = 0; i < shapes.Count; i++)
        {
            long n = shapes[i].Aggregate(1L, (a, b) => a * b);
            views[i] = buffer.narrow(0, at, n).view(shapes[i]).DetachFromDisposeScope();
            at += n;
        }
        return (buffer, views);
    }
}
