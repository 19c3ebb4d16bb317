using Qwen3Tts.Model.Codec;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Codec;

/// <summary>Nearest-codeword search and residual chains on hand-made 2-D codebooks, answers worked out on paper.</summary>
public class MimiQuantizerTests
{
    // 3-wide transformer, 2-wide VQ: input_proj keeps dims 0 and 2. One semantic codebook, two acoustic stages.
    static readonly EncoderConfig Config = SpeechTokenizerConfig.Preset("tiny").Encoder with
    {
        HiddenSize = 3, VectorQuantizationHiddenDimension = 2, CodebookDim = 2, CodebookSize = 4, NumQuantizers = 3, NumSemanticQuantizers = 1,
    };

    static readonly float[,] Semantic = { { 1, 1 }, { -1, -1 }, { 3, 0 }, { 0, 3 } };
    static readonly float[,] Coarse = { { 0, 0 }, { 4, 0 }, { 0, 4 }, { 4, 4 } };
    static readonly float[,] Fine = { { 1, 0 }, { -1, 0 }, { 0, 1 }, { 0, -1 } };

    /// <summary>Stores codewords as Mimi does: embed_sum = codeword * usage, with uneven usage counts.</summary>
    static void SetCodebook(MimiEuclideanCodebook codebook, float[,] codewords, float[] usage)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var u = tensor(usage);
        codebook.ClusterUsage.copy_(u);
        codebook.EmbedSum.copy_(tensor(codewords) * u.unsqueeze(1));
    }

    static MimiSplitResidualVectorQuantizer HandMade()
    {
        var q = new MimiSplitResidualVectorQuantizer(Config);
        SetCodebook(q.Semantic.Layer(0).Codebook, Semantic, new float[] { 1, 2, 3, 4 });
        SetCodebook(q.Acoustic.Layer(0).Codebook, Coarse, new float[] { 2, 1, 0.5f, 4 });
        SetCodebook(q.Acoustic.Layer(1).Codebook, Fine, new float[] { 7, 1, 3, 1 });
        using var noGrad = no_grad();
        var pick = tensor(new float[,] { { 1, 0, 0 }, { 0, 0, 1 } }).view(2, 3, 1); // [vq, hidden, 1]
        foreach (var rvq in new[] { q.Semantic, q.Acoustic })
            rvq.named_parameters().Single(p => p.name == "input_proj.weight").parameter.copy_(pick);
        return q;
    }

    static long[] Codes(MimiSplitResidualVectorQuantizer q, float[] hidden, int n)
    {
        using var scope = NewDisposeScope();
        var x = tensor(hidden).view(1, 3, 1); // [B, hidden, T]
        return q.Encode(x, n).view(-1).data<long>().ToArray();
    }

    [Fact]
    public void Codewords_are_embed_sum_over_usage()
    {
        using var q = HandMade();
        using var scope = NewDisposeScope();
        var embed = q.Acoustic.Layer(0).Codebook.Embed();
        Assert.True(embed.allclose(tensor(Coarse), rtol: 0, atol: 1e-6));
    }

    [Fact]
    public void Semantic_and_acoustic_chains_each_quantize_the_projected_input()
    {
        using var q = HandMade();
        // x = (3.6, [ignored] 9, 0.8) → projected r = (3.6, 0.8).
        // Semantic: |r-(3,0)|² = 0.36 + 0.64 = 1.0 beats (1,1): 6.76 + 0.04 → code 2.
        // Acoustic stage 1 on r itself (not on the semantic residual (0.6, 0.8), which would pick (0,0)):
        //   (4,0): 0.16 + 0.64 = 0.8 beats (0,0): 12.96 + 0.64 and (4,4): 10.4 → code 1, residual (-0.4, 0.8).
        // Stage 2: (0,1): 0.16 + 0.04 = 0.2 beats (-1,0): 0.36 + 0.64 = 1.0 and (1,0): 1.96 + 0.64 → code 2.
        Assert.Equal(new long[] { 2, 1, 2 }, Codes(q, new float[] { 3.6f, 9, 0.8f }, 3));
        // Fewer codebooks: a prefix of the same codes (later stages never change earlier ones).
        Assert.Equal(new long[] { 2, 1 }, Codes(q, new float[] { 3.6f, 9, 0.8f }, 2));
        Assert.Equal(new long[] { 2 }, Codes(q, new float[] { 3.6f, 9, 0.8f }, 1));
        // x → r = (-0.2, 3.3): semantic (0,3): 0.04 + 0.09; coarse (0,4): 0.04 + 0.49 → residual (-0.2, -0.7);
        // fine (0,-1): 0.04 + 0.09 = 0.13 beats (-1,0): 0.64 + 0.49.
        Assert.Equal(new long[] { 3, 2, 3 }, Codes(q, new float[] { -0.2f, -5, 3.3f }, 3));
    }

    [Fact]
    public void Residual_chain_subtracts_each_chosen_codeword()
    {
        using var q = HandMade();
        using var scope = NewDisposeScope();
        // r = (4.9, 4.2): coarse (4,4) → residual (0.9, 0.2) → fine (1,0) → residual (-0.1, 0.2).
        var x = tensor(new float[] { 4.9f, 0, 4.2f }).view(1, 3, 1);
        var codes = q.Acoustic.Encode(x, 2).view(-1).data<long>().ToArray();
        Assert.Equal(new long[] { 3, 0 }, codes);
        var decoded = q.Acoustic.Layer(0).Decode(tensor(new long[] { 3 }).view(1, 1)) + q.Acoustic.Layer(1).Decode(tensor(new long[] { 0 }).view(1, 1));
        Assert.True(decoded.view(-1).allclose(tensor(new float[] { 5, 4 }), rtol: 0, atol: 1e-6));
    }

    [Fact]
    public void Many_vectors_match_a_brute_force_search()
    {
        using var q = HandMade();
        using var scope = NewDisposeScope();
        var gen = new Generator(11);
        var x = randn(new long[] { 2, 3, 50 }, generator: gen) * 3;     // [B, hidden, T]
        var codes = q.Encode(x, 3);                                     // [3, B, T]
        var proj = x.index_select(1, tensor(new long[] { 0, 2 }));     // [B, 2, T]
        float[][,] books = { Semantic, Coarse, Fine };
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < 50; t++)
            {
                float r0 = proj[b, 0, t].item<float>(), r1 = proj[b, 1, t].item<float>();
                long Nearest(float[,] book, float a0, float a1)
                {
                    long best = -1; double bestD = double.MaxValue;
                    for (int k = 0; k < 4; k++)
                    {
                        double d = Math.Pow(a0 - book[k, 0], 2) + Math.Pow(a1 - book[k, 1], 2);
                        if (d < bestD) { bestD = d; best = k; }
                    }
                    return best;
                }
                Assert.Equal(Nearest(Semantic, r0, r1), codes[0, b, t].item<long>());
                long c1 = Nearest(Coarse, r0, r1);
                Assert.Equal(c1, codes[1, b, t].item<long>());
                Assert.Equal(Nearest(Fine, r0 - Coarse[c1, 0], r1 - Coarse[c1, 1]), codes[2, b, t].item<long>());
            }
    }

    [Fact]
    public void Asking_for_fewer_than_the_semantic_codebooks_or_more_than_exist_is_an_error()
    {
        using var q = HandMade();
        using var scope = NewDisposeScope();
        var x = zeros(1, 3, 1);
        Assert.Throws<ArgumentOutOfRangeException>(() => q.Encode(x, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => q.Encode(x, 4));
    }
}
