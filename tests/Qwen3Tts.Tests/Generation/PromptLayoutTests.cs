using Qwen3Tts.Model;
using Qwen3Tts.Model.Generation;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Generation;

/// <summary>The talker prompt of each mode against layouts written out by hand from the reference's generate and
/// generate_icl_prompt (modeling_qwen3_tts.py), on the tiny preset (the released special ids: think 2154,
/// nothink 2155, think_bos 2156, think_eos 2157, codec_pad 2148, codec_bos 2149, english 2050, chinese 2055).</summary>
public class PromptLayoutTests
{
    const string Text = "Sannu da zuwa, abokina.";
    const string RefText = "Ina kwana.";

    static PromptPosition P(string text, string codec = "") => new(text, codec);
    static string T(int id) => $"text:{id}";

    /// <summary>The chat ids of the text: role = ids[:3], text = ids[3:-5].</summary>
    static (int[] Role, string[] Text) Ids(string text)
    {
        var ids = GenerationFixture.Tokenizer.EncodeChat(text).ToArray();
        return (ids[..3], ids[3..^5].Select(T).ToArray());
    }

    static string[] RefIds(string refText) =>
        GenerationFixture.Tokenizer.Encode($"<|im_start|>assistant\n{refText}<|im_end|>\n").ToArray()[3..^2].Select(T).ToArray();

    static long[,] RefCodes(int frames)
    {
        var codes = new long[frames, 16];
        for (int f = 0; f < frames; f++)
            for (int g = 0; g < 16; g++) codes[f, g] = (f * 131 + g * 17) % 2048;
        return codes;
    }

    static float[] XVector(int size, int seed = 0) => Enumerable.Range(0, size).Select(i => (float)Math.Sin(i + seed)).ToArray();

    static void AssertLayout(IEnumerable<PromptPosition> expected, IEnumerable<string> expectedTrailing, SynthesisRequest request, Qwen3TtsModel model)
    {
        var (positions, trailing) = new PromptBuilder(model, GenerationFixture.Tokenizer).Describe(request);
        Assert.Equal(expected.Select(p => p.ToString()), positions.Select(p => p.ToString()));
        Assert.Equal(expectedTrailing, trailing);
    }

    [Fact]
    public void Custom_voice_speaker_with_a_language_non_streaming()
    {
        using var model = GenerationFixture.TinyModel(edit: GenerationFixture.CustomVoice);
        var (role, text) = Ids(Text);
        // role | tts_pad x5, tts_bos over [think, think_bos, english, think_eos, speaker, codec_pad] | text + codec_pad,
        // tts_eos + codec_pad, tts_pad + codec_bos
        var expected = role.Select(id => P(T(id)))
            .Concat([P("tts_pad", "think"), P("tts_pad", "think_bos"), P("tts_pad", "language:2050"), P("tts_pad", "think_eos"), P("tts_pad", "speaker:3000"), P("tts_bos", "codec_pad")])
            .Concat(text.Select(t => P(t, "codec_pad")))
            .Concat([P("tts_eos", "codec_pad"), P("tts_pad", "codec_bos")]);
        AssertLayout(expected, ["tts_pad"], new SynthesisRequest { Text = Text, Language = "English", Speaker = "amina" }, model);
    }

    [Fact]
    public void Dialect_speakers_take_their_dialect_for_chinese_and_auto_only()
    {
        using var model = GenerationFixture.TinyModel(edit: GenerationFixture.CustomVoice);
        var builder = new PromptBuilder(model, GenerationFixture.Tokenizer);
        string LanguageSlot(string speaker, string language) =>
            builder.Describe(new SynthesisRequest { Text = Text, Language = language, Speaker = speaker }).Positions[5].Codec;
        Assert.Equal("language:2062", LanguageSlot("eric", "auto"));    // sichuan_dialect instead of the nothink path
        Assert.Equal("language:2062", LanguageSlot("Eric", "chinese")); // instead of chinese 2055
        Assert.Equal("language:2050", LanguageSlot("eric", "english"));
        Assert.Equal("language:2055", LanguageSlot("amina", "chinese"));
        Assert.Equal("think_eos", LanguageSlot("amina", "auto"));        // nothink, think_bos, think_eos, speaker:3000
        var e = Assert.Throws<ArgumentException>(() => LanguageSlot("amina", "sichuan_dialect"));
        Assert.Contains("not supported", e.Message);
    }

