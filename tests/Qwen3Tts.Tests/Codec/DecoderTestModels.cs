using System.Text.Json.Nodes;
using Qwen3Tts.Model.Codec;
using Qwen3Tts.Model.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Codec;

/// <summary>Tiny decoders for tests: the released decoder_config with widths and depths shrunk, the real upsampling
/// (2·2·8·5·4·3 = 1920 samples per frame) kept.</summary>
static class DecoderTestModels
{
    public static JsonObject ReleasedSpeechTokenizerJson() =>
        (JsonObject)JsonNode.Parse(Presets.ReadReference("Qwen3-TTS-12Hz-1.7B-Base/speech_tokenizer/config.json"))!;

    /// <summary>decoder_config of a tiny decoder; <paramref name="window"/> and <paramref name="layers"/> set the
    /// pre-transformer's reach (layers · (window − 1) frames back).</summary>
    public static JsonObject TinyDecoderJson(int window = 4, int layers = 2, int codebookSize = 64)
    {
        var d = ReleasedSpeechTokenizerJson()["decoder_config"]!.AsObject();
        var tiny = (JsonObject)d.DeepClone();
        tiny["codebook_size"] = codebookSize;
        tiny["codebook_dim"] = 16;
        tiny["hidden_size"] = 16;
        tiny["latent_dim"] = 24;
        tiny["intermediate_size"] = 32;
        tiny["num_attention_heads"] = 2;
        tiny["num_key_value_heads"] = 2;
        tiny["head_dim"] = 8;
        tiny["num_hidden_layers"] = layers;
        tiny["sliding_window"] = window;
        tiny["decoder_dim"] = 32;
        return tiny;
    }

    public static DecoderConfig Tiny(int window = 4, int layers = 2, int codebookSize = 64) =>
        Parse(TinyDecoderJson(window, layers, codebookSize));

    /// <summary>A decoder_config, read as part of the released speech tokenizer config (whose encoder is given the
    /// same codebook size, as the config's validation asks).</summary>
    public static DecoderConfig Parse(JsonObject decoderConfig) => SpeechTokenizerConfig.Parse(WithDecoder(decoderConfig), "test speech tokenizer config").Decoder;

    /// <summary>The released speech_tokenizer/config.json with <paramref name="decoderConfig"/> in place of its decoder_config.</summary>
    public static JsonObject WithDecoder(JsonObject decoderConfig)
    {
        var json = ReleasedSpeechTokenizerJson();
        json["decoder_config"] = decoderConfig.DeepClone();
        json["encoder_config"]!["codebook_size"] = decoderConfig["codebook_size"]!.DeepClone();
        return json;
    }

    /// <summary>A tiny decoder with weights large enough that every stage shapes the output (the init-model init
    /// keeps layer scales at 0.01 and ConvNeXt gammas at 1e-6, which would hide the transformer and upsampler).</summary>
    public static SpeechTokenizerDecoder Build(DecoderConfig config, ulong seed = 1)
    {
        var decoder = new SpeechTokenizerDecoder(config);
        Randomize(decoder, seed);
        return decoder;
    }

    /// <summary>Every parameter drawn from a scale that suits its role: matrices ~ N(0, 1/fan_in), biases
    /// ~ N(0, 0.05), norm weights ~ 1 + N(0, 0.1), layer scales and gammas ~ 0.5 + N(0, 0.1), SnakeBeta logs
    /// ~ N(0, 0.3), codebook sums ~ N(0, 1) with usages in [0.5, 1.5]; residual-unit 1×1 convs at 0.3 and the last conv
    /// at 0.05 of the 1/fan_in scale, so the waveform stays mostly unclamped.</summary>
    public static void Randomize(nn.Module module, ulong seed)
    {
        using var generator = new Generator(seed);
        using var noGrad = no_grad();
        foreach (var (name, p) in module.named_parameters())
        {
            string leaf = name[(name.LastIndexOf('.') + 1)..];
            if (leaf == "cluster_usage") p.uniform_(0.5, 1.5, generator);
            else if (leaf == "embedding_sum") p.normal_(0, 1, generator);
            else if (leaf is "alpha" or "beta") p.normal_(0, 0.3, generator);
            else if (leaf is "scale" or "gamma") p.normal_(0.5, 0.1, generator);
            else if (p.dim() == 1 && (name.Contains("norm") || name.Contains("layernorm")) && leaf == "weight") p.normal_(1, 0.1, generator);
            else if (p.dim() == 1) p.normal_(0, 0.05, generator);
            else
            {
                long fanIn = p.shape.Skip(1).Aggregate(1L, (a, b) => a * b);
                // Twelve residual units each add their branch to the signal; quieter branches and a quiet last conv
                // keep the waveform mostly inside [-1, 1] instead of clamped.
                double gain = name.Contains(".conv2.") ? 0.3 : name.StartsWith("decoder.6.") ? 0.05 : 1;
                p.normal_(0, gain / Math.Sqrt(fanIn), generator);
            }
        }
    }

    /// <summary>Seeded codes [frames, K] in [0, size).</summary>
    public static long[,] RandomCodes(int frames, int codebooks, int size, int seed)
    {
        var random = new Random(seed);
        var codes = new long[frames, codebooks];
        for (int f = 0; f < frames; f++)
            for (int k = 0; k < codebooks; k++) codes[f, k] = random.Next(size);
        return codes;
    }

    public static Tensor AsInput(long[,] codes) => tensor(codes).transpose(0, 1).unsqueeze(0); // [frames, K] -> [1, K, frames]

    public static float[] Samples(Tensor wav) => wav.reshape(-1).data<float>().ToArray();

    /// <summary><see cref="Close.Assert"/> on waveforms: another batch size, chunk or CPU lets oneDNN sum in another order.</summary>
    public static void AssertClose(float[] expected, float[] actual, string what) =>
        Close.Assert(tensor(expected), tensor(actual), what);
}
