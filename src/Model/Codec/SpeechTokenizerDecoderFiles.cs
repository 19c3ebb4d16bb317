using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>A decoder loaded from a speech tokenizer folder, with the output sample rate its config.json declares.</summary>
public sealed record LoadedSpeechTokenizerDecoder(SpeechTokenizerDecoder Decoder, int OutputSampleRate, string Directory);

/// <summary>The decoder's side of a speech tokenizer folder (config.json + model.safetensors, the released
/// speech_tokenizer/ layout): the decoder's tensors are the checkpoint's <c>decoder.*</c> keys; the encoder's
/// (<c>encoder.*</c>) are left alone.</summary>
public static class SpeechTokenizerDecoderFiles
{
    public const string Prefix = SpeechTokenizerLayout.DecoderPrefix;

    /// <summary>Builds the decoder from the config.json of <paramref name="dir"/> (a speech tokenizer folder, or a model
    /// folder holding speech_tokenizer/) and copies in its <c>decoder.*</c> weights. Every decoder tensor must be
    /// present with its shape; the encoder's tensors are ignored.</summary>
    public static LoadedSpeechTokenizerDecoder Load(string dir, Device? device = null, ScalarType? dtype = null)
    {
        string folder = SpeechTokenizer.ResolveFolder(dir);
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
