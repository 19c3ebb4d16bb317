using Qwen3Tts.Model.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Generation;

/// <summary>Generated codes [frames, groups] (what the 12 Hz decoder turns into audio), whether codec_eos ended
/// them, and how many codebook-0 tokens the talker sampled (eos included).</summary>
public sealed record SynthesisResult(long[,] Codes, bool ReachedEos, int TalkerTokens)
{
    public int Frames => Codes.GetLength(0);

    /// <summary>Seconds of audio at the tokenizer's 12.5 frames per second.</summary>
    public double AudioSeconds => Frames / FramesPerSecond;

    public const double FramesPerSecond = 12.5;
}

/// <summary>Autoregressive synthesis as Qwen3TTSForConditionalGeneration.generate runs it, for one request:
/// <list type="number">
/// <item>prefill the talker with the prompt; sample codebook 0 of frame 0 from its last logits;</item>
/// <item>per frame k: the code predictor, given the talker's last hidden state and codebook 0, samples codebooks
/// 1..15; the frame's summed embeddings plus trailing text k (or tts_pad once it is used up) are the talker's next
/// input, whose logits give codebook 0 of frame k+1;</item>
/// <item>codebook 0 is shaped like transformers' generate shapes it: repetition penalty over the codebook-0 tokens
/// sampled so far, codec_eos masked until min_new_tokens tokens exist, the top 1024 codec ids (tags, languages,
/// speakers) suppressed except codec_eos; then temperature, top-k, top-p and a draw, or argmax when greedy;</item>
/// <item>generation ends at codec_eos (not part of the output) or after max_new_tokens codebook-0 tokens. As in the
/// reference, a frame's codebooks 1..15 are computed at the step after its codebook 0, so when the limit ends
/// generation the last token gets none and is dropped: at most max_new_tokens - 1 frames come out.</item>
/// </list>
/// Every random draw comes from one <see cref="SamplingRng"/> seeded per request, in a fixed order (the frame's
/// codebook 0, then its codebooks 1..15), so a seed reproduces the codes exactly.</summary>
public sealed class Synthesizer(Qwen3TtsModel model, Qwen3TextTokenizer tokenizer)
{
    public Qwen3TtsModel Model { get; } = model;

    public PromptBuilder Prompts { get; } = new(model, tokenizer);

    /// <summary>Decode through KV caches (default) or recompute every sequence in full each step.</summary>
    public bool UseKvCache { get; init; } = true;

    public SynthesisResult Synthesize(SynthesisRequest request, GenerationConfig config, ulong seed)
    {
        using var prompt = Prompts.Build(request);
        return Generate(prompt, config, seed);
    }

    public SynthesisResult Generate(Prompt prompt, GenerationConfig config, ulong seed)
    {
        config.Validate("generation settings");
        var talker = Model.Talker;
        var c = talker.Config;
        int eos = c.CodecEosTokenId;
        int[] suppressed = SuppressedTokens(c.VocabSize, eos);
        var rng = new SamplingRng(seed);
        var talkerSampling = config.Talker;
        var subtalkerSampling = config.Subtalker;

        var tokens = new List<int>();
        var frames = new List<long[]>();
        bool reachedEos = false;
        using var decoder = new TalkerDecoder(talker, UseKvCache);
        var logits = decoder.Feed(prompt.InputsEmbeds);
        for (int step = 0; ; step++)
        {
            Sampling.ApplyRepetitionPenalty(logits, tokens, talkerSampling.RepetitionPenalty);
            if (tokens.Count < config.MinNewTokens) logits[eos] = float.NegativeInfinity;
            Sampling.Suppress(logits, suppressed);
            int token = Sampling.Pick(logits, talkerSampling, rng);
            tokens.Add(token);
            if (token == eos) { reachedEos = true; break; }
            if (tokens.Count >= config.MaxNewTokens) break;

            var codes = CodePredictorDecoder.PredictFrame(talker, decoder.LastHidden!, token, UseKvCache,
                (_, subLogits) => Sampling.Pick(subLogits, subtalkerSampling, rng));
            frames.Add(codes);
            using var scope = NewDisposeScope();
            var frame = CodecEmbeddings.Frames(talker, tensor(codes, device: prompt.InputsEmbeds.device).view(1, 1, -1)); // [1, 1, hidden]
            var text = step < prompt.TrailingText.shape[1] ? prompt.TrailingText.narrow(1, step, 1) : prompt.TtsPad;
            logits = decoder.Feed(frame + text);
        }

        var result = new long[frames.Count, c.NumCodeGroups];
        for (int f = 0; f < frames.Count; f++)
            for (int g = 0; g < c.NumCodeGroups; g++) result[f, g] = frames[f][g];
        return new SynthesisResult(result, reachedEos, tokens.Count);
    }

    /// <summary>The reference's suppress_tokens: codec ids [vocab - 1024, vocab) except codec_eos.</summary>
    public static int[] SuppressedTokens(int vocabSize, int eos) =>
        Enumerable.Range(Math.Max(0, vocabSize - 1024), Math.Min(1024, vocabSize)).Where(i => i != eos).ToArray();
}
