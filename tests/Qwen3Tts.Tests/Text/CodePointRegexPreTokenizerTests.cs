using System.Globalization;
using System.Text.RegularExpressions;
using Qwen3Tts.Model.Text;

namespace Qwen3Tts.Tests.Text;

public class CodePointRegexPreTokenizerTests
{
    static readonly CodePointRegexPreTokenizer Qwen2 = new(new Regex(Qwen3TextTokenizer.DefaultPreTokenizerPattern));

    static string[] Pieces(CodePointRegexPreTokenizer pre, string text) =>
        pre.PreTokenize(text).Select(p => text.Substring(p.Offset, p.Length)).ToArray();

    [Fact]
    public void Splits_as_the_Qwen2_pattern_does()
    {
        Assert.Equal(["Hello", ",", " world", "!", " I", "'m", " ", "1", "2", "3", "\n\n", "  ", " x"],
            Pieces(Qwen2, "Hello, world! I'm 123\n\n   x"));
    }

    [Fact]
    public void Sees_a_code_point_outside_the_BMP_as_one_character_of_its_category()
    {
        // 𝐀 (U+1D400) is a letter, 𝟏 (U+1D7CF) a digit, 😀 a symbol, each two UTF-16 code units.
        Assert.Equal(["\U0001D400", "'s"], Pieces(Qwen2, "\U0001D400's"));
        Assert.Equal([" a\U0001D400b"], Pieces(Qwen2, " a\U0001D400b"));
        Assert.Equal(["1", "\U0001D7CF", "2"], Pieces(Qwen2, "1\U0001D7CF2"));
        Assert.Equal(["\U0001F600abc"], Pieces(Qwen2, "\U0001F600abc"));
        // A lone surrogate is left as it is: one non-letter char, like punctuation before a word.
        Assert.Equal(["x", "\uD800y"], Pieces(Qwen2, "x\uD800y"));
    }

    [Fact]
    public void Keeps_the_text_between_matches_as_pieces()
    {
        var digits = new CodePointRegexPreTokenizer(new Regex(@"\d+"));
        Assert.Equal(["ab", "12", "c\U0001D400", "3"], Pieces(digits, "ab12c\U0001D4003"));
        Assert.Empty(Pieces(digits, ""));
    }

    [Fact]
    public void Every_stand_in_has_the_category_it_stands_for()
    {
        foreach (var category in Enum.GetValues<UnicodeCategory>())
        {
            char standIn = CodePointRegexPreTokenizer.StandInFor(category);
            Assert.Equal(category, char.GetUnicodeCategory(standIn));
            Assert.True(standIn > 0x7F, $"{category}: stand-in must not be ASCII, which patterns name literally");
        }
    }
}
