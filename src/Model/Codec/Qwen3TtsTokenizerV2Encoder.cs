using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>The speech tokenizer's encoder: transformers' MimiModel without its decoder half (Qwen3TTSTokenizerV2Encoder
/// drops upsample, decoder_transformer and decoder). Fields <c>encoder</c> (SEANet), <c>encoder_transformer</c>,
/// <c>downsample</c> and <c>quantizer</c> give the checkpoint's names under <c>encoder.</c>.
/// Audio [B, L] at 24 kHz → SEANet [B, 512, ceil(L/960)] (25 Hz) → transformer → stride-2 conv [B, 512, ceil(L/1920)]
/// (12.5 Hz) → split RVQ codes.</summary>
public sealed class Qwen3TtsTokenizerV2Encoder : nn.Module
{
    readonly MimiEncoder encoder;
    readonly MimiTransformerModel encoder_transformer;
    readonly MimiConv1d? downsample;
    readonly MimiSplitResidualVectorQuantizer quantizer;

    public Qwen3TtsTokenizerV2Encoder(EncoderConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(Qwen3TtsTokenizerV2Encoder))
    {
        Config = config;
        encoder = new MimiEncoder(config, device, dtype);
        encoder_transformer = new MimiTransformerModel(config, device, dtype);
        if (config.HasDownsample)
            downsample = new MimiConv1d(config.HiddenSize, config.HiddenSize, config.DownsampleKernel, stride: 2, bias: false, padMode: "replicate", device: device, dtype: dtype);
        quantizer = new MimiSplitResidualVectorQuantizer(config, device, dtype);
        RegisterComponents();
    }

    public EncoderConfig Config { get; }
    public MimiEncoder Seanet => encoder;
    public MimiTransformerModel Transformer => encoder_transformer;
    public MimiConv1d? Downsample => downsample;
    public MimiSplitResidualVectorQuantizer Quantizer => quantizer;

    /// <summary>Code frames for <paramref name="samples"/> samples, by running the conv chain's length arithmetic
    /// (as Mimi's get_encoded_length); equals ceil(samples / frame_size).</summary>
    public long EncodedLength(long samples)
    {
        long length = samples;
        foreach (var conv in encoder.Convs()) length = conv.OutputLength(length);
        return downsample is null ? length : downsample.OutputLength(length);
    }

    /// <summary>Latents before quantization.</summary>
    /// <param name="audio">[B, L]</param>
    /// <returns>[B, hidden, frames]</returns>
    public Tensor Embed(Tensor audio)
    {
        using var scope = NewDisposeScope();
        var h = encoder.forward(audio.unsqueeze(1));                                  // [B, hidden, T25]
        h = encoder_transformer.forward(h.transpose(1, 2)).transpose(1, 2);           // [B, hidden, T25]
        if (downsample is not null) h = downsample.forward(h);                        // [B, hidden, T12]
        return h.MoveToOuterDisposeScope();
    }

    /// <param name="audio">[B, L] float, 24 kHz</param>
    /// <param name="numQuantizers">codebooks kept (the first n: semantic, then acoustic)</param>
    /// <returns>[B, frames, n] long</returns>
    public Tensor Encode(Tensor audio, int numQuantizers)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var codes = quantizer.Encode(Embed(audio), numQuantizers); // [n, B, T]
        return codes.permute(1, 2, 0).contiguous().MoveToOuterDisposeScope();
    }
}
