using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Model.Text;
using Qwen3Tts.Rank.Training;

namespace Qwen3Tts.Tests.Training;

/// <summary>A record's language (or --language for all) puts its codec tag into the training prompt, as generation does;
/// a language the model has no tag for, or "auto", trains with the no-language prefix.</summary>
public class LanguageTagsTests : CleansTempDirs
{
    static readonly Qwen3TtsConfig Config = Presets.Config("tiny");

    static IReadOnlyList<TrainingRecord> Records(string data, params string?[] languages) =>
        JsonlTrainingData.Read(data).Select((r, i) => r with { Language = languages[i % languages.Length] }).ToList();

    [Fact]
    public void Each_record_trains_with_its_languages_tag_and_an_unknown_one_with_none()
    {
        string data = TrainingFixture.DemoData(4, tag: "language-data");
        var records = Records(data, "english", "hausa", null, "Chinese");
        var languages = new LanguageChoice(Config.Talker);
        Assert.Equal([2050, null, null, 2055], records.Select(languages.IdOf));
        Assert.Equal("language tags: (none) 1 (no tag: the auto prefix), chinese 1 (row 2055), english 1 (row 2050), hausa 1 (no tag: the auto prefix; the model has no tag for it)",
            languages.Describe(records));

        var source = new SftDataSource(records, Qwen3TextTokenizer.FromEmbeddedReference(), Config, languages.IdOf);
        using var batch = source.Batch([0, 1]);
        var codec = batch.InputIds[.., .., 1];
        var t = Config.Talker;
        Assert.Equal([t.CodecThinkId, t.CodecThinkBosId, 2050, t.CodecThinkEosId, 0], codec[0, 3..8].data<long>().ToArray());
        Assert.Equal([t.CodecNothinkId, t.CodecThinkBosId, t.CodecThinkEosId, 0], codec[1, 3..7].data<long>().ToArray());
        Assert.Equal([7L, 6L], Enumerable.Range(0, 2).Select(b => (long)batch.SpeakerMask[b, .., 0].nonzero()[0, 0].item<long>()));
        // One row longer with a tag: the plan's memory and the context rule count it.
        int Ids(int i) => Qwen3TextTokenizer.FromEmbeddedReference().EncodeChat(records[i].Text).Count;
        Assert.Equal(SftCollate.SequenceLength(Ids(0), records[0].AudioCodes.Frames) + 1 - 1, source.Shapes[0].Positions);
        Assert.Equal(SftCollate.SequenceLength(Ids(1), records[1].AudioCodes.Frames) - 1, source.Shapes[1].Positions);

        // --language for all records, and auto for none.
        Assert.All(records, r => Assert.Equal(2050, new LanguageChoice(t, "english").IdOf(r)));
        Assert.All(records, r => Assert.Null(new LanguageChoice(t, "auto").IdOf(r)));
    }

    [Fact]
    public void The_context_rule_counts_the_language_row()
    {
        var rules = new RecordRules(Config, Qwen3TextTokenizer.FromEmbeddedReference().EncodeChat);
        int limit = Config.Talker.MaxPositionEmbeddings;
        var ids = Enumerable.Repeat(9707, 20).ToArray();
        int frames = limit - SftCollate.SequenceLength(ids.Length, 0); // exactly the limit without a tag
        Assert.Null(rules.Problem("x", ids, frames, "hausa"));
        Assert.Null(rules.Problem("x", ids, frames, null));
        Assert.Contains($"the training sequence is {limit + 1} positions", rules.Problem("x", ids, frames, "english")?.Reason);
        Assert.Null((rules with { Language = "auto" }).Problem("x", ids, frames, "english"));
    }
}
