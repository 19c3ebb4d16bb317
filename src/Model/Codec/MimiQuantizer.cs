using Qwen3Tts.Model.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>A codebook as Mimi stores it: buffers <c>embed_sum</c> [K, D] and <c>cluster_usage</c> [K] (EMA statistics)
/// and <c>initialized</c> [1]; the codewords are embed_sum / max(cluster_usage, 1e-5). Encoding picks, per vector,
/// the codeword at the smallest Euclidean distance (torch.cdist, then argmin: the first index on a tie).</summary>
public sealed class MimiEuclideanCodebook : nn.Module
{
    const double Epsilon = 1e-5;

    public MimiEuclideanCodebook(long codebookSize, long dim, Device? device = null, ScalarType? dtype = null) : base(nameof(MimiEuclideanCodebook))
    {
        // Read back through get_buffer: Module.to(dtype) and loading may replace the tensors.
        var type = dtype ?? ScalarType.Float32;
        register_buffer("initialized", ones(1, dtype: type, device: device));
        register_buffer("cluster_usage", ones(codebookSize, dtype: type, device: device));
        register_buffer("embed_sum", zeros(codebookSize, dim, dtype: type, device: device));
    }

    public Tensor EmbedSum => get_buffer("embed_sum")!;
    public Tensor ClusterUsage => get_buffer("cluster_usage")!;

    /// <summary>[K, D] codewords.</summary>
    public Tensor Embed() => EmbedSum / ClusterUsage.clamp(min: Epsilon).unsqueeze(1);

    /// <param name="x">[N, D]</param>
    /// <returns>[N] long, the nearest codeword of each row</returns>
    public Tensor Encode(Tensor x)
    {
        using var scope = NewDisposeScope();
        var distances = cdist(x.unsqueeze(0).to(ScalarType.Float32), Embed().unsqueeze(0).to(ScalarType.Float32), p: 2)[0]; // [N, K]
        return distances.argmin(dim: -1).MoveToOuterDisposeScope();
    }

    /// <param name="codes">[...] long</param>
    /// <returns>[..., D]</returns>
    public Tensor Decode(Tensor codes)
    {
        using var scope = NewDisposeScope();
        var shape = codes.shape.Append(-1).ToArray();
        return Embed().index_select(0, codes.reshape(-1)).view(shape).MoveToOuterDisposeScope();
    }
}

/// <summary>One VQ stage (<c>codebook</c>) over [B, D, T] tensors.</summary>
public sealed class MimiVectorQuantization : nn.Module
{
    readonly MimiEuclideanCodebook codebook;

    public MimiVectorQuantization(long codebookSize, long dim, Device? device = null, ScalarType? dtype = null) : base(nameof(MimiVectorQuantization))
    {
        codebook = new MimiEuclideanCodebook(codebookSize, dim, device, dtype);
        RegisterComponents();
    }

    public MimiEuclideanCodebook Codebook => codebook;

    /// <param name="x">[B, D, T]</param>
    /// <returns>[B, T] long</returns>
    public Tensor Encode(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], d = x.shape[1], t = x.shape[2];
        var rows = x.permute(0, 2, 1).reshape(b * t, d); // [B*T, D]
        return codebook.Encode(rows).view(b, t).MoveToOuterDisposeScope();
    }

    /// <param name="codes">[B, T] long</param>
    /// <returns>[B, D, T]</returns>
    public Tensor Decode(Tensor codes)
    {
        using var scope = NewDisposeScope();
        return codebook.Decode(codes).permute(0, 2, 1).MoveToOuterDisposeScope();
    }
}

/// <summary>Residual VQ: a 1x1 <c>input_proj</c> from the transformer width to the VQ width (and <c>output_proj</c> back,
/// used only when decoding), then each stage quantizes what the previous stages left: r_0 = proj(x),
/// code_k = nearest(r_k), r_{k+1} = r_k - codeword(code_k).</summary>
public sealed class MimiResidualVectorQuantizer : nn.Module
{
    readonly Conv1d? input_proj, output_proj;
    readonly ModuleList<MimiVectorQuantization> layers;

