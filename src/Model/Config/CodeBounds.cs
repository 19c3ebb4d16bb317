namespace Qwen3Tts.Model.Config;

/// <summary>The one rule for the codes of audio_codes [frames][codebooks]. Codebook 0 is embedded by the talker's
/// codec_embedding and predicted by its codec_head, so its codes lie below the talker's codec vocabulary and below the
/// first special id in it (pad, bos, eos, think, language and speaker rows follow the codes: a code there would be read
/// as a control token). Codebooks 1..N-1 go through the code predictor: below its vocabulary. Every reader, prepare,
/// preflight, the collate and the prompts check codes through this record.</summary>
public sealed record CodeBounds(int Codebooks, int FirstCodebook, int OtherCodebooks)
{
    /// <summary>Without a model: the 12 Hz speech tokenizer's 16 codebooks of 2048 codes.</summary>
    public static CodeBounds SpeechTokenizer { get; } = new(16, 2048, 2048);

    public static CodeBounds Of(TalkerConfig t)
    {
        ArgumentNullException.ThrowIfNull(t);
        int firstSpecial = CodecRows.Named(t).DefaultIfEmpty(t.VocabSize).Min();
        return new CodeBounds(t.NumCodeGroups, Math.Min(t.VocabSize, firstSpecial), t.CodePredictor.VocabSize);
    }

    /// <summary>Codes of <paramref name="codebook"/> lie in [0, Bound).</summary>
    public int Bound(int codebook) => codebook == 0 ? FirstCodebook : OtherCodebooks;

    /// <summary>Null when <paramref name="code"/> is a valid code of <paramref name="codebook"/>; else why not, worded
    /// to follow the field: "is 461, outside codebook 1's range [0, 16)".</summary>
    public string? Problem(long code, int codebook)
    {
        int bound = Bound(codebook);
        return code >= 0 && code < bound ? null : $"is {code}, outside codebook {codebook}'s range [0, {bound})";
    }

    /// <summary>The first code of <paramref name="codes"/> [frames, codebooks] out of its codebook's range, with why;
    /// null when every code is in range.</summary>
    public (int Frame, int Codebook, string Problem)? FirstProblem(long[,] codes)
    {
        ArgumentNullException.ThrowIfNull(codes);
        for (int f = 0; f < codes.GetLength(0); f++)
            for (int g = 0; g < codes.GetLength(1); g++)
                if (Problem(codes[f, g], g) is { } problem) return (f, g, problem);
        return null;
    }

    /// <summary>Throws an ArgumentException naming <paramref name="what"/>[f][g] for the first code out of range or a
    /// wrong codebook count.</summary>
    public void Check(long[,] codes, string what)
    {
        ArgumentNullException.ThrowIfNull(codes);
        if (codes.GetLength(1) != Codebooks)
            throw new ArgumentException($"{what} has {codes.GetLength(1)} codebooks per frame; this model uses {Codebooks}");
        if (FirstProblem(codes) is (var f, var g, var problem)) throw new ArgumentException($"{what}[{f}][{g}] {problem}");
    }
}
