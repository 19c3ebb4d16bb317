using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Generation;

/// <summary>The talker's input embedding of whole codec frames: codebook 0 through the talker's codec_embedding,
/// codebook g (1..15) through the code predictor's codec_embedding[g-1], summed. This is what a generated frame
/// feeds back, and what an ICL reference frame contributes to the prompt.</summary>
public static class CodecEmbeddings
{
    /// <summary>codes [..., groups] (int64) → [..., hidden].</summary>
    public static Tensor Frames(Talker talker, Tensor codes)
    {
        int groups = talker.Config.NumCodeGroups;
        if (codes.shape[^1] != groups)
            throw new ArgumentException($"codes must end in {groups} codebooks, got [{string.Join(", ", codes.shape)}]", nameof(codes));
        using var scope = NewDisposeScope();
        var sum = talker.Model.CodecEmbedding.forward(codes.select(-1, 0));
        for (int g = 1; g < groups; g++)
            sum = sum + talker.CodePredictor.Model.CodecEmbedding(g).forward(codes.select(-1, g));
        return sum.MoveToOuterDisposeScope();
    }

    /// <summary>A [frames, groups] array as an int64 tensor on <paramref name="device"/>.</summary>
    public static Tensor ToTensor(long[,] codes, Device device)
    {
        var flat = new long[codes.Length];
        Buffer.BlockCopy(codes, 0, flat, 0, flat.Length * sizeof(long));
        return tensor(flat, [codes.GetLength(0), codes.GetLength(1)], device: device);
    }
}