    public MimiResidualVectorQuantizer(EncoderConfig config, int numQuantizers, Device? device = null, ScalarType? dtype = null) : base(nameof(MimiResidualVectorQuantizer))
    {
        layers = new ModuleList<MimiVectorQuantization>(Enumerable.Range(0, numQuantizers)
            .Select(_ => new MimiVectorQuantization(config.CodebookSize, config.CodebookDim, device, dtype)).ToArray());
        if (config.HasQuantizerProjection)
        {
            input_proj = nn.Conv1d(config.HiddenSize, config.VectorQuantizationHiddenDimension, 1, bias: false, device: device, dtype: dtype);
            output_proj = nn.Conv1d(config.VectorQuantizationHiddenDimension, config.HiddenSize, 1, bias: false, device: device, dtype: dtype);
        }
        RegisterComponents();
    }

    public int NumQuantizers => layers.Count;

    public MimiVectorQuantization Layer(int i) => layers[i];

    /// <param name="x">[B, hidden, T]</param>
    /// <param name="numQuantizers">stages to run (the first n)</param>
    /// <returns>[n, B, T] long</returns>
    public Tensor Encode(Tensor x, int numQuantizers)
    {
        if (numQuantizers < 0 || numQuantizers > layers.Count)
            throw new ArgumentOutOfRangeException(nameof(numQuantizers), $"{numQuantizers} stages asked of a residual quantizer with {layers.Count}");
        using var scope = NewDisposeScope();
        var residual = input_proj is null ? x : BatchedConv.Forward(input_proj, x, groups: 1); // [B, D, T]
        var codes = new List<Tensor>();
        for (int k = 0; k < numQuantizers; k++)
        {
            var stage = layers[k];
            var indices = stage.Encode(residual);
            residual = residual - stage.Decode(indices);
            codes.Add(indices);
        }
        return stack(codes).MoveToOuterDisposeScope();
    }
}

/// <summary>Split RVQ: the first num_semantic_quantizers codebooks (<c>semantic_residual_vector_quantizer</c>, distilled
/// toward a semantic model) and the rest (<c>acoustic_residual_vector_quantizer</c>) each quantize the same input with
/// their own projection; the acoustic chain does not start from the semantic residual. Codes are the semantic ones
/// followed by the acoustic ones.</summary>
public sealed class MimiSplitResidualVectorQuantizer : nn.Module
{
    readonly MimiResidualVectorQuantizer semantic_residual_vector_quantizer, acoustic_residual_vector_quantizer;

    public MimiSplitResidualVectorQuantizer(EncoderConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(MimiSplitResidualVectorQuantizer))
    {
        semantic_residual_vector_quantizer = new MimiResidualVectorQuantizer(config, config.NumSemanticQuantizers, device, dtype);
        acoustic_residual_vector_quantizer = new MimiResidualVectorQuantizer(config, config.NumQuantizers - config.NumSemanticQuantizers, device, dtype);
        RegisterComponents();
    }

    public MimiResidualVectorQuantizer Semantic => semantic_residual_vector_quantizer;
    public MimiResidualVectorQuantizer Acoustic => acoustic_residual_vector_quantizer;

    /// <param name="x">[B, hidden, T]</param>
    /// <param name="numQuantizers">codebooks wanted (at least the semantic ones); later acoustic stages are not run,
    /// which leaves the earlier codes unchanged since each stage only sees its predecessors' residual</param>
    /// <returns>[n, B, T] long</returns>
    public Tensor Encode(Tensor x, int numQuantizers)
    {
        int semantic = semantic_residual_vector_quantizer.NumQuantizers;
        int total = semantic + acoustic_residual_vector_quantizer.NumQuantizers;
        if (numQuantizers < semantic || numQuantizers > total)
            throw new ArgumentOutOfRangeException(nameof(numQuantizers), $"{numQuantizers} codebooks asked; the split quantizer has {semantic} semantic and {total} in all");
        using var scope = NewDisposeScope();
        var codes = semantic_residual_vector_quantizer.Encode(x, semantic);
        if (numQuantizers > semantic)
            codes = cat(new[] { codes, acoustic_residual_vector_quantizer.Encode(x, numQuantizers - semantic) }, 0);
        return codes.MoveToOuterDisposeScope();
    }
}
