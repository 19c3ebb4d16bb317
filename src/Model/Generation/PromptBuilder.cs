using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Generation;

/// <summary>What one talker input position holds: its text channel (<c>text:ID</c> for a text id, or
/// <c>tts_pad</c>, <c>tts_bos</c>, <c>tts_eos</c>; all through text_projection) plus its codec channel (empty for
/// none, <c>nothink</c>, <c>think</c>, <c>think_bos</c>, <c>think_eos</c>, <c>language:ID</c>, <c>speaker</c>,
/// <c>speaker:ID</c> (a named speaker's spk_id row of codec_embedding), <c>x_vector</c> (a speaker embedding),
/// <c>codec_pad</c>, <c>codec_bos</c>, or <c>ref_frame:I</c>, the I-th ICL reference frame's summed codebooks).</summary>
public readonly record struct PromptPosition(string Text, string Codec)
{
    public override string ToString() => Codec.Length == 0 ? Text : $"{Text} + {Codec}";
}

/// <summary>The talker's prefill input and what decoding adds to it: <see cref="TrailingText"/>[k] is summed into
/// the input of generated frame k (the text still to read in streaming layouts), <see cref="TtsPad"/> after it.</summary>
public sealed class Prompt(Tensor inputsEmbeds, Tensor trailingText, Tensor ttsPad,
    IReadOnlyList<PromptPosition> positions, IReadOnlyList<string> trailing) : IDisposable
{
    /// <summary>[1, P, hidden]</summary>
    public Tensor InputsEmbeds { get; } = inputsEmbeds;

    /// <summary>[1, N, hidden]</summary>
    public Tensor TrailingText { get; } = trailingText;

    /// <summary>[1, 1, hidden]: text_projection(text_embedding(tts_pad)).</summary>
    public Tensor TtsPad { get; } = ttsPad;

    public IReadOnlyList<PromptPosition> Positions { get; } = positions;

    /// <summary>The text channel of <see cref="TrailingText"/>, described as in <see cref="PromptPosition.Text"/>.</summary>
    public IReadOnlyList<string> Trailing { get; } = trailing;

    public void Dispose()
    {
        InputsEmbeds.Dispose();
        TrailingText.Dispose();
        TtsPad.Dispose();
    }
}

/// <summary>Builds the talker prompt of Qwen3TTSForConditionalGeneration.generate (and generate_icl_prompt) for one
/// request: tokenizes it, checks its voice fields, picks the codec tags (language, speaker) and lays it out with
/// <see cref="PromptLayout"/>, which ICL training shares; then embeds every position.</summary>
public sealed class PromptBuilder(Qwen3TtsModel model, Qwen3TextTokenizer tokenizer)
{
    /// <summary>"&lt;|im_start|&gt;assistant\n": the role ids that open the text.</summary>
    public const int RoleIds = 3;

    /// <summary>"&lt;|im_end|&gt;\n&lt;|im_start|&gt;assistant\n": dropped from the end of the text ids.</summary>
    public const int TrailingChatIds = 5;

    /// <summary>"&lt;|im_end|&gt;\n": dropped from the end of the ICL reference text ids.</summary>
    public const int RefTrailingIds = 2;

    public Qwen3TtsModel Model { get; } = model;
    public Qwen3TextTokenizer Tokenizer { get; } = tokenizer;

    /// <summary>The reference transcript's turn (generate_voice_clone's _build_ref_text).</summary>
    public static string RefChatText(string refText) => $"<|im_start|>assistant\n{refText}<|im_end|>\n";

    /// <summary>The instruction's turn (_build_instruct_text).</summary>
    public static string InstructChatText(string instruct) => $"<|im_start|>user\n{instruct}<|im_end|>\n";

    /// <summary>The layout of <paramref name="request"/>'s prompt, without computing any embedding.</summary>
    public (IReadOnlyList<PromptPosition> Positions, IReadOnlyList<string> Trailing) Describe(SynthesisRequest request)
    {
        var (positions, trailing) = Layout(request);
        return (positions, trailing);
    }

