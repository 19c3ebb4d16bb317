using Qwen3Tts.Model;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Codec;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Codec;

/// <summary>The speech tokenizer folder: written by init-model, loaded strictly, encoding deterministic and
/// independent of batching.</summary>
public sealed class SpeechTokenizerTests : CleansTempDirs
{
    static string TinyFolder(ulong seed = 1)
    {
        string dir = TestPaths.NewTempDir("codec");
        SpeechTokenizerLayout.WriteRandom(dir, SpeechTokenizerConfig.ConfigJson("tiny"), "tiny", seed, "Qwen3-TTS-12Hz-1.7B-Base");
        return dir;
    }

    static float[] Clip(int samples, int seed)
    {
        var rng = new Random(seed);
        var x = new float[samples];
        for (int i = 0; i < samples; i++) x[i] = (float)(0.3 * Math.Sin(i * (0.01 + 0.001 * seed)) + 0.05 * (rng.NextDouble() - 0.5));
        return x;
    }

    [Fact]
    public void Init_model_writes_a_speech_tokenizer_that_loads_with_no_missing_or_unexpected_keys()
    {
        string dir = TestPaths.NewTempDir("init-codec");
        ModelDirectory.CreateRandom(dir, "tiny", 3, ScalarType.Float32);
        string folder = Path.Combine(dir, "speech_tokenizer");
        Assert.True(File.Exists(Path.Combine(folder, "config.json")));
        Assert.True(File.Exists(Path.Combine(folder, "preprocessor_config.json")));

        var config = SpeechTokenizerConfig.Load(Path.Combine(folder, "config.json"));
        Assert.Equal(SpeechTokenizerConfig.ConfigJson("tiny").ToJsonString(), config.Json.ToJsonString());
        using (var files = CheckpointFiles.Open(folder))
        {
            var layout = SpeechTokenizerLayout.AllTensors(config);
            Assert.Equal(layout.Select(e => e.Name).Order(StringComparer.Ordinal), files.Entries.Select(e => e.Name).Order(StringComparer.Ordinal));
            Assert.All(files.Entries, e => Assert.Equal("F32", e.Dtype));
            Assert.Contains(files.Entries, e => e.Name == "decoder.quantizer.rvq_rest.vq.layers.14._codebook.embedding_sum");
            Assert.Contains(files.Entries, e => e.Name == "encoder.quantizer.acoustic_residual_vector_quantizer.layers.30.codebook.initialized");
        }

        // The model folder resolves to its speech_tokenizer/, and every encoder tensor is the file's.
        using var tokenizer = SpeechTokenizer.Load(dir);
        Assert.Equal(Path.GetFullPath(folder), Path.GetFullPath(tokenizer.Folder!));
        using var scope = NewDisposeScope();
        using var files2 = CheckpointFiles.Open(folder);
        foreach (var (name, value) in tokenizer.Encoder.state_dict())
            Assert.True(value.equal(files2.Read("encoder." + name)).all().item<bool>(), name);
    }

