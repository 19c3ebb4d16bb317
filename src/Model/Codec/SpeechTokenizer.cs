using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>The 12 Hz speech tokenizer's encoding side (Qwen3TTSTokenizerV2Model.encode): 24 kHz mono audio to
/// [frames, 16] codes, frames = ceil(samples / 1920). Loaded from a speech_tokenizer folder (config.json +
/// model.safetensors), checked strictly against the released layout: every encoder.* tensor is loaded, every
/// decoder.* tensor must be present with its shape (the decoder itself is not built here).</summary>
public sealed class SpeechTokenizer : IDisposable
{
    /// <summary>The root of the state dict: <c>encoder</c> only (Qwen3TTSTokenizerV2Model also holds <c>decoder</c>).</summary>
    sealed class EncoderRoot : nn.Module
    {
        readonly Qwen3TtsTokenizerV2Encoder encoder;

        public EncoderRoot(EncoderConfig config, Device? device) : base("Qwen3TtsTokenizerV2Model")
        {
            encoder = new Qwen3TtsTokenizerV2Encoder(config, device);
            RegisterComponents();
        }

        public Qwen3TtsTokenizerV2Encoder Encoder => encoder;
    }

    readonly EncoderRoot root;

    SpeechTokenizer(SpeechTokenizerConfig config, EncoderRoot root, string? folder)
    {
        Config = config;
        this.root = root;
        Folder = folder;
        root.eval();
    }

    public SpeechTokenizerConfig Config { get; }
    public Qwen3TtsTokenizerV2Encoder Encoder => root.Encoder;

    /// <summary>The speech_tokenizer folder it was loaded from (null when built in memory).</summary>
    public string? Folder { get; }

    public int SampleRate => Config.InputSampleRate;

    /// <summary>Code frames for a clip of <paramref name="samples"/> samples: ceil(samples / encode_downsample_rate).</summary>
    public long FrameCount(long samples) => (samples + Config.EncodeDownsampleRate - 1) / Config.EncodeDownsampleRate;

    /// <summary>An encoder with the module's own initial values (tests fill it themselves).</summary>
    public static SpeechTokenizer Create(SpeechTokenizerConfig config) => new(config, new EncoderRoot(config.Encoder, null), null);

    /// <summary>An encoder with seeded random weights, drawn as <see cref="SpeechTokenizerLayout.WriteRandom"/> draws the
    /// encoder.* tensors (same values for the same seed), without writing a file.</summary>
    public static SpeechTokenizer CreateRandom(SpeechTokenizerConfig config, ulong seed)
    {
        var tokenizer = Create(config);
        using var generator = new Generator(seed);
        using var noGrad = no_grad();
        foreach (var (name, value) in tokenizer.root.state_dict())
        {
            using var scope = NewDisposeScope();
            value.copy_(SpeechTokenizerLayout.RandomTensor(name, value.shape, config, generator));
        }
        return tokenizer;
    }

