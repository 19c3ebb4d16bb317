using Qwen3Tts.Model;
using Qwen3Tts.Model.Generation;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Generation;

/// <summary>The decoding loop on tiny models: determinism, seeds, stopping, bounds, and the wiring of every frame's
/// input checked against one teacher-forced forward pass over the sequence the reference would feed.</summary>
public class GenerationTests
{
    const string Text = "Sannu da zuwa, abokina.";

    static readonly GenerationConfig Greedy = new(DoSample: false, SubtalkerDoSample: false, MaxNewTokens: 10);
    static readonly GenerationConfig Sampled = new(MaxNewTokens: 10);

    static Synthesizer Synth(Qwen3TtsModel model) => new(model, GenerationFixture.Tokenizer);

    static SynthesisRequest Request(string language = "english") => new() { Text = Text, Language = language };

    static void AssertCodesInRange(long[,] codes)
    {
        foreach (long code in codes) Assert.InRange(code, 0, 2047); // codebook 0 can only be < 2048 or eos, which is never a frame
    }

    /// <summary>Makes every talker position's hidden state have a positive component 0, then points codec_head's eos row
    /// (and nothing else) along it: the layers' outputs are zeroed so the residual stream is the input, every text
    /// embedding is text_projection's bias 10·e0 (fc2 weight zero), and no codec embedding has a component 0. So
    /// logit(eos) = sign · 1000 · h0 with h0 &gt; 0 and every other logit is exactly 0.</summary>
    static void ForceEos(Qwen3TtsModel model, int sign)
    {
        using var noGrad = no_grad();
        int eos = model.Config.Talker.CodecEosTokenId;
        foreach (var (name, p) in model.named_parameters())
        {
            if (!name.StartsWith("talker.", StringComparison.Ordinal) || name.StartsWith("talker.code_predictor.model.layers", StringComparison.Ordinal)) continue;
            if (name.EndsWith("o_proj.weight") || name.EndsWith("down_proj.weight") || name == "talker.text_projection.linear_fc2.weight" || name == "talker.codec_head.weight")
                p.zero_();
            else if (name == "talker.text_projection.linear_fc2.bias")
            {
                p.zero_();
                p[0] = 10f;
            }
            else if (name.Contains("codec_embedding") && name.EndsWith(".weight"))
                p[TensorIndex.Colon, 0] = 0f;
        }
        model.Talker.CodecHead.weight![eos, 0] = sign * 1000f;
    }

    [Fact]
    public void Greedy_generation_is_deterministic_and_ignores_the_seed()
    {
        using var model = GenerationFixture.TinyModel(seed: 11, std: 0.3);
        var a = Synth(model).Synthesize(Request(), Greedy, seed: 1);
        var b = Synth(model).Synthesize(Request(), Greedy, seed: 2);
        Assert.True(a.Frames > 0);
        Assert.Equal(a.Codes, b.Codes);
        AssertCodesInRange(a.Codes);
    }

    [Fact]
    public void Sampling_with_a_seed_is_reproducible_and_other_seeds_differ()
    {
        using var model = GenerationFixture.TinyModel(seed: 12, std: 0.3);
        var config = Sampled with { MinNewTokens = 10 }; // eos stays masked: every run has the full 9 frames to compare
        var a = Synth(model).Synthesize(Request(), config, seed: 5);
        var b = Synth(model).Synthesize(Request(), config, seed: 5);
        var c = Synth(model).Synthesize(Request(), config, seed: 6);
        Assert.Equal(9, a.Frames);
        Assert.Equal(a.Codes, b.Codes);
        Assert.NotEqual(a.Codes, c.Codes);
        AssertCodesInRange(a.Codes);
        AssertCodesInRange(c.Codes);
        // The code predictor samples too: its codebooks differ between seeds even where codebook 0 agrees.
        var subA = Enumerable.Range(0, 9).SelectMany(f => Enumerable.Range(1, 15).Select(g => a.Codes[f, g]));
        var subC = Enumerable.Range(0, 9).SelectMany(f => Enumerable.Range(1, 15).Select(g => c.Codes[f, g]));
        Assert.NotEqual(subA, subC);
    }

    [Fact]
    public void Eos_stops_generation_once_min_new_tokens_allow_it()
    {
        using var model = GenerationFixture.TinyModel(seed: 13);
        ForceEos(model, sign: +1);
        // Tokens 0 and 1 cannot be eos (min_new_tokens = 2); every other logit is 0, so greedy takes id 0; then eos.
        var greedy = Synth(model).Synthesize(Request(), Greedy with { MaxNewTokens = 50 }, seed: 0);
        Assert.True(greedy.ReachedEos);
        Assert.Equal(3, greedy.TalkerTokens);
        Assert.Equal(2, greedy.Frames);
        Assert.Equal(0, greedy.Codes[0, 0]);
        Assert.Equal(0, greedy.Codes[1, 0]);
        var sampled = Synth(model).Synthesize(Request(), Sampled with { MaxNewTokens = 50 }, seed: 9);
        Assert.True(sampled.ReachedEos);
        Assert.Equal(2, sampled.Frames);
        var later = Synth(model).Synthesize(Request(), Greedy with { MaxNewTokens = 50, MinNewTokens = 5 }, seed: 0);
        Assert.Equal(5, later.Frames);
        Assert.True(later.ReachedEos);
    }

