using Qwen3Tts.Model.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

// The decoder's residual vector quantizer, decode side only (codes → continuous latents), with the reference's
// module names: quantizer.rvq_first (the one semantic codebook) and quantizer.rvq_rest (the 15 acoustic ones),
// each ResidualVectorQuantizer holding vq.layers.N._codebook.{cluster_usage, embedding_sum}, an input_proj (used
// only when encoding, kept so the state dict matches) and an output_proj.

/// <summary>One codebook, stored as the EMA statistics it was trained with: entry i is
/// embedding_sum[i] / max(cluster_usage[i], 1e-5).</summary>
public sealed class EuclideanCodebook : nn.Module
{
    const double Epsilon = 1e-5;
    readonly Parameter cluster_usage, embedding_sum;

    public EuclideanCodebook(long dim, long codebookSize, Device? device = null, ScalarType? dtype = null) : base(nameof(EuclideanCodebook))
    {
        cluster_usage = new Parameter(ones(codebookSize, dtype: dtype, device: device));
        embedding_sum = new Parameter(zeros(codebookSize, dim, dtype: dtype, device: device));
        RegisterComponents();
    }

    /// <summary>The codebook entries [size, dim].</summary>
    public Tensor Embedding()
    {
        using var scope = NewDisposeScope();
        return (embedding_sum / cluster_usage.clamp_min(Epsilon).unsqueeze(1)).MoveToOuterDisposeScope();
    }

    /// <param name="codes">[B, T] in [0, size)</param>
    /// <returns>[B, T, dim]</returns>
    public Tensor Decode(Tensor codes)
    {
        using var scope = NewDisposeScope();
        var table = Embedding();
        // [B, T] -> [B*T] rows of the table -> [B, T, dim]
        return table.index_select(0, codes.reshape(-1)).view(codes.shape[0], codes.shape[1], table.shape[1]).MoveToOuterDisposeScope();
    }
}

/// <summary>A codebook whose entries already have the quantizer's width (the reference's project_out is the
/// identity in every Qwen3-TTS quantizer, so it carries no weights).</summary>
public sealed class VectorQuantization : nn.Module
{
    readonly EuclideanCodebook _codebook;

    public VectorQuantization(long dim, long codebookSize, Device? device = null, ScalarType? dtype = null) : base(nameof(VectorQuantization))
    {
        _codebook = new EuclideanCodebook(dim, codebookSize, device, dtype);
        RegisterComponents();
    }

    public EuclideanCodebook Codebook => _codebook;

    /// <param name="codes">[B, T]</param>
    /// <returns>[B, dim, T]</returns>
    public Tensor Decode(Tensor codes)
    {
        using var scope = NewDisposeScope();
        return _codebook.Decode(codes).transpose(1, 2).MoveToOuterDisposeScope();
    }
}

/// <summary>A stack of codebooks whose entries add up (the reference's ResidualVectorQuantization; weights under
/// <c>layers.N.</c>).</summary>
public sealed class ResidualVectorQuantization : nn.Module
{
    readonly ModuleList<VectorQuantization> layers;

    public ResidualVectorQuantization(long dim, int numQuantizers, long codebookSize, Device? device = null, ScalarType? dtype = null)
        : base(nameof(ResidualVectorQuantization))
    {
        layers = new ModuleList<VectorQuantization>(Enumerable.Range(0, numQuantizers)
            .Select(_ => new VectorQuantization(dim, codebookSize, device, dtype)).ToArray());
        RegisterComponents();
    }

    public int Count => layers.Count;
    public VectorQuantization this[int i] => layers[i];

    /// <param name="codes">[B, K, T], K ≤ the number of codebooks; codebook k decodes codes[:, k]</param>
    /// <returns>[B, dim, T]: the sum of the K looked-up entries</returns>
    public Tensor Decode(Tensor codes)
    {
        using var scope = NewDisposeScope();
        Tensor? sum = null;
        for (int k = 0; k < codes.shape[1]; k++)
        {
            var part = layers[k].Decode(codes[.., k]); // [B, dim, T]
            sum = sum is null ? part : sum + part;
        }
        return sum!.MoveToOuterDisposeScope();
    }
}

/// <summary>Residual VQ with its projections: codes → summed entries → a 1×1 conv (no bias) to the output width.
/// input_proj (the encoder side's projection into the codebook width) is never used when decoding; it exists so the
/// state dict matches the checkpoint (force_projection=True in the reference builds both).</summary>
public sealed class ResidualVectorQuantizer : nn.Module
{
    readonly Conv1d input_proj, output_proj;
    readonly ResidualVectorQuantization vq;

    public ResidualVectorQuantizer(long dimension, long inputDimension, long outputDimension, int numQuantizers, long bins,
        Device? device = null, ScalarType? dtype = null) : base(nameof(ResidualVectorQuantizer))
    {
        input_proj = nn.Conv1d(inputDimension, dimension, 1, bias: false, device: device, dtype: dtype);
        output_proj = nn.Conv1d(dimension, outputDimension, 1, bias: false, device: device, dtype: dtype);
        vq = new ResidualVectorQuantization(dimension, numQuantizers, bins, device, dtype);
        RegisterComponents();
    }

    public ResidualVectorQuantization Vq => vq;

    /// <param name="codes">[B, K, T]</param>
    /// <returns>[B, output_dim, T]</returns>
    public Tensor Decode(Tensor codes)
    {
        using var scope = NewDisposeScope();
        return BatchedConv.Forward(output_proj, vq.Decode(codes), groups: 1).MoveToOuterDisposeScope();
    }
}

/// <summary>The decoder's quantizer (the reference's SplitResidualVectorQuantizer): codebook 0 (semantic) in
/// rvq_first and codebooks 1..K−1 (acoustic) in rvq_rest, each with its own output projection; the latent is the sum
/// of the two projected parts. Codebook widths are codebook_dim / 2, projected to codebook_dim.</summary>
public sealed class SplitResidualVectorQuantizer : nn.Module
{
    /// <summary>The reference fixes one semantic codebook (n_q_semantic=1) whatever the config says.</summary>
    public const int SemanticQuantizers = 1;

    readonly ResidualVectorQuantizer rvq_first, rvq_rest;

    public SplitResidualVectorQuantizer(long dimension, long inputDimension, long outputDimension, int numQuantizers, long bins,
        Device? device = null, ScalarType? dtype = null) : base(nameof(SplitResidualVectorQuantizer))
    {
        if (numQuantizers <= SemanticQuantizers)
            throw new ArgumentException($"num_quantizers is {numQuantizers}; it must exceed the {SemanticQuantizers} semantic codebook");
        rvq_first = new ResidualVectorQuantizer(dimension, inputDimension, outputDimension, SemanticQuantizers, bins, device, dtype);
        rvq_rest = new ResidualVectorQuantizer(dimension, inputDimension, outputDimension, numQuantizers - SemanticQuantizers, bins, device, dtype);
        RegisterComponents();
    }

    public ResidualVectorQuantizer RvqFirst => rvq_first;
    public ResidualVectorQuantizer RvqRest => rvq_rest;

    /// <param name="codes">[B, K, T] with 1 ≤ K ≤ num_quantizers</param>
    /// <returns>[B, output_dim, T]</returns>
    public Tensor Decode(Tensor codes)
    {
        using var scope = NewDisposeScope();
        var latent = rvq_first.Decode(codes[.., ..SemanticQuantizers]);
        if (codes.shape[1] > SemanticQuantizers) latent = latent + rvq_rest.Decode(codes[.., SemanticQuantizers..]);
        return latent.MoveToOuterDisposeScope();
    }
}
