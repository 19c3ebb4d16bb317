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