    [Fact]
    public void Max_new_tokens_bounds_generation()
    {
        using var model = GenerationFixture.TinyModel(seed: 14);
        ForceEos(model, sign: -1);
        foreach (int max in new[] { 1, 2, 7 })
        {
            var r = Synth(model).Synthesize(Request(), Greedy with { MaxNewTokens = max }, seed: 0);
            Assert.False(r.ReachedEos);
            Assert.Equal(max, r.TalkerTokens);
            Assert.Equal(max - 1, r.Frames); // the last token's codebooks 1..15 would come at the next step, as in the reference
        }
    }

    [Fact]
    public void Every_greedy_code_is_the_argmax_of_a_teacher_forced_forward_over_the_reference_input_sequence()
    {
        using var model = GenerationFixture.TinyModel(seed: 15, std: 0.3);
        var talker = model.Talker;
        var c = talker.Config;
        // x-vector cloning streams the text: trailing text goes into frames 0.., then tts_pad (the text is short enough
        // for 14 frames to use both).
        var request = new SynthesisRequest { Text = "Sannu.", Language = "english", SpeakerEmbedding = Enumerable.Range(0, 64).Select(i => (float)Math.Cos(i)).ToArray() };
        var config = Greedy with { MaxNewTokens = 15, RepetitionPenalty = 1.3 };
        var synth = Synth(model);
        using var prompt = synth.Prompts.Build(request);
        var result = synth.Generate(prompt, config, seed: 0);
        int frames = result.Frames;
        Assert.True(frames >= 6, $"only {frames} frames");
        Assert.True(prompt.Trailing.Count < frames);

        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        // The talker's input: the prompt, then per frame k the sum of its 16 codebook embeddings plus trailing text k,
        // or tts_pad once the trailing text is used up (the reference's forward, generation stage).
        var inputs = new List<Tensor> { prompt.InputsEmbeds };
        for (int k = 0; k < frames; k++)
        {
            var sum = talker.Model.CodecEmbedding.forward(tensor(new[] { result.Codes[k, 0] }));
            for (int g = 1; g < 16; g++) sum = sum + talker.CodePredictor.Model.CodecEmbedding(g).forward(tensor(new[] { result.Codes[k, g] }));
            var text = k < prompt.Trailing.Count ? prompt.TrailingText[0, k] : prompt.TtsPad[0, 0];
            inputs.Add((sum[0] + text).view(1, 1, -1));
        }
        var hidden = talker.forward(cat(inputs, 1), null, null); // [1, P + frames, hidden], no cache
        long p = prompt.InputsEmbeds.shape[1];
        var suppressed = Synthesizer.SuppressedTokens(c.VocabSize, c.CodecEosTokenId);
        for (int k = 0; k < frames; k++)
        {
            var h = hidden.narrow(1, p - 1 + k, 1);
            var logits = TalkerDecoder.Logits(talker.CodecHead.forward(h));
            Sampling.ApplyRepetitionPenalty(logits, Enumerable.Range(0, k).Select(j => (int)result.Codes[j, 0]), 1.3);
            if (k < 2) logits[c.CodecEosTokenId] = float.NegativeInfinity;
            Sampling.Suppress(logits, suppressed);
            Assert.Equal(result.Codes[k, 0], Sampling.Argmax(logits));

            // The code predictor over [h, codebook 0, codebooks 1..14] in one pass: position g picks codebook g+1.
            var cpInputs = new List<Tensor> { h, talker.Model.CodecEmbedding.forward(tensor(new[] { result.Codes[k, 0] })).view(1, 1, -1) };
            for (int g = 1; g < 15; g++) cpInputs.Add(talker.CodePredictor.Model.CodecEmbedding(g).forward(tensor(new[] { result.Codes[k, g] })).view(1, 1, -1));
            var cpHidden = talker.CodePredictor.forward(cat(cpInputs, 1)); // [1, 16, cp_hidden]
            for (int g = 1; g < 16; g++)
                Assert.Equal(result.Codes[k, g], Sampling.Argmax(TalkerDecoder.Logits(talker.CodePredictor.LmHead(g).forward(cpHidden.narrow(1, g, 1)))));
        }
    }
}
