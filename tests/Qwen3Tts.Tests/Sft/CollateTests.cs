using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Sft;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Sft;

/// <summary>The collate against layouts written out by hand from the reference collate_fn, position by position.</summary>
public class CollateTests
{
    static readonly Qwen3TtsConfig Config = Presets.Config("tiny");

    // Special ids of the released config (asserted below), spelled out so the expected rows read as the layout.
    const long P = 151671;   // tts_pad
    const long B = 151672;   // tts_bos
    const long E = 151673;   // tts_eos
    const long NT = 2155;    // codec_nothink
    const long TB = 2156;    // codec_think_bos
    const long TE = 2157;    // codec_think_eos
    const long CP = 2148;    // codec_pad
    const long CB = 2149;    // codec_bos
    const long CE = 2150;    // codec_eos
    const long X = -100;     // no label

    // "<|im_start|>assistant\n" 101 102 "<|im_end|>\n<|im_start|>assistant\n": L = 5 after dropping the last 5.
    static readonly int[] ShortIds = { 151644, 77091, 198, 101, 102, 151645, 198, 151644, 77091, 198 };
    // One more text id: L = 6.
    static readonly int[] LongIds = { 151644, 77091, 198, 101, 102, 103, 151645, 198, 151644, 77091, 198 };

    /// <summary>codes[f, g] = 100 (f + 1) + g, so codebook 0 of frame f is 100 (f + 1).</summary>
    static long[,] Codes(int frames, int groups = 16)
    {
        var codes = new long[frames, groups];
        for (int f = 0; f < frames; f++)
            for (int g = 0; g < groups; g++)
                codes[f, g] = 100 * (f + 1) + g;
        return codes;
    }

    static Tensor Mel(int frames, int seed)
    {
        var gen = new Generator((ulong)seed);
        return randn(new long[] { frames, 128 }, generator: gen);
    }

    static long[] Row(Tensor t, int b) => t[b].data<long>().ToArray();
    static bool[] BoolRow(Tensor t, int b) => t[b].reshape(-1).data<bool>().ToArray();

    [Fact]
    public void Special_ids_of_the_tiny_config_are_the_released_ones()
    {
        Assert.Equal((int)P, Config.TtsPadTokenId);
        Assert.Equal((int)B, Config.TtsBosTokenId);
        Assert.Equal((int)E, Config.TtsEosTokenId);
        var t = Config.Talker;
        Assert.Equal(new long[] { NT, TB, TE, CP, CB, CE }, new long[] { t.CodecNothinkId, t.CodecThinkBosId, t.CodecThinkEosId, t.CodecPadId, t.CodecBosId, t.CodecEosTokenId });
        Assert.Equal(16, t.NumCodeGroups);
        Assert.Equal(2048, t.CodePredictor.VocabSize);
    }