    public Prompt Build(SynthesisRequest request)
    {
        var (positions, trailing) = Layout(request);
        var weight = Model.Talker.CodecHead.weight!;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var talker = Model.Talker;
        var c = talker.Config;
        long p = positions.Count, hidden = c.HiddenSize;

        // Text channel: every position has one, so one text_projection call over all of them.
        var textIds = tensor(positions.Select(x => TextId(x.Text)).ToArray(), device: weight.device).unsqueeze(0);
        var text = talker.EmbedText(textIds); // [1, P, hidden]

        // Codec channel: tags through codec_embedding, the speaker vector, ICL frames; zero where there is none.
        var codec = zeros(p, hidden, dtype: weight.dtype, device: weight.device);
        var tagRows = new List<long>();
        var tagIds = new List<long>();
        var frameRows = new List<long>();
        var frameIndex = new List<long>();
        for (int i = 0; i < p; i++)
        {
            string slot = positions[i].Codec;
            if (slot.Length == 0) continue;
            if (slot == "x_vector")
                codec[i].copy_(tensor(request.SpeakerEmbedding!, device: weight.device).to(weight.dtype));
            else if (PromptLayout.RefFrame(slot) is int frame)
            {
                frameRows.Add(i);
                frameIndex.Add(frame);
            }
            else
            {
                tagRows.Add(i);
                tagIds.Add(CodecId(slot, c));
            }
        }
        if (tagRows.Count > 0)
            codec.index_copy_(0, tensor(tagRows.ToArray(), device: weight.device),
                talker.Model.CodecEmbedding.forward(tensor(tagIds.ToArray(), device: weight.device)));
        if (frameRows.Count > 0)
        {
            var frames = CodecEmbeddings.Frames(talker, CodecEmbeddings.ToTensor(request.RefCodes!, weight.device)); // [F, hidden]
            codec.index_copy_(0, tensor(frameRows.ToArray(), device: weight.device), frames.index_select(0, tensor(frameIndex.ToArray(), device: weight.device)));
        }
        var inputs = text + codec.unsqueeze(0);

        var trailingIds = tensor(trailing.Select(TextId).ToArray(), device: weight.device).unsqueeze(0);
        var trailingText = talker.EmbedText(trailingIds);
        var ttsPad = talker.EmbedText(tensor(new long[] { Model.Config.TtsPadTokenId }, device: weight.device).unsqueeze(0));
        return new Prompt(inputs.MoveToOuterDisposeScope(), trailingText.MoveToOuterDisposeScope(), ttsPad.MoveToOuterDisposeScope(), positions, trailing);
    }

    (List<PromptPosition> Positions, List<string> Trailing) Layout(SynthesisRequest r)
    {
        var config = Model.Config;
        var t = config.Talker;
        if (string.IsNullOrWhiteSpace(r.Text)) throw new ArgumentException("the text to synthesize is empty");
        var ids = Tokenizer.EncodeChat(r.Text);
        if (ids.Count - RoleIds - TrailingChatIds <= 0) throw new ArgumentException($"the text '{r.Text}' has no tokens of its own");

        string? speakerKey = ResolveSpeaker(r, t);
        int? languageId = ResolveLanguage(r.Language, speakerKey, t);

        if (!string.IsNullOrEmpty(r.Instruct) && config.TtsModelType == "custom_voice" && "0b6".Contains(config.TtsModelSize, StringComparison.Ordinal))
            throw new ArgumentException($"instruct: a '{config.TtsModelSize}' custom_voice model takes no instruction (the reference drops it for 0.6B)");
        var tags = CodecPrefix.Tags(languageId).ToList();
        if (speakerKey is not null) tags.Add($"speaker:{t.SpkId[speakerKey]}");
        else if (r.SpeakerEmbedding is not null) tags.Add("x_vector");
        tags.Add("codec_pad");
        tags.Add("codec_bos");
        return PromptLayout.Of(ids, tags, string.IsNullOrEmpty(r.Instruct) ? null : Tokenizer.Encode(InstructChatText(r.Instruct)),
            r.IsIcl ? Tokenizer.Encode(RefChatText(r.RefText!)) : null, r.IsIcl ? r.RefCodes!.GetLength(0) : 0, r.EffectiveNonStreaming);
    }