    [Fact]
    public void Same_seed_same_file()
    {
        string a = TinyFolder(4), b = TinyFolder(4), c = TinyFolder(5);
        var bytes = File.ReadAllBytes(Path.Combine(a, "model.safetensors"));
        Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(b, "model.safetensors")));
        Assert.NotEqual(bytes, File.ReadAllBytes(Path.Combine(c, "model.safetensors")));
    }

    [Fact]
    public void A_file_off_the_layout_is_refused_naming_every_key()
    {
        string dir = TinyFolder();
        using (var scope = NewDisposeScope())
        {
            List<(string, Tensor)> tensors;
            using (var files = CheckpointFiles.Open(dir))
                tensors = files.Entries
                    .Where(e => e.Name is not ("decoder.pre_conv.conv.bias" or "encoder.downsample.conv.weight"))
                    .Select(e => (e.Name, e.Name == "decoder.decoder.6.conv.weight" ? zeros(1, 2, 5) : files.Read(e.Name))).ToList();
            tensors.Add(("decoder.lm_head.weight", zeros(3)));
            CheckpointFiles.Save(dir, tensors);
        }
        var e = Assert.Throws<CheckpointException>(() => SpeechTokenizer.Load(dir));
        Assert.Contains("2 missing from the checkpoint", e.Message);
        Assert.Contains("decoder.pre_conv.conv.bias", e.Message);
        Assert.Contains("encoder.downsample.conv.weight", e.Message);
        Assert.Contains("unexpected", e.Message);
        Assert.Contains("decoder.lm_head.weight", e.Message);
        Assert.Contains("decoder.decoder.6.conv.weight: module has [1, 2, 7]", e.Message);
    }

    [Fact]
    public void Missing_folder_or_weights_are_clear_errors()
    {
        string empty = TestPaths.NewTempDir("empty");
        Assert.Contains("neither a speech tokenizer folder", Assert.Throws<FileNotFoundException>(() => SpeechTokenizer.Load(empty)).Message);
        Assert.Throws<DirectoryNotFoundException>(() => SpeechTokenizer.Load(Path.Combine(empty, "nope")));
        string dir = TinyFolder();
        File.Delete(Path.Combine(dir, "model.safetensors"));
        Assert.Contains("no model.safetensors", Assert.Throws<CheckpointException>(() => SpeechTokenizer.Load(dir)).Message);
    }

    [Fact]
    public void Encoding_is_deterministic_across_calls_and_loads_and_codes_vary()
    {
        string dir = TinyFolder();
        var clip = Clip(24000, 1);
        using var first = SpeechTokenizer.Load(dir);
        using var second = SpeechTokenizer.Load(dir);
        var a = first.Encode(clip);
        Assert.Equal(new[] { 13, 16 }, new[] { a.GetLength(0), a.GetLength(1) });
        Assert.Equal(a, first.Encode(clip));
        Assert.Equal(a, second.Encode(clip));
        var flat = a.Cast<long>().ToArray();
        Assert.All(flat, c => Assert.InRange(c, 0, 2047));
        Assert.True(flat.Distinct().Count() > 16, "random weights should give varied codes, not one codeword");
    }

    [Fact]
    public void A_clip_alone_equals_the_same_clip_in_a_batch()
    {
        using var tokenizer = SpeechTokenizer.Load(TinyFolder());
        var clips = new[] { Clip(5000, 1), Clip(7000, 2), Clip(5000, 3), Clip(1920, 4), Clip(5000, 5), Clip(1, 6) };
        var batched = tokenizer.EncodeBatch(clips);
        for (int i = 0; i < clips.Length; i++)
        {
            var alone = tokenizer.Encode(clips[i]);
            Assert.Equal(tokenizer.FrameCount(clips[i].Length), alone.GetLength(0));
            Assert.Equal(alone, batched[i]);
        }
    }

    /// <summary>Why batches are never padded: the encoder is causal, so appended samples leave earlier frames alone,
    /// but the last (partial) frame of a clip sees the padding where encoding alone sees each layer's own zero padding.</summary>
    [Fact]
    public void Padding_changes_only_the_last_partial_frame()
    {
        using var tokenizer = SpeechTokenizer.Load(TinyFolder());
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var clip = Clip(5000, 7); // 2.6 frames: 3 frames, the last one partial
        var padded = clip.Concat(new float[3000]).ToArray();
        var alone = tokenizer.Encoder.Embed(tensor(clip).unsqueeze(0));   // [1, hidden, 3]
        var inBatch = tokenizer.Encoder.Embed(tensor(padded).unsqueeze(0)); // [1, hidden, 5]
        Assert.Equal(3, alone.shape[2]);
        Assert.True(alone[.., .., ..2].allclose(inBatch[.., .., ..2], rtol: 1e-4, atol: 1e-5));
        Assert.False(alone[.., .., 2].allclose(inBatch[.., .., 2], rtol: 1e-3, atol: 1e-4));
    }

    [Fact]
    public void Encode_file_resamples_and_mixes_down()
    {
        using var tokenizer = SpeechTokenizer.Load(TinyFolder());
        string dir = TestPaths.NewTempDir("wav");
        var clip = Clip(24000, 2);
        string at24 = Path.Combine(dir, "a.wav");
        Qwen3Tts.Model.Audio.WavWriter.WriteFloat32(at24, clip, 24000);
        Assert.Equal(tokenizer.Encode(clip), tokenizer.EncodeFile(at24));
        string at16 = Path.Combine(dir, "b.wav");
        var clip16 = Qwen3Tts.Model.Audio.Resampler.Resample(clip, 24000, 16000);
        Qwen3Tts.Model.Audio.WavWriter.WriteFloat32(at16, clip16, 16000);
        var codes = tokenizer.EncodeFile(at16);
        Assert.Equal(tokenizer.Encode(Qwen3Tts.Model.Audio.Resampler.Resample(clip16, 16000, 24000)), codes);
        Assert.Throws<ArgumentException>(() => tokenizer.Encode(Array.Empty<float>()));
    }
}
