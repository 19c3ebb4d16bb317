using System.Text;
using Qwen3Tts.Model.Text;

namespace Qwen3Tts.Tests.Text;

/// <summary>Expected forms are those of Python 3.13's unicodedata.normalize("NFC", ...); they fail if the
/// runtime normalizes nothing (InvariantGlobalization).</summary>
public class NfcNormalizerTests
{
    static string Nfc(string s) => NfcNormalizer.Instance.Normalize(s);

    [Theory]
    [InlineData("e\u0301", "\u00E9")] // compose
    [InlineData("\u00E9", "\u00E9")] // already composed
    [InlineData("a\u0301\u0316", "\u00E1\u0316")] // reorder (220 before 230), then compose past the lower class
    [InlineData("a\u0316\u0301", "\u00E1\u0316")]
    [InlineData("\u1EB9\u0302", "\u1EC7")] // ẹ + circumflex: decompose, reorder, recompose to ệ
    [InlineData("e\u0302\u0323", "\u1EC7")]
    [InlineData("\u0257\u0300 \u0199\u0301", "\u0257\u0300 \u0199\u0301")] // hooked letters have no precomposed forms
    [InlineData("\u212B", "\u00C5")] // singleton: ANGSTROM SIGN -> Å
    [InlineData("\u212A", "K")] // singleton: KELVIN SIGN -> K
    [InlineData("\u0958", "\u0915\u093C")] // composition exclusion stays decomposed
    [InlineData("\u0344", "\u0308\u0301")] // non-starter decomposition
    [InlineData("\u1100\u1161\u11A8", "\uAC01")] // Hangul L + V + T
    [InlineData("\uAC00\u11A8", "\uAC01")] // Hangul LV + T
    [InlineData("\u0301a", "\u0301a")] // a leading non-starter composes with nothing
    [InlineData("a\u0308\u0301\u0308", "\u00E4\u0301\u0308")] // a blocked mark stays
    [InlineData("\uFB01", "\uFB01")] // ligature ﬁ is a compatibility (NFKC) mapping only
    [InlineData("\U0001D15E", "\U0001D157\U0001D165")] // excluded musical symbol outside the BMP
    [InlineData("", "")]
    public void Normalizes_to_NFC(string input, string expected)
    {
        Assert.Equal(expected, Nfc(input));
        Assert.Equal(expected, NfcNormalizer.Instance.Normalize(input.AsSpan()));
    }

    [Fact]
    public void Text_already_in_NFC_is_returned_as_is()
    {
        string text = "Hello, 世界! Ẹ ku aaro. dára ɗan 한국어 👋🏽";
        Assert.Same(text, Nfc(text));
    }
}
