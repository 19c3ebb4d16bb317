using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Qwen3Tts.Model.Text;

/// <summary>Splits text with a regex the way Hugging Face's Split pre-tokenizer with behavior "Isolated" does:
/// every match is a piece, and so is every stretch of text between two matches; empty matches are skipped.</summary>
/// <remarks>Own code instead of Microsoft.ML.Tokenizers' RegexPreTokenizer for two reasons. (1) .NET's Regex
/// works on UTF-16 code units, so \p{L} never matches a letter outside the BMP (𠀀, 𝐀) and [^\s\p{L}\p{N}]
/// matches half of one, where Hugging Face (Oniguruma) matches whole code points: "𝐀's" would split as
/// "𝐀'" + "s" instead of "𝐀" + "'s" and give other ids. Here a text with surrogate pairs is matched through a
/// stand-in that has one char per code point, a BMP char of the same Unicode category; the pieces are then
/// mapped back. That is exact for patterns whose classes are categories (\p{..}, \s) and BMP literals, as the
/// Qwen2 pattern's are. (2) RegexPreTokenizer drops the text between matches, where "Isolated" keeps it.</remarks>
public sealed class CodePointRegexPreTokenizer(Regex regex) : PreTokenizer
{
    public Regex Regex { get; } = regex ?? throw new ArgumentNullException(nameof(regex));

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) =>
        PreTokenize((text ?? throw new ArgumentNullException(nameof(text))).AsSpan());

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text)
    {
        var pieces = new List<(int Offset, int Length)>();
        if (text.IndexOfAnyInRange('\uD800', '\uDFFF') < 0)
        {
            Split(text, offsets: null, pieces);
            return pieces;
        }

        // stand-in[k] stands for the code point at text offset offsets[k]; offsets[n] = text.Length.
        var standIn = new char[text.Length];
        var offsets = new int[text.Length + 1];
        int n = 0;
        for (int i = 0; i < text.Length; i++, n++)
        {
            offsets[n] = i;
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                standIn[n] = StandInFor(Rune.GetUnicodeCategory(new Rune(text[i], text[i + 1])));
                i++;
            }
            else
            {
                standIn[n] = text[i]; // lone surrogates stay (category Surrogate); they are not valid text anyway
            }
        }
        offsets[n] = text.Length;
        Split(standIn.AsSpan(0, n), offsets, pieces);
        return pieces;
    }

    void Split(ReadOnlySpan<char> text, int[]? offsets, List<(int Offset, int Length)> pieces)
    {
        int done = 0;
        foreach (var match in Regex.EnumerateMatches(text))
        {
            if (match.Length == 0) continue;
            if (match.Index > done) Add(done, match.Index);
            Add(match.Index, match.Index + match.Length);
            done = match.Index + match.Length;
        }
        if (done < text.Length) Add(done, text.Length);

        void Add(int start, int end)
        {
            if (offsets is not null) (start, end) = (offsets[start], offsets[end]);
            pieces.Add((start, end - start));
        }
    }

    /// <summary>A BMP char, outside ASCII, of the given general category: what the regex sees in place of a
    /// code point of that category outside the BMP.</summary>
    public static char StandInFor(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter => '\u0391', // Α
        UnicodeCategory.LowercaseLetter => '\u03B1', // α
        UnicodeCategory.TitlecaseLetter => '\u01C5', // ǅ
        UnicodeCategory.ModifierLetter => '\u02B0', // ʰ
        UnicodeCategory.OtherLetter => '\u05D0', // א
        UnicodeCategory.NonSpacingMark => '\u0300',
        UnicodeCategory.SpacingCombiningMark => '\u0903',
        UnicodeCategory.EnclosingMark => '\u20DD',
        UnicodeCategory.DecimalDigitNumber => '\u0660', // ٠
        UnicodeCategory.LetterNumber => '\u2160', // Ⅰ
        UnicodeCategory.OtherNumber => '\u00B2', // ²
        UnicodeCategory.SpaceSeparator => '\u00A0',
        UnicodeCategory.LineSeparator => '\u2028',
        UnicodeCategory.ParagraphSeparator => '\u2029',
        UnicodeCategory.Control => '\u0080',
        UnicodeCategory.Format => '\u00AD',
        UnicodeCategory.Surrogate => '\uD800',
        UnicodeCategory.PrivateUse => '\uE000',
        UnicodeCategory.ConnectorPunctuation => '\u203F', // ‿
        UnicodeCategory.DashPunctuation => '\u2010', // ‐
        UnicodeCategory.OpenPunctuation => '\u2045', // ⁅
        UnicodeCategory.ClosePunctuation => '\u2046', // ⁆
        UnicodeCategory.InitialQuotePunctuation => '\u00AB', // «
        UnicodeCategory.FinalQuotePunctuation => '\u00BB', // »
        UnicodeCategory.OtherPunctuation => '\u00A1', // ¡
        UnicodeCategory.MathSymbol => '\u00AC', // ¬
        UnicodeCategory.CurrencySymbol => '\u00A2', // ¢
        UnicodeCategory.ModifierSymbol => '\u02C2', // ˂
        UnicodeCategory.OtherSymbol => '\u00A6', // ¦
        UnicodeCategory.OtherNotAssigned => '\uFFFF', // a noncharacter, unassigned for good
        _ => throw new ArgumentOutOfRangeException(nameof(category), category, "not a Unicode general category"),
    };
}