    [Fact]
    public void No_voice_auto_language_streaming()
    {
        using var model = GenerationFixture.TinyModel();
        var (role, text) = Ids(Text);
        // nothink path, no speaker: tts_pad x3, tts_bos over [nothink, think_bos, think_eos, codec_pad]; then text[0] + codec_bos
        var expected = role.Select(id => P(T(id)))
            .Concat([P("tts_pad", "nothink"), P("tts_pad", "think_bos"), P("tts_pad", "think_eos"), P("tts_bos", "codec_pad"), P(text[0], "codec_bos")]);
        AssertLayout(expected, text[1..].Append("tts_eos"), new SynthesisRequest { Text = Text, NonStreaming = false }, model);
    }

    [Fact]
    public void No_voice_defaults_to_non_streaming()
    {
        using var model = GenerationFixture.TinyModel();
        var (role, text) = Ids(Text);
        var expected = role.Select(id => P(T(id)))
            .Concat([P("tts_pad", "nothink"), P("tts_pad", "think_bos"), P("tts_pad", "think_eos"), P("tts_bos", "codec_pad")])
            .Concat(text.Select(t => P(t, "codec_pad")))
            .Concat([P("tts_eos", "codec_pad"), P("tts_pad", "codec_bos")]);
        AssertLayout(expected, ["tts_pad"], new SynthesisRequest { Text = Text }, model);
    }

    [Fact]
    public void X_vector_clone_defaults_to_streaming()
    {
        using var model = GenerationFixture.TinyModel();
        var (role, text) = Ids(Text);
        var expected = role.Select(id => P(T(id)))
            .Concat([P("tts_pad", "think"), P("tts_pad", "think_bos"), P("tts_pad", "language:2050"), P("tts_pad", "think_eos"), P("tts_pad", "x_vector"), P("tts_bos", "codec_pad"), P(text[0], "codec_bos")]);
        AssertLayout(expected, text[1..].Append("tts_eos"), new SynthesisRequest { Text = Text, Language = "english", SpeakerEmbedding = XVector(64) }, model);
    }

    [Fact]
    public void Icl_streaming_with_more_text_than_codec_frames()
    {
        using var model = GenerationFixture.TinyModel();
        var (role, text) = Ids(Text);
        var x = RefIds(RefText).Concat(text).Append("tts_eos").ToArray();  // ref text ++ text ++ tts_eos
        string[] y = ["codec_bos", "ref_frame:0", "ref_frame:1"];            // codec_bos ++ 2 frames
        Assert.True(x.Length > y.Length);
        var expected = role.Select(id => P(T(id)))
            .Concat([P("tts_pad", "nothink"), P("tts_pad", "think_bos"), P("tts_pad", "think_eos"), P("tts_pad", "x_vector"), P("tts_bos", "codec_pad")])
            .Concat(x.Take(3).Zip(y, P));
        AssertLayout(expected, x[3..], new SynthesisRequest { Text = Text, SpeakerEmbedding = XVector(64), RefText = RefText, RefCodes = RefCodes(2) }, model);
    }

    [Fact]
    public void Icl_streaming_with_more_codec_frames_than_text_pads_the_text()
    {
        using var model = GenerationFixture.TinyModel();
        var (role, text) = Ids(Text);
        var x = RefIds(RefText).Concat(text).Append("tts_eos").ToArray();
        var y = Enumerable.Range(0, 30).Select(f => $"ref_frame:{f}").Prepend("codec_bos").ToArray();
        var paddedX = x.Concat(Enumerable.Repeat("tts_pad", y.Length - x.Length));
        var expected = role.Select(id => P(T(id)))
            .Concat([P("tts_pad", "think"), P("tts_pad", "think_bos"), P("tts_pad", "language:2055"), P("tts_pad", "think_eos"), P("tts_pad", "x_vector"), P("tts_bos", "codec_pad")])
            .Concat(paddedX.Zip(y, P));
        AssertLayout(expected, ["tts_pad"],
            new SynthesisRequest { Text = Text, Language = "chinese", SpeakerEmbedding = XVector(64), RefText = RefText, RefCodes = RefCodes(30) }, model);
    }

