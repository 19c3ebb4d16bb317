using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>The 12 Hz speech tokenizer's decoder (the reference's Qwen3TTSTokenizerV2Decoder): 16 codebook indices
/// per 80 ms frame → 24 kHz waveform in [-1, 1]. Stages, with the checkpoint's names (under <c>decoder.</c> in
/// speech_tokenizer/model.safetensors):
/// <list type="number">
/// <item><c>quantizer</c>: codes [B, 16, T] → summed codebook entries, projected → [B, codebook_dim, T]</item>
/// <item><c>pre_conv</c>: causal conv, kernel 3 → [B, latent_dim, T]</item>
/// <item><c>pre_transformer</c>: sliding-window transformer over the T frames (width preserved)</item>
/// <item><c>upsample</c>: per upsampling_ratios factor f, a causal transposed conv (×f) and a ConvNeXt block</item>
/// <item><c>decoder</c>: causal conv 7 to decoder_dim, one <see cref="DecoderBlock"/> per upsample_rates entry
/// (×r, width halved), SnakeBeta, causal conv 7 to one channel, then clamped to [-1, 1]</item>
/// </list>
/// T frames give exactly T · <see cref="TotalUpsample"/> samples (1920 for the released config: 2·2·8·5·4·3).</summary>
public sealed class SpeechTokenizerDecoder : nn.Module<Tensor, Tensor>
{
    /// <summary>The reference's chunked_decode defaults: 300-frame chunks (24 s), each decoded with up to 25 frames
    /// (2 s) of the preceding codes as left context, whose audio is dropped.</summary>
    public const int DefaultChunkSize = 300, DefaultLeftContext = 25;

    readonly DecoderTransformerModel pre_transformer;
    readonly SplitResidualVectorQuantizer quantizer;
    readonly MimiConv1d pre_conv;
    readonly ModuleList<ModuleList<nn.Module<Tensor, Tensor>>> upsample;
    readonly ModuleList<nn.Module<Tensor, Tensor>> decoder;

    /// <param name="device">Use <c>new Device("meta")</c> for the exact layout without allocating weights.</param>
    public SpeechTokenizerDecoder(DecoderConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(SpeechTokenizerDecoder))
    {
        Config = config;
        var c = config;

        pre_transformer = new DecoderTransformerModel(c, device, dtype);
        quantizer = new SplitResidualVectorQuantizer(c.QuantizerDimension, c.CodebookDim, c.CodebookDim, c.NumQuantizers, c.CodebookSize, device, dtype);
        pre_conv = new MimiConv1d(c.CodebookDim, c.LatentDim, kernelSize: 3, device: device, dtype: dtype);

        upsample = new ModuleList<ModuleList<nn.Module<Tensor, Tensor>>>();
        foreach (int factor in c.UpsamplingRatios)
            upsample.Add(new ModuleList<nn.Module<Tensor, Tensor>>(
                new CausalTransConvNet(c.LatentDim, c.LatentDim, factor, factor, device, dtype),
                new ConvNeXtBlock(c.LatentDim, device, dtype)));

        decoder = new ModuleList<nn.Module<Tensor, Tensor>>(new MimiConv1d(c.LatentDim, c.DecoderDim, kernelSize: 7, device: device, dtype: dtype));
        for (int i = 0; i < c.UpsampleRates.Count; i++)
            decoder.Add(new DecoderBlock(c.BlockDim(i), c.BlockDim(i + 1), c.UpsampleRates[i], device, dtype));
        decoder.Add(new SnakeBeta(c.OutputDim, device, dtype));
        decoder.Add(new MimiConv1d(c.OutputDim, 1, kernelSize: 7, device: device, dtype: dtype));
        RegisterComponents();
    }

    public DecoderConfig Config { get; }

    /// <summary>Output samples per code frame: the product of upsample_rates and upsampling_ratios.</summary>
    public int TotalUpsample => Config.TotalUpsample;

    public SplitResidualVectorQuantizer Quantizer => quantizer;
    public DecoderTransformerModel PreTransformer => pre_transformer;