    [Fact]
    public void Two_samples_collate_to_the_reference_layout()
    {
        var samples = new[]
        {
            new SftSample(ShortIds, Codes(3), Mel(20, 1)), // L + frames = 8
            new SftSample(LongIds, Codes(5), Mel(20, 2)),  // L + frames = 11, so T = 19
        };
        using var batch = SftCollate.Collate(samples, Config);

        Assert.Equal(new long[] { 2, 19, 2 }, batch.InputIds.shape);
        Assert.Equal(new long[] { 2, 19, 16 }, batch.CodecIds.shape);
        Assert.Equal(new long[] { 2, 19 }, batch.AttentionMask.shape);
        Assert.Equal(new long[] { 2, 19, 1 }, batch.TextEmbeddingMask.shape);
        Assert.Equal(new long[] { 2, 19, 1 }, batch.CodecEmbeddingMask.shape);
        Assert.Equal(new long[] { 2, 19 }, batch.Codec0Labels.shape);
        Assert.Equal(new long[] { 2, 19 }, batch.CodecMask.shape);
        Assert.Equal(ScalarType.Int64, batch.InputIds.dtype);
        Assert.Equal(ScalarType.Bool, batch.TextEmbeddingMask.dtype);

        //                       0       1      2    3  4  5  6  7  8    9    10   11   12   13   14   15   16   17   18
        long[] text0 =  { 151644, 77091, 198, P, P, P, P, B, 101, 102, E,   P,   P,   P,   P,   P,   0,   0,   0 };
        long[] codec0 = { 0,      0,     0,   NT, TB, TE, 0, CP, CP, CP, CP, CB, 100, 200, 300, CE, 0,   0,   0 };
        long[] label0 = { X,      X,     X,   X, X, X, X, X, X,   X,   X,   X,   100, 200, 300, CE, X,   X,   X };
        bool[] textMask0 =  { true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, false, false, false };
        bool[] codecEmb0 =  { false, false, false, true, true, true, false, true, true, true, true, true, true, true, true, true, false, false, false };
        bool[] codecMask0 = { false, false, false, false, false, false, false, false, false, false, false, false, true, true, true, false, false, false, false };
        long[] attn0 =  { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 };

        long[] text1 =  { 151644, 77091, 198, P, P, P, P, B, 101, 102, 103, E,  P,   P,   P,   P,   P,   P,   P };
        long[] codec1 = { 0,      0,     0,   NT, TB, TE, 0, CP, CP, CP, CP, CP, CB, 100, 200, 300, 400, 500, CE };
        long[] label1 = { X,      X,     X,   X, X, X, X, X, X,   X,   X,   X,  X,   100, 200, 300, 400, 500, CE };
        bool[] textMask1 =  Enumerable.Repeat(true, 19).ToArray();
        bool[] codecEmb1 =  { false, false, false, true, true, true, false, true, true, true, true, true, true, true, true, true, true, true, true };
        bool[] codecMask1 = { false, false, false, false, false, false, false, false, false, false, false, false, false, true, true, true, true, true, false };
        long[] attn1 =  Enumerable.Repeat(1L, 19).ToArray();

        Assert.Equal(text0, Row(batch.InputIds[.., .., 0], 0));
        Assert.Equal(codec0, Row(batch.InputIds[.., .., 1], 0));
        Assert.Equal(label0, Row(batch.Codec0Labels, 0));
        Assert.Equal(textMask0, BoolRow(batch.TextEmbeddingMask, 0));
        Assert.Equal(codecEmb0, BoolRow(batch.CodecEmbeddingMask, 0));
        Assert.Equal(codecMask0, BoolRow(batch.CodecMask, 0));
        Assert.Equal(attn0, Row(batch.AttentionMask, 0));

        Assert.Equal(text1, Row(batch.InputIds[.., .., 0], 1));
        Assert.Equal(codec1, Row(batch.InputIds[.., .., 1], 1));
        Assert.Equal(label1, Row(batch.Codec0Labels, 1));
        Assert.Equal(textMask1, BoolRow(batch.TextEmbeddingMask, 1));
        Assert.Equal(codecEmb1, BoolRow(batch.CodecEmbeddingMask, 1));
        Assert.Equal(codecMask1, BoolRow(batch.CodecMask, 1));
        Assert.Equal(attn1, Row(batch.AttentionMask, 1));

        // codec_ids: every codebook at the code rows (12..14 and 13..17), zero elsewhere.
        var codecIds = batch.CodecIds;
        for (int s = 0; s < 2; s++)
        {
            int first = s == 0 ? 12 : 13, frames = s == 0 ? 3 : 5;
            for (int row = 0; row < 19; row++)
            {
                long[] expected = new long[16];
                if (row >= first && row < first + frames)
                    for (int g = 0; g < 16; g++) expected[g] = 100 * (row - first + 1) + g;
                Assert.Equal(expected, codecIds[s, row].data<long>().ToArray());
            }
        }
    }

    [Fact]
    public void Ref_mels_of_different_lengths_are_right_padded_with_zeros()
    {
        using var a = Mel(20, 3);
        using var b = Mel(31, 4);
        using var batch = SftCollate.Collate(new[] { new SftSample(ShortIds, Codes(2), a), new SftSample(LongIds, Codes(1), b) }, Config);

        Assert.Equal(new long[] { 2, 31, 128 }, batch.RefMels.shape);
        Assert.Equal(new long[] { 20, 31 }, batch.RefMelFrames.data<long>().ToArray());
        Assert.True(batch.RefMels[0, ..20].allclose(a, rtol: 0, atol: 0));
        Assert.Equal(0, batch.RefMels[0, 20..].abs().sum().item<float>());
        Assert.True(batch.RefMels[1].allclose(b, rtol: 0, atol: 0));
    }