    [Fact]
    public void Icl_non_streaming_puts_all_text_before_the_reference_frames()
    {
        using var model = GenerationFixture.TinyModel();
        var (role, text) = Ids(Text);
        var x = RefIds(RefText).Concat(text).Append("tts_eos");
        var expected = role.Select(id => P(T(id)))
            .Concat([P("tts_pad", "nothink"), P("tts_pad", "think_bos"), P("tts_pad", "think_eos"), P("tts_pad", "x_vector"), P("tts_bos", "codec_pad")])
            .Concat(x.Select(t => P(t, "codec_pad")))
            .Concat([P("tts_pad", "codec_bos"), P("tts_pad", "ref_frame:0"), P("tts_pad", "ref_frame:1"), P("tts_pad", "ref_frame:2")]);
        AssertLayout(expected, ["tts_pad"],
            new SynthesisRequest { Text = Text, SpeakerEmbedding = XVector(64), RefText = RefText, RefCodes = RefCodes(3), NonStreaming = true }, model);
    }

    [Fact]
    public void An_instruction_comes_first_as_text_only_positions()
    {
        using var model = GenerationFixture.TinyModel(edit: GenerationFixture.CustomVoice);
        var instruct = GenerationFixture.Tokenizer.Encode("<|im_start|>user\nSpeak slowly.<|im_end|>\n");
        var (positions, _) = new PromptBuilder(model, GenerationFixture.Tokenizer)
            .Describe(new SynthesisRequest { Text = Text, Speaker = "amina", Instruct = "Speak slowly." });
        var plain = new PromptBuilder(model, GenerationFixture.Tokenizer).Describe(new SynthesisRequest { Text = Text, Speaker = "amina" }).Positions;
        Assert.Equal(instruct.Select(id => P(T(id)).ToString()).Concat(plain.Select(p => p.ToString())), positions.Select(p => p.ToString()));
    }