    /// <summary>The speech tokenizer folder for <paramref name="dir"/>: the folder itself when its config.json is a speech
    /// tokenizer's, else its speech_tokenizer/ subfolder (a model folder).</summary>
    public static string ResolveFolder(string dir)
    {
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"{dir}: no such folder (expected a speech tokenizer folder or a model folder holding speech_tokenizer/)");
        string config = Path.Combine(dir, ModelDirectory.ConfigFile);
        if (File.Exists(config) && Qwen3TtsConfig.ReadJson(config)["model_type"]?.ToString() == SpeechTokenizerConfig.ModelType) return dir;
        string sub = Path.Combine(dir, SpeechTokenizerConfig.FolderName);
        if (File.Exists(Path.Combine(sub, ModelDirectory.ConfigFile))) return sub;
        throw new FileNotFoundException($"{dir}: neither a speech tokenizer folder (config.json with model_type '{SpeechTokenizerConfig.ModelType}') "
            + $"nor a model folder with {SpeechTokenizerConfig.FolderName}/config.json");
    }

    /// <summary>Loads a speech tokenizer folder, or a model folder's speech_tokenizer/. Throws a
    /// <see cref="CheckpointException"/> listing every missing, unexpected or mis-shaped tensor before copying any.</summary>
    public static SpeechTokenizer Load(string dir)
    {
        string folder = ResolveFolder(dir);
        var config = SpeechTokenizerConfig.Load(Path.Combine(folder, ModelDirectory.ConfigFile));
        if (!ModelDirectory.HasWeights(folder)) throw new CheckpointException($"{folder}: no model.safetensors or model.safetensors.index.json");
        var root = new EncoderRoot(config.Encoder, null);
        try
        {
            CheckLayout(folder, config, root);
            CheckpointLoader.Load(root, folder, strict: false);
            return new SpeechTokenizer(config, root, folder);
        }
        catch
        {
            root.Dispose();
            throw;
        }
    }

    /// <summary>Strict check of the file against the whole released layout: encoder.* from the module, decoder.* from
    /// <see cref="SpeechTokenizerLayout.DecoderTensors"/>.</summary>
    static void CheckLayout(string folder, SpeechTokenizerConfig config, nn.Module root)
    {
        var expected = root.state_dict().ToDictionary(kv => kv.Key, kv => (Shape: kv.Value.shape, Dtype: kv.Value.dtype), StringComparer.Ordinal);
        foreach (var (name, shape) in SpeechTokenizerLayout.DecoderTensors(config.Decoder)) expected[name] = (shape, ScalarType.Float32);
        using var checkpoint = CheckpointFiles.Open(folder);
        var missing = expected.Keys.Where(k => !checkpoint.Contains(k)).Order(StringComparer.Ordinal).ToList();
        var unexpected = checkpoint.Entries.Select(e => e.Name).Where(k => !expected.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        var mismatched = checkpoint.Entries
            .Where(e => expected.TryGetValue(e.Name, out var slot) && (!slot.Shape.SequenceEqual(e.Shape) || e.ScalarType is not { } t || !is_floating_point(t)))
            .Select(e => new KeyMismatch(e.Name, expected[e.Name].Shape, e.Shape, expected[e.Name].Dtype, e.Dtype))
            .OrderBy(m => m.Name, StringComparer.Ordinal).ToList();
        var report = new LoadReport(Array.Empty<string>(), missing, unexpected, mismatched);
        if (!report.IsExact)
            throw new CheckpointException($"{checkpoint.IndexPath ?? checkpoint.Files[0]}: does not match the speech tokenizer layout of {Path.Combine(folder, ModelDirectory.ConfigFile)}; nothing was loaded. "
                + report.Describe());
    }

    /// <summary>Codes of one clip (24 kHz mono): [frames, encoder_valid_num_quantizers], frames = ceil(samples / 1920).</summary>
    public long[,] Encode(float[] mono24k)
    {
        ArgumentNullException.ThrowIfNull(mono24k);
        if (mono24k.Length == 0) throw new ArgumentException("cannot encode an empty clip (0 samples)", nameof(mono24k));
        using var scope = NewDisposeScope();
        var audio = tensor(mono24k).unsqueeze(0);                              // [1, L]
        var codes = Encoder.Encode(audio, Config.EncoderValidNumQuantizers)[0]; // [frames, n]
        return ToArray(codes);
    }

    /// <summary>Codes of several clips, identical to encoding each alone. Mimi ignores a padding mask, so a clip padded
    /// to a longer one would get a different last frame (its causal convs would see the batch padding run through the
    /// earlier layers instead of their own zero padding); only clips of equal length are batched together.</summary>
    public IReadOnlyList<long[,]> EncodeBatch(IReadOnlyList<float[]> clips)
    {
        ArgumentNullException.ThrowIfNull(clips);
        var results = new long[clips.Count][,];
        foreach (var group in Enumerable.Range(0, clips.Count).GroupBy(i => clips[i].Length))
        {
            if (group.Key == 0) throw new ArgumentException($"clip {group.First()} is empty (0 samples)", nameof(clips));
            using var scope = NewDisposeScope();
            var audio = stack(group.Select(i => tensor(clips[i])).ToArray()); // [B, L]
            var codes = Encoder.Encode(audio, Config.EncoderValidNumQuantizers); // [B, frames, n]
            int row = 0;
            foreach (int i in group) results[i] = ToArray(codes[row++]);
        }
        return results;
    }

    /// <summary>Reads a WAV file (any PCM/float format, channels mixed down, resampled to 24 kHz) and encodes it.</summary>
    public long[,] EncodeFile(string wavPath)
    {
        var clip = Resampler.LoadMono24k(wavPath);
        if (clip.Samples.Length == 0) throw new AudioException(wavPath, "has no samples to encode");
        return Encode(clip.Samples);
    }

    static long[,] ToArray(Tensor codes)
    {
        long frames = codes.shape[0], n = codes.shape[1];
        var flat = codes.contiguous().data<long>().ToArray();
        var result = new long[frames, n];
        Buffer.BlockCopy(flat, 0, result, 0, flat.Length * sizeof(long));
        return result;
    }

    public void Dispose() => root.Dispose();
}