    /// <summary>The talker's speaker: a spk_id key (named speaker), or null for an x-vector or no speaker. Validates
    /// the voice fields of the request.</summary>
    string? ResolveSpeaker(SynthesisRequest r, TalkerConfig t)
    {
        bool named = !string.IsNullOrEmpty(r.Speaker);
        if (named && r.SpeakerEmbedding is not null)
            throw new ArgumentException("give either a named speaker or a speaker embedding (x-vector), not both");
        if (r.SpeakerEmbedding is { } xv && xv.Length != t.HiddenSize)
            throw new ArgumentException($"the speaker embedding has {xv.Length} values; this model's speaker slot is talker_config.hidden_size = {t.HiddenSize}");
        if (r.IsIcl)
        {
            if (r.SpeakerEmbedding is null)
                throw new ArgumentException("ICL cloning needs the reference clip's speaker embedding (x-vector) as well as its codes");
            if (string.IsNullOrEmpty(r.RefText))
                throw new ArgumentException("ref_text is required for ICL cloning (the reference clip's transcript); use x-vector-only cloning without it");
            CheckRefCodes(r.RefCodes!, t);
        }
        else if (!string.IsNullOrEmpty(r.RefText))
            throw new ArgumentException("ref_text was given without the reference clip's codes; ICL needs both (x-vector-only cloning takes neither)");
        if (!named) return null;
        string? key = t.SpkId.Keys.FirstOrDefault(k => k == r.Speaker)
            ?? t.SpkId.Keys.FirstOrDefault(k => string.Equals(k, r.Speaker, StringComparison.OrdinalIgnoreCase));
        if (key is null)
            throw new ArgumentException(t.SpkId.Count == 0
                ? $"speaker '{r.Speaker}': this model has no named speakers (talker_config.spk_id is empty); clone a voice from a reference clip instead"
                : $"speaker '{r.Speaker}' is not one of this model's speakers: {string.Join(", ", t.SpkId.Keys.Order(StringComparer.Ordinal))}");
        return key;
    }

    static void CheckRefCodes(long[,] codes, TalkerConfig t)
    {
        if (codes.GetLength(0) == 0) throw new ArgumentException("the reference codes have no frames");
        CodeBounds.Of(t).Check(codes, "the reference codes");
    }

    /// <summary>The language's codec id, or null for "auto"; a dialect speaker speaking Chinese (or auto) takes its
    /// dialect's id, as the reference does.</summary>
    static int? ResolveLanguage(string language, string? speakerKey, TalkerConfig t)
    {
        string lang = (language ?? "auto").ToLowerInvariant();
        int? id = null;
        if (lang != "auto")
        {
            // The wrapper offers every codec_language_id key except the dialects, which only speakers select.
            if (lang.Contains("dialect", StringComparison.Ordinal) || !t.CodecLanguageId.TryGetValue(lang, out int found))
                throw new ArgumentException($"language '{language}' is not supported; expected auto or one of " +
                    string.Join(", ", t.CodecLanguageId.Keys.Where(k => !k.Contains("dialect", StringComparison.Ordinal)).Order(StringComparer.Ordinal)));
            id = found;
        }
        if (lang is "chinese" or "auto" && speakerKey is not null && t.SpkIsDialect.TryGetValue(speakerKey, out var dialect) && dialect is not null)
        {
            if (!t.CodecLanguageId.TryGetValue(dialect, out int dialectId))
                throw new ConfigException($"talker_config.spk_is_dialect.{speakerKey} is '{dialect}', which is not a key of codec_language_id");
            id = dialectId;
        }
        return id;
    }

    long TextId(string slot) => PromptLayout.TextId(slot, Model.Config);

    static long CodecId(string slot, TalkerConfig c) => PromptLayout.CodecId(slot, c);
}
