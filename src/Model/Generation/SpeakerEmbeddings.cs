using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Generation;

/// <summary>x-vectors for cloning: computed from a reference clip by a Base model's speaker encoder (the reference's
/// extract_speaker_embedding on the clip mixed to mono and resampled to 24 kHz), or saved to and loaded from a
/// safetensors file holding one fp32 tensor <see cref="TensorName"/> [hidden], so a voice is computed once.</summary>
public static class SpeakerEmbeddings
{
    public const string TensorName = "speaker_embedding";

    /// <summary>The speaker encoder's embedding of a WAV file (any rate and channel count).</summary>
    public static float[] FromWav(Qwen3TtsModel model, string wavPath)
    {
        var encoder = model.SpeakerEncoder
            ?? throw new ArgumentException($"this '{model.Config.TtsModelType}' model has no speaker encoder (only Base checkpoints do); " +
                "clone from a Base model, or pass a speaker embedding file computed by one");
        var clip = Resampler.LoadMono24k(wavPath);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var embedding = encoder.Embed(tensor(clip.Samples).unsqueeze(0))[0]; // [enc_dim]
        return embedding.to(ScalarType.Float32).cpu().data<float>().ToArray();
    }

    public static void Save(string path, float[] embedding, string? source = null)
    {
        using var t = tensor(embedding);
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["content"] = "qwen3tts speaker embedding (x-vector)" };
        if (source is not null) metadata["source"] = source;
        Safetensors.Save(path, [(TensorName, t)], metadata);
    }

    /// <summary>Reads a file written by <see cref="Save"/> (or any safetensors file with exactly one 1-D tensor).</summary>
    public static float[] Load(string path)
    {
        using var file = SafetensorsFile.Open(path);
        if (file.Entries.Count != 1)
            throw new CheckpointException($"{file.Path}: a speaker embedding file holds one tensor; this one has {file.Entries.Count} ({string.Join(", ", file.Entries.Take(5).Select(e => e.Name))})");
        var entry = file.Entries[0];
        if (entry.Shape.Count != 1)
            throw new CheckpointException($"{file.Path}: tensor '{entry.Name}' is {entry.ShapeText}; a speaker embedding is one vector [hidden]");
        using var t = file.Read(entry.Name, ScalarType.Float32);
        return t.data<float>().ToArray();
    }
}
