using Qwen3Tts.Model;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Codec;
using Qwen3Tts.Model.Config;
using TorchSharp;
using Xunit.Abstractions;
using static Qwen3Tts.Tests.Codec.DecoderTestModels;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Codec;

/// <summary>The whole decoder on tiny widths with the real upsampling (1920 samples per frame): output length,
/// causality, chunked versus full decoding, determinism, clamping, input checks and loading from a folder.</summary>
public class SpeechTokenizerDecoderTests(ITestOutputHelper output) : CleansTempDirs
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(5)]
    [InlineData(13)]
    public void Each_frame_becomes_1920_samples(int frames)
    {
        using var decoder = Build(Tiny());
        using var noGrad = no_grad();
        var wav = decoder.forward(AsInput(RandomCodes(frames, 16, 64, seed: frames)));
        Assert.Equal(new long[] { 1, 1, frames * 1920L }, wav.shape);
        Assert.Equal(frames * 1920, decoder.Decode(RandomCodes(frames, 16, 64, seed: 1)).Length);
    }

    [Fact]
    public void Decoding_is_causal_a_prefix_decodes_to_a_prefix_of_the_audio()
    {
        using var decoder = Build(Tiny(window: 6, layers: 2));
        using var noGrad = no_grad();
        var codes = AsInput(RandomCodes(30, 16, 64, seed: 2));
        var full = decoder.forward(codes);
        foreach (int n in new[] { 1, 7, 18 })
        {
            var prefix = decoder.forward(codes[.., .., ..n]);
            Close.Assert(full[.., .., ..(n * 1920)], prefix, $"prefix of {n} frames"); // another sequence length: close, not bit-equal
        }
    }

    [Fact]
    public void Chunked_equals_full_when_the_left_context_covers_the_receptive_field()
    {
        // Window 4 over 2 layers reaches 6 frames back; the convolutions add under 12 more: well within 25 frames.
        using var decoder = Build(Tiny(window: 4, layers: 2));
        using var noGrad = no_grad();
        var codes = AsInput(RandomCodes(70, 16, 64, seed: 3));
        var full = decoder.forward(codes);
        var chunked = decoder.ChunkedDecode(codes, chunkSize: 20, leftContext: 25);
        Assert.Equal(full.shape, chunked.shape);
        double diff = (full - chunked).abs().max().item<float>();
        output.WriteLine($"max |chunked - full| = {diff:E2} (peak {full.abs().max().item<float>():F3})");
        Assert.True(diff < 1e-5, $"max difference {diff}");
    }

    [Fact]
    public void Default_chunking_matches_the_reference_300_frames_and_25_of_context()
    {
        // 320 frames: chunk [0, 300) without context, chunk [300, 320) decoded from frame 275.
        using var decoder = Build(Tiny(window: 4, layers: 2));
        var codes = RandomCodes(320, 16, 64, seed: 4);
        float[] decoded = decoder.Decode(codes);
        using var noGrad = no_grad();
        var input = AsInput(codes);
        var first = Samples(decoder.forward(input[.., .., ..300]));
        var second = Samples(decoder.forward(input[.., .., 275..]))[(25 * 1920)..];
        float[] byHand = first.Concat(second).ToArray();
        Assert.Equal(byHand.Length, decoded.Length);
        // The same chunks, but Decode runs them as its own tensors: oneDNN may pick other kernels (and summation
        // orders) for other shapes and CPUs, so equal up to float32 rounding, not bit for bit.
        AssertClose(byHand, decoded, "Decode against the chunks by hand");
        // ... and, this decoder's receptive field being short, the same audio as one full pass.
        AssertClose(Samples(decoder.forward(input)), decoded, "Decode against one full pass");
    }

    [Fact]
    public void Chunked_differs_from_full_after_the_first_chunk_when_attention_reaches_past_the_context()
    {
        // The released window (72 frames per layer) reaches far past a short left context: chunking then changes the
        // audio after each chunk start, as in the reference, while the first chunk (no context needed) is exact.
        using var decoder = Build(Tiny(window: 72, layers: 2));
        using var noGrad = no_grad();
        var codes = AsInput(RandomCodes(60, 16, 64, seed: 5));
        var full = decoder.forward(codes);
        var chunked = decoder.ChunkedDecode(codes, chunkSize: 20, leftContext: 5);
        long firstChunk = 20 * 1920;
        double head = (full[.., .., ..(int)firstChunk] - chunked[.., .., ..(int)firstChunk]).abs().max().item<float>();
        double tail = (full[.., .., (int)firstChunk..] - chunked[.., .., (int)firstChunk..]).abs().max().item<float>();
        output.WriteLine($"first chunk max diff {head:E2}, later chunks max diff {tail:E2}");
        Assert.True(head < 1e-5);
        Assert.True(tail > 1e-3, $"later chunks differ by only {tail}");
    }

    [Fact]
    public void Batch_rows_decode_as_they_do_alone()
    {
        using var decoder = Build(Tiny());
        using var noGrad = no_grad();
        var a = AsInput(RandomCodes(9, 16, 64, seed: 6));
        var b = AsInput(RandomCodes(9, 16, 64, seed: 7));
        var both = decoder.ChunkedDecode(cat([a, b], 0), chunkSize: 4, leftContext: 2);
        // A batch of 2 and a batch of 1 are differently shaped computations: close, not bit-equal.
        AssertClose(Samples(decoder.ChunkedDecode(a, 4, 2)), Samples(both[0].unsqueeze(0)), "row 0 against alone");
        AssertClose(Samples(decoder.ChunkedDecode(b, 4, 2)), Samples(both[1].unsqueeze(0)), "row 1 against alone");
        // ... and the rows are really different audio, so the check above can fail.
        Assert.False(both[0].allclose(both[1], rtol: 1e-2, atol: 1e-3));
    }

    [Fact]
    public void Deterministic_for_a_seed_and_sensitive_to_codes()
    {
        var codes = RandomCodes(6, 16, 64, seed: 8);
        using var d1 = Build(Tiny(), seed: 9);
        using var d2 = Build(Tiny(), seed: 9);
        var first = d1.Decode(codes);
        Assert.Equal(first, d1.Decode(codes));
        Assert.Equal(first, d2.Decode(codes));
        var other = (long[,])codes.Clone();
        other[3, 10] = (other[3, 10] + 1) % 64;
        var changed = d1.Decode(other);
        Assert.Equal(first.Take(3 * 1920), changed.Take(3 * 1920)); // causal: frames before 3 untouched
        Assert.NotEqual(first.Skip(3 * 1920), changed.Skip(3 * 1920));
    }

    [Fact]
    public void Output_is_clamped_to_plus_minus_one()
    {
        using var decoder = Build(Tiny());
        using (no_grad())
            foreach (var (name, p) in decoder.named_parameters())
                if (name.StartsWith("decoder.6.conv.")) p.mul_(1000); // the last conv: drive the waveform far past ±1
        var wav = decoder.Decode(RandomCodes(4, 16, 64, seed: 10));
        Assert.Equal(1f, wav.Max());
        Assert.Equal(-1f, wav.Min());
        Assert.Contains(wav, s => Math.Abs(s) < 1);
    }

    [Fact]
    public void Bad_codes_are_named_by_frame_and_codebook()
    {
        using var decoder = new SpeechTokenizerDecoder(Tiny());
        var codes = RandomCodes(5, 16, 64, seed: 11);
        codes[3, 5] = 64;
        Assert.Equal("frame 3, codebook 5: code 64 is outside [0, 64)", Assert.Throws<ArgumentException>(() => decoder.Decode(codes)).Message);
        codes[3, 5] = 0;
        codes[0, 15] = -1;
        Assert.Contains("frame 0, codebook 15: code -1", Assert.Throws<ArgumentException>(() => decoder.Decode(codes)).Message);
        Assert.Contains("15 codebooks per frame; the decoder takes 16", Assert.Throws<ArgumentException>(() => decoder.Decode(new long[4, 15])).Message);
        Assert.Contains("no frames", Assert.Throws<ArgumentException>(() => decoder.Decode(new long[0, 16])).Message);
    }

    /// <summary>A speech tokenizer folder as released: config.json and model.safetensors holding decoder.* and encoder.*.</summary>
    public static string WriteTinyFolder(string dir, ulong seed, int codebookSize = 64)
    {
        Directory.CreateDirectory(dir);
        var json = WithDecoder(TinyDecoderJson(codebookSize: codebookSize));
        ModelDirectory.WriteConfig(dir, json);
        using var decoder = Build(SpeechTokenizerConfig.Parse(json, "tiny").Decoder, seed);
        using var encoderStandIn = zeros(3, 2); // an encoder tensor the decoder must ignore
        CheckpointFiles.Save(dir, SpeechTokenizerDecoderFiles.NamedTensors(decoder).Append(("encoder.quantizer.stand_in", encoderStandIn)));
        return dir;
    }

    [Fact]
    public void Loads_from_a_speech_tokenizer_folder_or_a_model_folder()
    {
        string model = TestPaths.NewTempDir("decoder-load");
        string folder = WriteTinyFolder(Path.Combine(model, "speech_tokenizer"), seed: 12);
        using var expected = Build(Tiny(), seed: 12);
        var codes = RandomCodes(5, 16, 64, seed: 13);
        foreach (var dir in new[] { folder, model })
        {
            var loaded = SpeechTokenizerDecoderFiles.Load(dir);
            Assert.Equal(24000, loaded.OutputSampleRate);
            Assert.Equal(folder, loaded.Directory);
            Assert.Equal(expected.Decode(codes), loaded.Decoder.Decode(codes));
            loaded.Decoder.Dispose();
        }
    }

    [Fact]
    public void A_missing_or_misshaped_decoder_tensor_is_named()
    {
        string dir = TestPaths.NewTempDir("decoder-bad");
        var json = WithDecoder(TinyDecoderJson());
        ModelDirectory.WriteConfig(dir, json);
        using var decoder = new SpeechTokenizerDecoder(Tiny());
        using var wrong = zeros(7);
        CheckpointFiles.Save(dir, SpeechTokenizerDecoderFiles.NamedTensors(decoder)
            .Where(t => t.Name != "decoder.pre_conv.conv.bias")
            .Select(t => t.Name == "decoder.decoder.5.alpha" ? (t.Name, wrong) : t));
        var e = Assert.Throws<CheckpointException>(() => SpeechTokenizerDecoderFiles.Load(dir));
        Assert.Contains("decoder.pre_conv.conv.bias", e.Message);
        Assert.Contains("decoder.decoder.5.alpha", e.Message);
    }
}