    /// <summary>Decodes a whole sequence at once (the reference's forward).</summary>
    /// <param name="codes">int64 [B, num_quantizers, T], every value in [0, codebook_size)</param>
    /// <returns>[B, 1, T · TotalUpsample] in [-1, 1]</returns>
    public override Tensor forward(Tensor codes)
    {
        if (codes.dim() != 3 || codes.shape[1] != Config.NumQuantizers)
            throw new ArgumentException($"codes must be [batch, {Config.NumQuantizers}, frames]; got [{string.Join(", ", codes.shape)}]");
        using var scope = NewDisposeScope();
        var h = pre_conv.forward(quantizer.Decode(codes));          // [B, latent, T]
        h = pre_transformer.forward(h.transpose(1, 2)).transpose(1, 2); // [B, T, latent] through the transformer, back to [B, latent, T]
        foreach (var stage in upsample)
            foreach (var m in stage) h = m.forward(h);                // [B, latent, T · Πratios]
        foreach (var m in decoder) h = m.forward(h);                  // [B, 1, T · TotalUpsample]
        return h.clamp(-1, 1).MoveToOuterDisposeScope();
    }

    /// <summary>The reference's chunked_decode: frames [s, e) are decoded together with up to
    /// <paramref name="leftContext"/> frames before s, and the context's audio is cut off. Memory is bounded by the
    /// chunk, not the clip. Not bit-equal to <see cref="forward"/> for clips longer than one chunk: the pre-transformer
    /// sees at most leftContext frames of history at a chunk start where a full decode sees every earlier frame
    /// (within its layers' sliding windows); see the decoder tests and bench/README.md for the size of the difference.</summary>
    /// <param name="codes">int64 [B, num_quantizers, T]</param>
    /// <returns>[B, 1, T · TotalUpsample]</returns>
    public Tensor ChunkedDecode(Tensor codes, int chunkSize = DefaultChunkSize, int leftContext = DefaultLeftContext)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkSize);
        ArgumentOutOfRangeException.ThrowIfNegative(leftContext);
        long frames = codes.shape[^1];
        var pieces = new List<Tensor>();
        using var scope = NewDisposeScope();
        for (long start = 0; start < frames;)
        {
            long end = Math.Min(start + chunkSize, frames);
            long context = Math.Min(leftContext, start);
            var wav = forward(codes[TensorIndex.Ellipsis, TensorIndex.Slice(start - context, end)]);
            pieces.Add(wav[TensorIndex.Ellipsis, TensorIndex.Slice(context * TotalUpsample)]);
            start = end;
        }
        return cat(pieces, -1).MoveToOuterDisposeScope();
    }

    /// <summary>One clip: codes [frames, num_quantizers] (the layout of audio_codes in the training data) → 24 kHz
    /// samples, frames · TotalUpsample of them, decoded as the reference's Qwen3TTSTokenizerV2Model.decode does
    /// (chunked, 300 frames with 25 frames of left context).</summary>
    /// <exception cref="ArgumentException">a wrong codebook count, no frames, or a code outside [0, codebook_size),
    /// naming the frame and codebook.</exception>
    public float[] Decode(long[,] codes, int chunkSize = DefaultChunkSize, int leftContext = DefaultLeftContext)
    {
        CheckCodes(codes, Config);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var input = tensor(codes, device: Device).transpose(0, 1).unsqueeze(0); // [frames, K] -> [1, K, frames]
        var wav = ChunkedDecode(input, chunkSize, leftContext);
        return wav.reshape(-1).to(ScalarType.Float32).cpu().data<float>().ToArray();
    }

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first frame and codebook whose code the decoder
    /// cannot take.</summary>
    public static void CheckCodes(long[,] codes, DecoderConfig config)
    {
        int frames = codes.GetLength(0), width = codes.GetLength(1);
        if (frames == 0) throw new ArgumentException("codes have no frames; a clip needs at least one frame");
        if (width != config.NumQuantizers)
            throw new ArgumentException($"codes have {width} codebooks per frame; the decoder takes {config.NumQuantizers}");
        for (int f = 0; f < frames; f++)
            for (int k = 0; k < width; k++)
                if (codes[f, k] < 0 || codes[f, k] >= config.CodebookSize)
                    throw new ArgumentException($"frame {f}, codebook {k}: code {codes[f, k]} is outside [0, {config.CodebookSize})");
    }

    Device Device => pre_conv.parameters().First().device;

    /// <summary>Name → shape of every parameter in registration order; <paramref name="prefix"/> "decoder." gives
    /// the names in speech_tokenizer/model.safetensors.</summary>
    public IReadOnlyList<(string Name, long[] Shape)> Layout(string prefix = "") =>
        named_parameters().Select(p => (prefix + p.name, p.parameter.shape)).ToList();
}
