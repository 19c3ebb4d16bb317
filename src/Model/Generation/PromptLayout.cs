namespace Qwen3Tts.Model.Generation;

/// <summary>The layout of the talker prompt of Qwen3TTSForConditionalGeneration.generate (and generate_icl_prompt), from
/// token ids alone: synthesis (<see cref="PromptBuilder"/>) embeds it, and ICL training (<see cref="Sft.SftCollate"/>)
/// teaches on it, so a voice cloned in context is generated from the very sequence it was trained on.
/// With chat ids "&lt;|im_start|&gt;assistant\n{text}&lt;|im_end|&gt;\n&lt;|im_start|&gt;assistant\n", text = ids[3:-5]
/// (L ids), and codec tags C (<see cref="CodecPrefix"/>, then the speaker slot if any, then codec_pad, codec_bos):
/// <code>
/// instruct ids (text only, if any) | ids[0..3) (text only) | tts_pad × (|C|-2), tts_bos  summed with C[0 .. |C|-1)
/// then, without ICL:
///   non-streaming: text[k] + codec_pad (k &lt; L), tts_eos + codec_pad, tts_pad + codec_bos;  trailing = [tts_pad]
///   streaming:     text[0] + codec_bos;                                                  trailing = text[1..], tts_eos
/// with ICL (R = ref ids[3:-2], F reference frames; X = R ++ text ++ [tts_eos], Y = [codec_bos] ++ frames):
///   non-streaming: X[i] + codec_pad, then Y[j] + tts_pad;                              trailing = [tts_pad]
///   streaming:     X[i] + Y[i] for i &lt; |Y| (X padded with tts_pad if shorter);        trailing = X[|Y|..] or [tts_pad]
/// </code>
/// The last codec tag (codec_bos) thus sits on the last prompt position, or starts the ICL frames. Generated frame k's
/// input is its codes' embedding plus trailing[k] (tts_pad once the trailing text is spent).</summary>
public static class PromptLayout
{
    /// <param name="chatIds">the target text's chat ids (<see cref="Text.Qwen3TextTokenizer.EncodeChat"/>).</param>
    /// <param name="tags">every codec tag: the prefix, the speaker slot ("speaker:ID" or "x_vector") if any, codec_pad, codec_bos.</param>
    /// <param name="instructIds">the instruction's turn, tokenized (<see cref="PromptBuilder.InstructChatText"/>), or null.</param>
    /// <param name="refChatIds">for ICL: the reference transcript's turn, tokenized (<see cref="PromptBuilder.RefChatText"/>).</param>
    /// <param name="refFrames">for ICL: the reference clip's codec frames.</param>
    public static (List<PromptPosition> Positions, List<string> Trailing) Of(IReadOnlyList<int> chatIds, IReadOnlyList<string> tags,
        IReadOnlyList<int>? instructIds = null, IReadOnlyList<int>? refChatIds = null, int refFrames = 0, bool nonStreaming = true)
    {
        ArgumentNullException.ThrowIfNull(chatIds);
        ArgumentNullException.ThrowIfNull(tags);
        int roles = PromptBuilder.RoleIds;
        var text = chatIds.Skip(roles).Take(chatIds.Count - roles - PromptBuilder.TrailingChatIds).Select(Text).ToList();
        if (text.Count == 0) throw new ArgumentException("the text has no tokens of its own", nameof(chatIds));
        if (tags.Count < 2 || tags[^1] != "codec_bos" || tags[^2] != "codec_pad") throw new ArgumentException("the codec tags must end in codec_pad, codec_bos", nameof(tags));

        var positions = new List<PromptPosition>();
        if (instructIds is not null) positions.AddRange(instructIds.Select(id => new PromptPosition(Text(id), "")));
        positions.AddRange(chatIds.Take(roles).Select(id => new PromptPosition(Text(id), "")));
        for (int k = 0; k < tags.Count - 1; k++)
            positions.Add(new PromptPosition(k < tags.Count - 2 ? "tts_pad" : "tts_bos", tags[k]));

        var trailing = new List<string>();
        if (refChatIds is not null)
        {
            if (refFrames < 1) throw new ArgumentException("ICL needs at least one reference frame", nameof(refFrames));
            var x = refChatIds.Skip(roles).Take(refChatIds.Count - roles - PromptBuilder.RefTrailingIds).Select(Text).Concat(text).Append("tts_eos").ToList();
            var y = Enumerable.Range(0, refFrames).Select(f => $"ref_frame:{f}").Prepend("codec_bos").ToList();
            if (nonStreaming)
            {
                positions.AddRange(x.Select(s => new PromptPosition(s, "codec_pad")));
                positions.AddRange(y.Select(s => new PromptPosition("tts_pad", s)));
                trailing.Add("tts_pad");
            }
            else
            {
                for (int i = 0; i < y.Count; i++) positions.Add(new PromptPosition(i < x.Count ? x[i] : "tts_pad", y[i]));
                if (x.Count > y.Count) trailing.AddRange(x.Skip(y.Count));
                else trailing.Add("tts_pad");
            }
        }
        else if (nonStreaming)
        {
            positions.AddRange(text.Select(s => new PromptPosition(s, "codec_pad")));
            positions.Add(new PromptPosition("tts_eos", "codec_pad"));
            positions.Add(new PromptPosition("tts_pad", "codec_bos"));
            trailing.Add("tts_pad");
        }
        else
        {
            positions.Add(new PromptPosition(text[0], "codec_bos"));
            trailing.AddRange(text.Skip(1));
            trailing.Add("tts_eos");
        }
        return (positions, trailing);
    }

    static string Text(int id) => $"text:{id}";

    /// <summary>The text id of a text slot ("text:ID", tts_pad, tts_bos, tts_eos).</summary>
    public static long TextId(string slot, Config.Qwen3TtsConfig config) => slot switch
    {
        "tts_pad" => config.TtsPadTokenId,
        "tts_bos" => config.TtsBosTokenId,
        "tts_eos" => config.TtsEosTokenId,
        _ when slot.StartsWith("text:", StringComparison.Ordinal) => long.Parse(slot[5..], System.Globalization.CultureInfo.InvariantCulture),
        _ => throw new InvalidOperationException($"unknown text slot '{slot}'"),
    };

    /// <summary>The codec_embedding row of a codec tag (not the speaker vector, not a reference frame).</summary>
    public static long CodecId(string slot, Config.TalkerConfig c) => slot switch
    {
        "nothink" => c.CodecNothinkId,
        "think" => c.CodecThinkId,
        "think_bos" => c.CodecThinkBosId,
        "think_eos" => c.CodecThinkEosId,
        "codec_pad" => c.CodecPadId,
        "codec_bos" => c.CodecBosId,
        _ when slot.StartsWith("language:", StringComparison.Ordinal) => long.Parse(slot[9..], System.Globalization.CultureInfo.InvariantCulture),
        _ when slot.StartsWith("speaker:", StringComparison.Ordinal) => long.Parse(slot[8..], System.Globalization.CultureInfo.InvariantCulture),
        _ => throw new InvalidOperationException($"unknown codec slot '{slot}'"),
    };

    /// <summary>The reference frame a codec slot holds ("ref_frame:I"), or null.</summary>
    public static int? RefFrame(string slot) =>
        slot.StartsWith("ref_frame:", StringComparison.Ordinal) ? int.Parse(slot["ref_frame:".Length..], System.Globalization.CultureInfo.InvariantCulture) : null;
}
