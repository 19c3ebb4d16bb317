using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Generation;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Tests.Generation;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Sft;

/// <summary>The training sequence is the prompt the voice is generated with: for the same text, voice and language,
/// the collated sample's input embeddings (<see cref="SftObjective.InputEmbeddings"/>) equal the synthesizer's
/// non-streaming prompt (<see cref="PromptBuilder"/>) position by position up to the first target frame, and the loss
/// is on the target codes and codec_eos only.</summary>
public class TrainingPromptTests
{
    const string Text = "Sannu da zuwa, abokina.";

    public static TheoryData<string> Languages => new() { "auto", "english", "chinese" };

    /// <summary>[frames, 16] codes, distinct per frame and codebook.</summary>
    /// <summary>The training sample of <see cref="Text"/> and these codes in this language (its codec tag; none for auto),
    /// its batch, and the talker's input embeddings conditioned on <paramref name="speaker"/>.</summary>
    static (SftSample Sample, SftBatch Batch, Tensor Embeddings) TrainingSample(Talker talker, Qwen3TtsConfig config, long[,] codes, string language, float[] speaker)
    {
        int? languageId = CodecPrefix.LanguageId(language, talker.Config);
        Assert.Equal(language == "auto", languageId is null);
        var sample = new SftSample(GenerationFixture.Tokenizer.EncodeChat(Text), codes, zeros(20, 128), languageId);
        var batch = SftCollate.Collate([sample], config);
        return (sample, batch, SftObjective.InputEmbeddings(talker, batch, tensor(speaker).unsqueeze(0), LossAlignment.Fixed));
    }

    static long[,] Codes(int frames, int a, int b)
    {
        var codes = new long[frames, 16];
        for (int f = 0; f < frames; f++) for (int g = 0; g < 16; g++) codes[f, g] = (f * a + g * b) % 2048;
        return codes;
    }

    /// <summary>The training sequence is the prompt, the frames and the codec_eos row, and its first positions are the prompt's.</summary>
    static long AssertStartsWithPrompt(Tensor training, Prompt prompt, SftSample sample)
    {
        long p = prompt.InputsEmbeds.shape[1];
        int frames = sample.AudioCodes.GetLength(0);
        Assert.Equal(SftCollate.SequenceLength(sample.TextIds.Count, frames, sample.LanguageId is not null), (int)(p + frames + 1));
        Assert.True(training.narrow(1, 0, p).allclose(prompt.InputsEmbeds, rtol: 1e-5, atol: 1e-6),
            $"max difference {(training.narrow(1, 0, p) - prompt.InputsEmbeds).abs().max().item<float>()}");
        return p;
    }

    [Theory]
    [MemberData(nameof(Languages))]
    public void An_x_vector_sample_is_the_synthesizers_prompt_up_to_the_first_frame(string language)
    {
        using var model = GenerationFixture.TinyModel(seed: 5);
        var talker = model.Talker;
        var xVector = Enumerable.Range(0, talker.Config.HiddenSize).Select(i => (float)Math.Sin(0.3 * i)).ToArray();
        var codes = Codes(6, 97, 13);

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var (sample, batch, training) = TrainingSample(talker, model.Config, codes, language, xVector); // training: [1, T, H]
        using var _ = batch;
        using var prompt = new PromptBuilder(model, GenerationFixture.Tokenizer).Build(new SynthesisRequest
        {
            Text = Text, Language = language, SpeakerEmbedding = xVector, NonStreaming = true,
        });
        long p = AssertStartsWithPrompt(training, prompt, sample);
        // The next position is the first frame, not part of any prompt: it differs.
        Assert.False(training.narrow(1, p, 1).allclose(prompt.TtsPad, rtol: 1e-3, atol: 1e-3));

        // Labels: the frames' codebook 0 then codec_eos, from the row after the prompt's last (codec_bos) on; nothing else.
        var labels = batch.Codec0Labels[0].data<long>().ToArray();
        var scored = labels.Select((l, i) => (l, i)).Where(x => x.l != SftCollate.IgnoreLabel).ToList();
        Assert.Equal(Enumerable.Range((int)p, 7), scored.Select(x => x.i));
        Assert.Equal([.. Enumerable.Range(0, 6).Select(f => codes[f, 0]), (long)talker.Config.CodecEosTokenId], scored.Select(x => x.l));
    }

