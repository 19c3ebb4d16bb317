using Qwen3Tts.Model.Text;

namespace Qwen3Tts.Tests.Text;

/// <summary>tests/data/expected_ids.json holds ids of the real Hugging Face tokenizer; ours must equal them exactly.</summary>
public class ExpectedIdsTests
{
    public static TheoryData<int, string> AllCases() => Cases(_ => true);

    /// <summary>Cases with no Qwen3-TTS-only added token in the text, where both tokenizers must agree.</summary>
    public static TheoryData<int, string> CasesWithoutTtsOnlyTokens() =>
        Cases(c => !TextTestSupport.TtsOnlyAddedTokens.Any(token => c.Text.Contains(token, StringComparison.Ordinal)));

    static TheoryData<int, string> Cases(Func<ReferenceCase, bool> keep)
    {
        var data = new TheoryData<int, string>();
        foreach (var c in TextTestSupport.ReferenceCases.Where(keep)) data.Add(c.Index, c.Text);
        return data;
    }

    [Theory]
    [MemberData(nameof(AllCases))]
    public void Every_case_matches_with_the_added_tokens_of_the_tokenizer_that_made_it(int index, string text)
    {
        var expected = TextTestSupport.ReferenceCases[index];
        Assert.Equal(text, expected.Text);
        Assert.Equal(expected.Ids, TextTestSupport.Qwen3.Encode(text));
    }

    [Theory]
    [MemberData(nameof(CasesWithoutTtsOnlyTokens))]
    public void The_Qwen3_TTS_tokenizer_matches_every_case_without_a_TTS_only_token(int index, string text)
    {
        Assert.Equal(TextTestSupport.ReferenceCases[index].Ids, TextTestSupport.Qwen3Tts.Encode(text));
    }

    [Fact]
    public void Only_the_two_tts_token_cases_differ_and_there_each_TTS_token_is_one_id()
    {
        var differing = TextTestSupport.ReferenceCases
            .Where(c => !TextTestSupport.Qwen3Tts.Encode(c.Text).SequenceEqual(c.Ids)).ToList();
        Assert.Equal(2, differing.Count);

        // Reference: "<tts_pad>" etc. as plain text (62752, 2576, ...); Qwen3-TTS: one added token each.
        int[] tokens = [151671, 151672, 151673, 151667, 151668, 151643];
        Assert.Equal(tokens, TextTestSupport.Qwen3Tts.Encode(differing[0].Text));
        Assert.Equal([151644, 77091, 198, .. tokens, 151645, 198, 151644, 77091, 198],
            TextTestSupport.Qwen3Tts.Encode(differing[1].Text));
    }

    [Fact]
    public void The_reference_pre_tokenizer_pattern_is_the_default()
    {
        Assert.Equal(Qwen3TextTokenizer.DefaultPreTokenizerPattern, TextTestSupport.ReferencePattern);
        Assert.Equal(42, TextTestSupport.ReferenceCases.Count);
    }
}
