using Qwen3Tts.Model.Codec;
using static Qwen3Tts.Tests.Codec.DecoderTensors;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Codec;

/// <summary>The split RVQ on hand-made codebooks: the latent is P_first·entry₀ + P_rest·(entry₁ + entry₂), with
/// entry = embedding_sum / max(cluster_usage, 1e-5), worked out by hand below.</summary>
public class DecoderRvqTests
{
    static SplitResidualVectorQuantizer HandMade()
    {
        // Codebooks of 3 entries, width 2; latent width 4; codebook 0 semantic, 1 and 2 acoustic.
        var q = new SplitResidualVectorQuantizer(dimension: 2, inputDimension: 4, outputDimension: 4, numQuantizers: 3, bins: 3);
        Set(q, "rvq_first.vq.layers.0._codebook.embedding_sum", 1, 0, 0, 1, 2, 2);
        Set(q, "rvq_first.vq.layers.0._codebook.cluster_usage", 1, 2, 1);        // entries [1,0] [0,0.5] [2,2]
        Set(q, "rvq_rest.vq.layers.0._codebook.embedding_sum", 1, 1, 3e-5f, 0, 0, -1);
        Set(q, "rvq_rest.vq.layers.0._codebook.cluster_usage", 1, 0, 1);         // usage 0 counts as 1e-5: [1,1] [3,0] [0,-1]
        Set(q, "rvq_rest.vq.layers.1._codebook.embedding_sum", 0, 0, 1, 2, -1, 0);
        Set(q, "rvq_rest.vq.layers.1._codebook.cluster_usage", 1, 1, 0.5f);      // [0,0] [1,2] [-2,0]
        Set(q, "rvq_first.output_proj.weight", 1, 0, 0, 1, 1, 1, 0, 0);         // rows (1,0) (0,1) (1,1) (0,0)
        Set(q, "rvq_rest.output_proj.weight", 1, 0, 0, 1, 0, 0, 1, -1);         // rows (1,0) (0,1) (0,0) (1,−1)
        return q;
    }

    [Fact]
    public void Latent_is_the_sum_of_projected_entries()
    {
        using var q = HandMade();
        // frame 0: codes (1, 1, 2): P_first·[0,0.5] = [0,0.5,0.5,0]; P_rest·([3,0] + [−2,0]) = P_rest·[1,0] = [1,0,0,1]
        // frame 1: codes (2, 0, 1): P_first·[2,2] = [2,2,4,0];       P_rest·([1,1] + [1,2]) = P_rest·[2,3] = [2,3,0,−1]
        var codes = tensor(new long[] { 1, 2, 1, 0, 2, 1 }).view(1, 3, 2); // [B, K, T]
        var latent = q.Decode(codes);
        Assert.Equal(new long[] { 1, 4, 2 }, latent.shape);
        float[] expected = [1, 4, 0.5f, 5, 0.5f, 4, 1, -1]; // [4, 2] row-major: channel c, frames 0 and 1
        var actual = latent.reshape(-1).data<float>().ToArray();
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 4);
    }

    [Fact]
    public void Only_the_semantic_codebook_uses_only_the_first_projection()
    {
        using var q = HandMade();
        var latent = q.Decode(tensor(new long[] { 1, 2 }).view(1, 1, 2));
        Assert.Equal([0, 2, 0.5f, 2, 0.5f, 4, 0, 0], latent.reshape(-1).data<float>().ToArray());
    }

    [Fact]
    public void Batch_rows_decode_independently()
    {
        using var q = HandMade();
        var a = tensor(new long[] { 1, 2, 1, 0, 2, 1 }).view(1, 3, 2);
        var b = tensor(new long[] { 0, 0, 2, 2, 1, 0 }).view(1, 3, 2);
        var both = q.Decode(cat([a, b], 0));
        Assert.True(both[0].allclose(q.Decode(a)[0]));
        Assert.True(both[1].allclose(q.Decode(b)[0]));
    }
}