    /// <summary>An ICL sample (reference transcript and clip codes before the target) is the synthesizer's streaming ICL
    /// prompt up to the first target frame, and each target frame's input is what generation feeds for it (the frame's
    /// codes plus the text still to read); the loss is on the target codes and codec_eos only, never on the reference's
    /// codes or either text. Reference texts shorter and longer than the reference clip's frames (the text then rides on
    /// the target frames).</summary>
    [Theory]
    [InlineData("auto", "Ina kwana?", 30)]
    [InlineData("english", "Ina kwana? Lafiya lau, na gode sosai da zuwa.", 3)]
    public void An_icl_sample_is_the_synthesizers_icl_prompt_up_to_the_first_frame_and_scores_the_target_only(string language, string refText, int refFrames)
    {
        using var model = GenerationFixture.TinyModel(seed: 11);
        var talker = model.Talker;
        var xVector = Enumerable.Range(0, talker.Config.HiddenSize).Select(i => (float)Math.Sin(0.17 * i)).ToArray();
        var codes = Codes(6, 97, 13);
        var refCodes = Codes(refFrames, 53, 29);
        var tokenizer = GenerationFixture.Tokenizer;

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var sample = new SftSample(tokenizer.EncodeChat(Text), codes, zeros(20, 128), CodecPrefix.LanguageId(language, talker.Config),
            tokenizer.Encode(PromptBuilder.RefChatText(refText)), refCodes);
        using var batch = SftCollate.Collate([sample], model.Config);
        var training = SftObjective.InputEmbeddings(talker, batch, tensor(xVector).unsqueeze(0), LossAlignment.Fixed);
        using var prompt = new PromptBuilder(model, tokenizer).Build(new SynthesisRequest
        {
            Text = Text, Language = language, SpeakerEmbedding = xVector, RefText = refText, RefCodes = refCodes, NonStreaming = false,
        });
        long p = prompt.InputsEmbeds.shape[1];
        Assert.Equal(SftCollate.IclSequenceLength(refFrames, 6, sample.LanguageId is not null), (int)(p + 6 + 1));
        Assert.Equal(p + 7, training.shape[1]);
        Assert.True(training.narrow(1, 0, p).allclose(prompt.InputsEmbeds, rtol: 1e-5, atol: 1e-6),
            $"max difference {(training.narrow(1, 0, p) - prompt.InputsEmbeds).abs().max().item<float>()}");
        // Teacher forcing feeds each target frame as generation feeds a generated one: its codes' embedding plus the
        // trailing text of that step (tts_pad once the text is read).
        var frames = CodecEmbeddings.Frames(talker, CodecEmbeddings.ToTensor(codes, CPU)); // [6, H]
        for (int f = 0; f < 6; f++)
        {
            var text = f < prompt.TrailingText.shape[1] ? prompt.TrailingText[0, f] : prompt.TtsPad[0, 0];
            Assert.True(training[0, p + f].allclose(frames[f] + text, rtol: 1e-5, atol: 1e-5), $"target frame {f}");
        }
        Assert.Equal(refFrames < 10, prompt.TrailingText.shape[1] > 1); // with a short clip the texts do ride on the target

        // Scored: the target frames' codebook 0 and codec_eos, from the row after the prompt on; the code predictor sees
        // the target frames only; the reference frames are inputs alone.
        var labels = batch.Codec0Labels[0].data<long>().ToArray();
        var scored = labels.Select((l, i) => (l, i)).Where(x => x.l != SftCollate.IgnoreLabel).ToList();
        Assert.Equal(Enumerable.Range((int)p, 7), scored.Select(x => x.i));
        Assert.Equal([.. Enumerable.Range(0, 6).Select(f => codes[f, 0]), (long)talker.Config.CodecEosTokenId], scored.Select(x => x.l));
        var targetRows = batch.CodecMask[0].data<bool>().ToArray().Select((m, i) => (m, i)).Where(x => x.m).Select(x => x.i);
        Assert.Equal(Enumerable.Range((int)p, 6), targetRows);
        var referenceRows = batch.RefFrameMask![0].data<bool>().ToArray().Select((m, i) => (m, i)).Where(x => x.m).Select(x => x.i).ToList();
        Assert.Equal(Enumerable.Range((int)p - refFrames, refFrames), referenceRows);
        Assert.Equal((6 + 1, 6 * 15), (SftObjective.TalkerPairs(batch.Codec0Labels, LossAlignment.Fixed).Label.shape[0],
            SftObjective.SubTalkerFrames(batch.CodecMask, LossAlignment.Fixed).Batch.shape[0] * 15));
        // --loss_alignment upstream scores the same target labels (shifted once more) and the same frames: never the reference.
        foreach (var alignment in new[] { LossAlignment.Fixed, LossAlignment.Upstream })
        {
            Assert.Equal(scored.Select(x => x.l), SftObjective.TalkerPairs(batch.Codec0Labels, alignment).Label.data<long>().ToArray());
            Assert.Equal(Enumerable.Range((int)p, 6).Select(r => (long)r), SftObjective.SubTalkerFrames(batch.CodecMask, alignment).Position.data<long>().ToArray());
        }
    }

    /// <summary>A named speaker (its codec row holding the voice's mean embedding, as every checkpoint and export stores
    /// it) in a known, an added and no language: synthesis by name builds exactly the prompt training conditioned on
    /// the same embedding.</summary>
    [Theory]
    [InlineData("auto")]
    [InlineData("english")]
    [InlineData("hausa")] // added with --add_language
    public void A_named_speaker_is_the_synthesizers_prompt_up_to_the_first_frame(string language)
    {
        var edit = (System.Text.Json.Nodes.JsonObject json) =>
        {
            json["talker_config"]!["spk_id"] = new System.Text.Json.Nodes.JsonObject { ["amina"] = 3000 };
            json["talker_config"]!["spk_is_dialect"] = new System.Text.Json.Nodes.JsonObject { ["amina"] = false };
        };
        using var model = GenerationFixture.TinyModel(seed: 9, edit: edit);
        var config = model.Config;
        if (language == "hausa") config = Qwen3Tts.Model.Config.CodecRows.AddLanguage(config, "hausa").Config;
        using var speaking = new Qwen3Tts.Model.Qwen3TtsModel(config);
        speaking.load_state_dict(model.state_dict());
        speaking.eval();
        var talker = speaking.Talker;
        var voice = Enumerable.Range(0, talker.Config.HiddenSize).Select(i => (float)Math.Cos(0.2 * i)).ToArray();
        using (no_grad()) speaking.state_dict()["talker.model.codec_embedding.weight"][3000].copy_(tensor(voice));
        var codes = Codes(4, 31, 7);

        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var (sample, batch, training) = TrainingSample(talker, config, codes, language, voice);
        using var _ = batch;
        using var prompt = new PromptBuilder(speaking, GenerationFixture.Tokenizer).Build(new SynthesisRequest
        {
            Text = Text, Language = language, Speaker = "amina", NonStreaming = true,
        });
        AssertStartsWithPrompt(training, prompt, sample);
    }
}
