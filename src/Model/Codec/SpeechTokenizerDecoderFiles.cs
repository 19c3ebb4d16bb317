using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>A decoder loaded from a speech tokenizer folder, with the output sample rate its config.json declares.</summary>
public sealed record LoadedSpeechTokenizerDecoder(SpeechTokenizerDecoder Decoder, int OutputSampleRate, string Directory);

/// <summary>The decoder's side of a speech tokenizer folder (config.json + model.safetensors, the released
/// speech_tokenizer/ layout): the decoder's tensors are the checkpoint's <c>decoder.*</c> keys; the encoder's
/// (<c>encoder.*</c>) are left alone.</summary>
public static class SpeechTokenizerDecoderFiles
{
    public const string Prefix = "decoder.";

    /// <summary>The speech tokenizer folder: <paramref name="dir"/>/speech_tokenizer when it has a config.json
    /// (a model folder), else <paramref name="dir"/> itself.</summary>
    public static string ResolveDirectory(string dir)
    {
        string nested = Path.Combine(dir, SpeechTokenizerConfig.FolderName);
        if (File.Exists(Path.Combine(nested, ModelDirectory.ConfigFile))) return nested;
        if (File.Exists(Path.Combine(dir, ModelDirectory.ConfigFile))) return dir;
        throw new ConfigException($"{dir}: neither a speech tokenizer folder (config.json) nor a model folder holding {SpeechTokenizerConfig.FolderName}/config.json");
    }

    /// <summary>Builds the decoder from <paramref name="dir"/>'s config.json and copies in its <c>decoder.*</c> weights.
    /// Every decoder tensor must be present with its shape; the encoder's tensors are ignored.</summary>
    public static LoadedSpeechTokenizerDecoder Load(string dir, Device? device = null, ScalarType? dtype = null)
    {
        string folder = ResolveDirectory(dir);
        string configPath = Path.Combine(folder, ModelDirectory.ConfigFile);
        var json = Qwen3TtsConfig.ReadJson(configPath);
        if (!json.ContainsKey("decoder_config"))
            throw new ConfigException($"{configPath}: no 'decoder_config'; not a speech tokenizer config (speech_tokenizer/config.json)");
        var config = SpeechTokenizerConfig.Parse(json, configPath);
        if (!ModelDirectory.HasWeights(folder)) throw new CheckpointException($"{folder}: no model.safetensors or model.safetensors.index.json");
        var decoder = new SpeechTokenizerDecoder(config.Decoder, device, dtype);
        var holder = new DecoderHolder(decoder);
        var report = CheckpointLoader.Load(holder, folder, strict: false);
        var foreign = report.Unexpected.Where(k => !k.StartsWith("encoder.", StringComparison.Ordinal)).ToList();
        if (report.Missing.Count > 0 || report.Mismatched.Count > 0 || foreign.Count > 0)
            throw new CheckpointException($"{folder}: the decoder's tensors do not match config.json's decoder_config"
                + new LoadReport(report.Loaded, report.Missing, foreign, report.Mismatched).Describe());
        decoder.eval();
        return new LoadedSpeechTokenizerDecoder(decoder, config.OutputSampleRate, folder);
    }

    /// <summary>The decoder's tensors under their checkpoint names (<c>decoder.</c> + state-dict name).</summary>
    public static IEnumerable<(string Name, Tensor Tensor)> NamedTensors(SpeechTokenizerDecoder decoder) =>
        decoder.state_dict().Select(kv => (Prefix + kv.Key, kv.Value));

    /// <summary>Seeded random weights for a fresh decoder (init-model, tests). As transformers' default init:
    /// Linear, Conv1d and ConvTranspose1d weights ~ N(0, std), biases zero; norms, SnakeBeta, layer scales and
    /// ConvNeXt gammas keep their constructed values. Codebook sums are drawn ~ N(0, 1) (usage one), not left at the
    /// reference's zeros, so that different codes decode to different audio.</summary>
    public static void InitializeRandom(SpeechTokenizerDecoder decoder, ulong seed, double std = 0.02)
    {
        using var generator = new Generator(seed);
        using var noGrad = no_grad();
        foreach (var (_, module) in decoder.named_modules())
        {
            switch (module)
            {
                case Linear linear:
                    linear.weight!.normal_(0, std, generator);
                    linear.bias?.zero_();
                    break;
                case Conv1d conv:
                    conv.weight!.normal_(0, std, generator);
                    conv.bias?.zero_();
                    break;
                case ConvTranspose1d conv:
                    conv.weight!.normal_(0, std, generator);
                    conv.bias?.zero_();
                    break;
                case EuclideanCodebook codebook:
                    foreach (var (name, p) in codebook.named_parameters())
                        if (name == "embedding_sum") p.normal_(0, 1, generator);
                        else p.fill_(1.0);
                    break;
            }
        }
    }

    /// <summary>Puts the decoder's names under <c>decoder.</c>, as in the speech tokenizer checkpoint.</summary>
    sealed class DecoderHolder : nn.Module
    {
        readonly SpeechTokenizerDecoder decoder;

        public DecoderHolder(SpeechTokenizerDecoder decoder) : base(nameof(DecoderHolder))
        {
            this.decoder = decoder;
            RegisterComponents();
        }
    }
}