    [Fact]
    public void Custom_voice_embeddings_equal_the_reference_formula()
    {
        using var model = GenerationFixture.TinyModel(seed: 3, edit: GenerationFixture.CustomVoice);
        var talker = model.Talker;
        var c = talker.Config;
        using var prompt = new PromptBuilder(model, GenerationFixture.Tokenizer).Build(new SynthesisRequest { Text = Text, Language = "english", Speaker = "amina" });
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var ids = GenerationFixture.Tokenizer.EncodeChat(Text).Select(i => (long)i).ToArray();
        Tensor TextEmb(params long[] x) => talker.EmbedText(tensor(x).unsqueeze(0));
        Tensor Codec(params long[] x) => talker.Model.CodecEmbedding.forward(tensor(x).unsqueeze(0));
        // As generate() computes it.
        var special = TextEmb(model.Config.TtsBosTokenId, model.Config.TtsEosTokenId, model.Config.TtsPadTokenId);
        var (bos, eos, pad) = (special.narrow(1, 0, 1), special.narrow(1, 1, 1), special.narrow(1, 2, 1));
        var codec = cat([Codec(c.CodecThinkId, c.CodecThinkBosId, 2050, c.CodecThinkEosId), Codec(3000), Codec(c.CodecPadId, c.CodecBosId)], 1);
        var prefix = cat([pad.expand(-1, codec.shape[1] - 2, -1), bos], 1) + codec.narrow(1, 0, codec.shape[1] - 1);
        var text = ids[3..^5];
        var body = cat([TextEmb(text), eos], 1) + Codec(Enumerable.Repeat((long)c.CodecPadId, text.Length + 1).ToArray());
        var expected = cat([TextEmb(ids[..3]), prefix, body, pad + Codec(c.CodecBosId)], 1);
        Assert.Equal(expected.shape, prompt.InputsEmbeds.shape);
        Assert.True(prompt.InputsEmbeds.allclose(expected, rtol: 1e-5, atol: 1e-6));
        Assert.True(prompt.TrailingText.allclose(pad, rtol: 1e-5, atol: 1e-6));
        Assert.True(prompt.TtsPad.allclose(pad, rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void Icl_streaming_embeddings_equal_the_reference_formula()
    {
        using var model = GenerationFixture.TinyModel(seed: 4);
        var talker = model.Talker;
        var c = talker.Config;
        var xv = XVector(64, seed: 3);
        var codes = RefCodes(2);
        using var prompt = new PromptBuilder(model, GenerationFixture.Tokenizer)
            .Build(new SynthesisRequest { Text = Text, SpeakerEmbedding = xv, RefText = RefText, RefCodes = codes });
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var ids = GenerationFixture.Tokenizer.EncodeChat(Text).Select(i => (long)i).ToArray();
        var refIds = GenerationFixture.Tokenizer.Encode($"<|im_start|>assistant\n{RefText}<|im_end|>\n").Select(i => (long)i).ToArray();
        Tensor TextEmb(params long[] x) => talker.EmbedText(tensor(x).unsqueeze(0));
        Tensor Codec(params long[] x) => talker.Model.CodecEmbedding.forward(tensor(x).unsqueeze(0));
        var special = TextEmb(model.Config.TtsBosTokenId, model.Config.TtsEosTokenId, model.Config.TtsPadTokenId);
        var (bos, eos, pad) = (special.narrow(1, 0, 1), special.narrow(1, 1, 1), special.narrow(1, 2, 1));
        var codec = cat([Codec(c.CodecNothinkId, c.CodecThinkBosId, c.CodecThinkEosId), tensor(xv).view(1, 1, -1), Codec(c.CodecPadId, c.CodecBosId)], 1);
        var prefix = cat([pad.expand(-1, codec.shape[1] - 2, -1), bos], 1) + codec.narrow(1, 0, codec.shape[1] - 1);
        // generate_icl_prompt: text = T(ref ids[3:-2] ++ text ids[3:-5]) ++ tts_eos; codec = C(bos) ++ per frame
        // C0(code 0) + sum_g code_predictor.codec_embedding[g-1](code g).
        var icltext = cat([TextEmb([.. refIds[3..^2], .. ids[3..^5]]), eos], 1);
        var frames = new List<Tensor>();
        for (int f = 0; f < 2; f++)
        {
            var sum = talker.Model.CodecEmbedding.forward(tensor(new[] { codes[f, 0] }));
            for (int g = 1; g < 16; g++) sum = sum + talker.CodePredictor.Model.CodecEmbedding(g).forward(tensor(new[] { codes[f, g] }));
            frames.Add(sum.unsqueeze(0));
        }
        var iclcodec = cat([Codec(c.CodecBosId), .. frames], 1); // [1, 3, hidden]
        var expected = cat([TextEmb(ids[..3]), prefix, icltext.narrow(1, 0, 3) + iclcodec], 1);
        Assert.True(prompt.InputsEmbeds.allclose(expected, rtol: 1e-5, atol: 1e-6));
        Assert.True(prompt.TrailingText.allclose(icltext.narrow(1, 3, icltext.shape[1] - 3), rtol: 1e-5, atol: 1e-6));
    }

    [Fact]
    public void Bad_voices_are_refused_with_the_reason()
    {
        using var model = GenerationFixture.TinyModel(edit: GenerationFixture.CustomVoice);
        var builder = new PromptBuilder(model, GenerationFixture.Tokenizer);
        string Error(SynthesisRequest r) => Assert.Throws<ArgumentException>(() => builder.Describe(r)).Message;
        Assert.Contains("amina, eric", Error(new SynthesisRequest { Text = Text, Speaker = "nobody" }));
        Assert.Contains("klingon", Error(new SynthesisRequest { Text = Text, Language = "klingon" }));
        Assert.Contains("hidden_size = 64", Error(new SynthesisRequest { Text = Text, SpeakerEmbedding = XVector(10) }));
        Assert.Contains("ref_text is required", Error(new SynthesisRequest { Text = Text, SpeakerEmbedding = XVector(64), RefCodes = RefCodes(2) }));
        Assert.Contains("speaker embedding", Error(new SynthesisRequest { Text = Text, RefText = RefText, RefCodes = RefCodes(2) }));
        Assert.Contains("not both", Error(new SynthesisRequest { Text = Text, Speaker = "amina", SpeakerEmbedding = XVector(64) }));
        var bad = RefCodes(2);
        bad[1, 7] = 2048;
        Assert.Contains("codes[1][7]", Error(new SynthesisRequest { Text = Text, SpeakerEmbedding = XVector(64), RefText = RefText, RefCodes = bad }));
        Assert.Contains("empty", Error(new SynthesisRequest { Text = " " }));
    }
}