    [Fact]
    public void Speaker_embeddings_equal_encoding_each_clip_alone()
    {
        using var encoder = new SpeakerEncoder(Config.SpeakerEncoder);
        encoder.eval();
        // Two clips of equal length (one grouped call) and one of another length.
        var mels = new[] { Mel(40, 5), Mel(25, 6), Mel(40, 7) };
        var samples = mels.Select((m, i) => new SftSample(ShortIds, Codes(i + 1), m)).ToArray();
        using var batch = SftCollate.Collate(samples, Config);

        using var embeddings = SftCollate.SpeakerEmbeddings(encoder, batch);

        Assert.Equal(new long[] { 3, Config.SpeakerEncoder.EncDim }, embeddings.shape);
        Assert.False(embeddings.requires_grad);
        using var noGrad = no_grad();
        for (int i = 0; i < mels.Length; i++)
        {
            using var alone = encoder.forward(mels[i].unsqueeze(0))[0];
            Close.Assert(alone, embeddings[i], $"sample {i} against encoding its clip alone");
        }
        // Padding would change the short clip's embedding: the encoder's pooling has no mask.
        using var padded = encoder.forward(batch.RefMels[1..2])[0];
        Close.AssertDiffer(embeddings[1], padded, "the short clip against its padded row");
    }

    [Fact]
    public void Code_out_of_the_codebook_names_sample_and_field()
    {
        var bad = Codes(3);
        bad[2, 5] = 2048;
        var e = Assert.Throws<ArgumentException>(() => SftCollate.Collate(
            new[] { new SftSample(ShortIds, Codes(2), Mel(10, 1)), new SftSample(ShortIds, bad, Mel(10, 1)) }, Config));
        Assert.Contains("sample 1", e.Message);
        Assert.Contains("audio_codes[2][5] is 2048", e.Message);

        bad[2, 5] = -1;
        e = Assert.Throws<ArgumentException>(() => SftCollate.Collate(new[] { new SftSample(ShortIds, bad, Mel(10, 1)) }, Config));
        Assert.Contains("sample 0: audio_codes[2][5] is -1", e.Message);
    }

    [Fact]
    public void Codes_not_16_wide_or_empty_name_sample_and_field()
    {
        var e = Assert.Throws<ArgumentException>(() => SftCollate.Collate(new[] { new SftSample(ShortIds, Codes(3, groups: 15), Mel(10, 1)) }, Config));
        Assert.Contains("sample 0: audio_codes", e.Message);
        Assert.Contains("this model uses 16", e.Message);

        e = Assert.Throws<ArgumentException>(() => SftCollate.Collate(new[] { new SftSample(ShortIds, new long[0, 16], Mel(10, 1)) }, Config));
        Assert.Contains("sample 0: audio_codes is empty", e.Message);
    }

    [Fact]
    public void Too_few_text_ids_name_sample_and_field()
    {
        int[] eight = ShortIds[..3].Concat(ShortIds[5..]).ToArray(); // the chat template with no text
        Assert.Equal(8, eight.Length);
        var e = Assert.Throws<ArgumentException>(() => SftCollate.Collate(
            new[] { new SftSample(ShortIds, Codes(1), Mel(10, 1)), new SftSample(eight, Codes(1), Mel(10, 1)) }, Config));
        Assert.Contains("sample 1: text_ids has 8 ids", e.Message);

        // Nine ids (one text id) is the smallest layout: tts_eos right after it, codec_bos one row later.
        int[] nine = ShortIds[..4].Concat(ShortIds[5..]).ToArray();
        using var batch = SftCollate.Collate(new[] { new SftSample(nine, Codes(1), Mel(10, 1)) }, Config);
        Assert.Equal(new long[] { 151644, 77091, 198, P, P, P, P, B, 101, E, P, P, P }, Row(batch.InputIds[.., .., 0], 0));
        Assert.Equal(new long[] { 0, 0, 0, NT, TB, TE, 0, CP, CP, CP, CB, 100, CE }, Row(batch.InputIds[.., .., 1], 0));
    }

    [Fact]
    public void Ref_mel_of_the_wrong_shape_names_sample_and_field()
    {
        var e = Assert.Throws<ArgumentException>(() => SftCollate.Collate(
            new[] { new SftSample(ShortIds, Codes(1), randn(1, 10, 128)) }, Config));
        Assert.Contains("sample 0: ref_mel", e.Message);
    }
}
