using System.Text.Json.Nodes;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>The tensors of speech_tokenizer/model.safetensors (Qwen3TTSTokenizerV2Model's state dict): <c>encoder.*</c>
/// from the encoder module itself, <c>decoder.*</c> as a name/shape list derived from <see cref="DecoderConfig"/> and the
/// reference decoder's module tree (so the file is complete before the decoder is ported). For the released config
/// this gives 225 encoder and 271 decoder tensors, the 496 of the released file.</summary>
public static class SpeechTokenizerLayout
{
    public const string EncoderPrefix = "encoder.";
    public const string DecoderPrefix = "decoder.";

    /// <summary>Every <c>encoder.*</c> tensor in state-dict order (built on the meta device: nothing is allocated).</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> EncoderTensors(EncoderConfig config)
    {
        using var encoder = new Qwen3TtsTokenizerV2Encoder(config, new Device("meta"));
        return encoder.state_dict().Select(kv => (EncoderPrefix + kv.Key, kv.Value.shape)).ToList();
    }

    /// <summary>Every <c>decoder.*</c> tensor of Qwen3TTSTokenizerV2Decoder, in its registration order: pre_transformer
    /// (layers, norm, input_proj, output_proj), quantizer (rvq_first, rvq_rest: input_proj, output_proj, codebooks whose
    /// parameters are <c>_codebook.cluster_usage</c> and <c>_codebook.embedding_sum</c>), pre_conv, upsample (transposed
    /// conv + ConvNeXt block per ratio), decoder (conv, one block per upsample rate, SnakeBeta, conv).</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> DecoderTensors(DecoderConfig c)
    {
        var t = new List<(string, long[])>();
        void Add(string name, params long[] shape) => t.Add((DecoderPrefix + name, shape));

        long hidden = c.HiddenSize, q = (long)c.NumAttentionHeads * c.HeadDim, kv = (long)c.NumKeyValueHeads * c.HeadDim;
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string p = $"pre_transformer.layers.{i}.";
            Add(p + "self_attn.q_proj.weight", q, hidden);
            if (c.AttentionBias) Add(p + "self_attn.q_proj.bias", q);
            Add(p + "self_attn.k_proj.weight", kv, hidden);
            if (c.AttentionBias) Add(p + "self_attn.k_proj.bias", kv);
            Add(p + "self_attn.v_proj.weight", kv, hidden);
            if (c.AttentionBias) Add(p + "self_attn.v_proj.bias", kv);
            Add(p + "self_attn.o_proj.weight", hidden, q);
            if (c.AttentionBias) Add(p + "self_attn.o_proj.bias", hidden);
            Add(p + "mlp.gate_proj.weight", c.IntermediateSize, hidden);
            Add(p + "mlp.up_proj.weight", c.IntermediateSize, hidden);
            Add(p + "mlp.down_proj.weight", hidden, c.IntermediateSize);
            Add(p + "input_layernorm.weight", hidden);
            Add(p + "post_attention_layernorm.weight", hidden);
            Add(p + "self_attn_layer_scale.scale", hidden);
            Add(p + "mlp_layer_scale.scale", hidden);
        }
        Add("pre_transformer.norm.weight", hidden);
        Add("pre_transformer.input_proj.weight", hidden, c.LatentDim);
        Add("pre_transformer.input_proj.bias", hidden);
        Add("pre_transformer.output_proj.weight", c.LatentDim, hidden);
        Add("pre_transformer.output_proj.bias", c.LatentDim);

        long dim = c.QuantizerDimension;
        foreach (var (name, count) in new[] { ("rvq_first", 1), ("rvq_rest", c.NumQuantizers - 1) })
        {
            Add($"quantizer.{name}.input_proj.weight", dim, c.CodebookDim, 1);
            Add($"quantizer.{name}.output_proj.weight", c.CodebookDim, dim, 1);
            for (int i = 0; i < count; i++)
            {
                Add($"quantizer.{name}.vq.layers.{i}._codebook.cluster_usage", c.CodebookSize);
                Add($"quantizer.{name}.vq.layers.{i}._codebook.embedding_sum", c.CodebookSize, dim);
            }
        }

        Add("pre_conv.conv.weight", c.LatentDim, c.CodebookDim, 3);
        Add("pre_conv.conv.bias", c.LatentDim);

        long latent = c.LatentDim;
        for (int i = 0; i < c.UpsamplingRatios.Count; i++)
        {
            string p = $"upsample.{i}.";
            Add(p + "0.conv.weight", latent, latent, c.UpsamplingRatios[i]); // ConvTranspose1d: [in, out, k]
            Add(p + "0.conv.bias", latent);
            Add(p + "1.dwconv.conv.weight", latent, 1, 7);                   // depthwise
            Add(p + "1.dwconv.conv.bias", latent);
            Add(p + "1.norm.weight", latent);
            Add(p + "1.norm.bias", latent);
            Add(p + "1.pwconv1.weight", 4 * latent, latent);
            Add(p + "1.pwconv1.bias", 4 * latent);
            Add(p + "1.pwconv2.weight", latent, 4 * latent);
            Add(p + "1.pwconv2.bias", latent);
            Add(p + "1.gamma", latent);
        }

        Add("decoder.0.conv.weight", c.DecoderDim, latent, 7);
        Add("decoder.0.conv.bias", c.DecoderDim);
        for (int i = 0; i < c.UpsampleRates.Count; i++)
        {
            string p = $"decoder.{i + 1}.block.";
            long inDim = c.BlockDim(i), outDim = c.BlockDim(i + 1);
            Add(p + "0.alpha", inDim);
            Add(p + "0.beta", inDim);
            Add(p + "1.conv.weight", inDim, outDim, 2 * c.UpsampleRates[i]);
            Add(p + "1.conv.bias", outDim);
            for (int unit = 2; unit <= 4; unit++) // residual units with dilations 1, 3, 9
            {
                Add($"{p}{unit}.act1.alpha", outDim);
                Add($"{p}{unit}.act1.beta", outDim);
                Add($"{p}{unit}.conv1.conv.weight", outDim, outDim, 7);
                Add($"{p}{unit}.conv1.conv.bias", outDim);
                Add($"{p}{unit}.act2.alpha", outDim);
                Add($"{p}{unit}.act2.beta", outDim);
                Add($"{p}{unit}.conv2.conv.weight", outDim, outDim, 1);
                Add($"{p}{unit}.conv2.conv.bias", outDim);
            }
        }
        int last = c.UpsampleRates.Count + 1;
        Add($"decoder.{last}.alpha", c.OutputDim);
        Add($"decoder.{last}.beta", c.OutputDim);
        Add($"decoder.{last + 1}.conv.weight", 1, c.OutputDim, 7);
        Add($"decoder.{last + 1}.conv.bias", 1);
        return t;
    }

    /// <summary>The whole file's tensors: encoder then decoder.</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> AllTensors(SpeechTokenizerConfig config) =>
        EncoderTensors(config.Encoder).Concat(DecoderTensors(config.Decoder)).ToList();

    /// <summary>Writes a speech_tokenizer folder with seeded random weights: config.json (the given JSON, released
    /// layout), preprocessor_config.json (the released one) and model.safetensors with every tensor of the released
    /// layout in fp32, as released. Values by role (see <see cref="RandomTensor"/>), drawn in layout order from one
    /// generator, so a seed gives the same file.</summary>
    public static SpeechTokenizerConfig WriteRandom(string dir, JsonObject configJson, string source, ulong seed, string referenceCheckpoint)
    {
        var config = SpeechTokenizerConfig.Parse(configJson, source);
        Directory.CreateDirectory(dir);
        using (var scope = NewDisposeScope())
        using (var generator = new Generator(seed))
        {
            var tensors = AllTensors(config).Select(e => (e.Name, RandomTensor(e.Name, e.Shape, config, generator))).ToList();
            CheckpointFiles.Save(dir, tensors);
        }
        ModelDirectory.WriteConfig(dir, config.Json);
        using var preprocessor = Presets.OpenReference($"{referenceCheckpoint}/{SpeechTokenizerConfig.FolderName}/preprocessor_config.json");
        AtomicFile.Write(Path.Combine(dir, "preprocessor_config.json"), stream => preprocessor.CopyTo(stream));
        return config;
    }

    /// <summary>A random value for a tensor by its role: weights of convs and linears ~ N(0, 1/fan_in) (activations keep
    /// their scale, so random codes vary), biases 0, norm scales 1, layer scales at layer_scale_initial_scale, ConvNeXt
    /// gamma 1e-6 and SnakeBeta alpha/beta 0 (the reference's inits), codebook sums ~ N(0, 1) with usage 1 (codewords
    /// N(0, 1)), initialized 1.</summary>
    public static Tensor RandomTensor(string name, long[] shape, SpeechTokenizerConfig config, Generator generator)
    {
        string last = name[(name.LastIndexOf('.') + 1)..];
        bool isEncoder = name.StartsWith(EncoderPrefix, StringComparison.Ordinal);
        switch (last)
        {
            case "embed_sum" or "embedding_sum":
                return randn(shape, generator: generator);
            case "cluster_usage" or "initialized":
                return ones(shape);
            case "alpha" or "beta":
                return zeros(shape);
            case "gamma":
                return full(shape, 1e-6);
            case "scale":
                return full(shape, isEncoder ? config.Encoder.LayerScaleInitialScale : config.Decoder.LayerScaleInitialScale);
            case "bias":
                return zeros(shape);
            case "weight" when shape.Length == 1: // LayerNorm / RMSNorm scale
                return ones(shape);
            case "weight":
                long fanIn = shape.Skip(1).Aggregate(1L, (a, b) => a * b);
                return randn(shape, generator: generator).mul_(1.0 / Math.Sqrt(fanIn));
            default:
                throw new ArgumentException($"no initialization rule for speech tokenizer tensor '{name}'");
        }
    }
}
