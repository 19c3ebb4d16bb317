using Qwen3Tts.Model.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model;

/// <summary>Qwen3-TTS-12Hz (Qwen3TTSForConditionalGeneration's trainable part): the talker and, for
/// Base checkpoints, the speaker encoder. State-dict names equal the released checkpoints'
/// ("talker.model.layers.0.self_attn.q_proj.weight", "speaker_encoder.fc.weight", ...).
/// The 12 Hz speech tokenizer is a separate model (speech_tokenizer/).</summary>
public sealed class Qwen3TtsModel : nn.Module
{
    readonly Talker talker;
    readonly SpeakerEncoder? speaker_encoder;

    /// <param name="device">Use <c>new Device("meta")</c> to get the exact layout without allocating weights.</param>
    public Qwen3TtsModel(Qwen3TtsConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(Qwen3TtsModel))
    {
        Config = config;
        talker = new Talker(config.Talker, device, dtype);
        if (config.HasSpeakerEncoder) speaker_encoder = new SpeakerEncoder(config.SpeakerEncoder, device, dtype);
        RegisterComponents();
    }

    public Qwen3TtsConfig Config { get; }
    public Talker Talker => talker;

    /// <summary>The frozen ECAPA-TDNN speaker encoder; absent in custom_voice checkpoints (the reference builds it only for Base).</summary>
    public SpeakerEncoder? SpeakerEncoder => speaker_encoder;

    /// <summary>Name → shape of every parameter, in registration order (the state-dict layout).</summary>
    public IReadOnlyList<(string Name, long[] Shape)> Layout() =>
        named_parameters().Select(p => (p.name, p.parameter.shape)).ToList();
}
