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

    [Fact]
    public void An_added_language_takes_a_free_row_starts_at_the_mean_of_the_language_rows_and_is_kept()
    {
        var t = Config.Talker;
        var (added, row, isNew) = CodecRows.AddLanguage(Config, "Hausa");
        Assert.True(isNew);
        Assert.DoesNotContain(row, CodecRows.Named(t));
        Assert.True(row >= CodeBounds.Of(t).FirstCodebook && row < t.VocabSize);
        Assert.Equal(CodeBounds.Of(t), CodeBounds.Of(added.Talker)); // codebook 0's range is untouched
        Assert.Equal(row, added.Talker.CodecLanguageId["hausa"]);
        Assert.Equal((added, row, false), CodecRows.AddLanguage(added, "hausa")); // once only
        Assert.Equal(t.CodecLanguageId["english"], CodecRows.AddLanguage(Config, "English").Row);

        using var model = new Qwen3TtsModel(added);
        ModelInit.Initialize(model, 3, 0.02);
        AddedLanguage.Initialize(model, added, row);
        var codec = model.state_dict()[AddedLanguage.CodecEmbedding];
        using var others = codec.index_select(0, TorchSharp.torch.tensor(t.CodecLanguageId.Values.Select(v => (long)v).ToArray()));
        Assert.True(codec[row].allclose(others.mean([0L]), rtol: 0, atol: 1e-7));

        // A vocabulary with every row above the codes taken refuses with the numbers.
        var json = (System.Text.Json.Nodes.JsonObject)Config.Json.DeepClone();
        var full = new System.Text.Json.Nodes.JsonObject();
        for (int r = CodeBounds.Of(t).FirstCodebook; r < t.VocabSize; r++) full[$"speaker_{r}"] = r;
        json["talker_config"]!["spk_id"] = full;
        var e = Assert.Throws<ConfigException>(() => CodecRows.AddLanguage(Qwen3TtsConfig.Parse(json, "full"), "hausa"));
        Assert.Contains("has no free row left", e.Message);
    }

    [Fact]
    public void A_run_with_an_added_language_trains_its_row_and_the_export_speaks_it()
    {
        string model = TrainingFixture.TinyModel(23, "add-language-model");
        string output = TestPaths.NewTempDir("add-language-out");
        var log = new StringWriter();
        new Trainer(new TrainingOptions
        {
            TrainData = TrainingFixture.DemoData(4, tag: "add-language-data"), InitModelPath = model, OutputModelPath = output,
            MixedPrecision = "fp32", NumEpochs = 1, BatchSize = 2, GradientAccumulationSteps = 1, Lr = 1e-2, LrScheduler = "constant",
            AddLanguage = "hausa", SpeakerName = "amina", Coordinator = "off",
        }, log).Run();
        int row = CodecRows.LowestFree(Config.Talker)!.Value;
        Assert.Contains($"added language 'hausa': codec row {row}", log.ToString());
        Assert.Contains("language tags: hausa 4 (row " + row + ")", log.ToString()); // the demo records say hausa

        foreach (string dir in new[] { "last", "custom_voice" })
            Assert.Equal(row, Qwen3TtsConfig.Load(Path.Combine(output, dir, ModelDirectory.ConfigFile)).Talker.CodecLanguageId["hausa"]);
        // Trained: the row moved away from where it started (the mean of the language rows of the base weights).
        using (var before = Qwen3Tts.Model.Checkpoint.CheckpointFiles.Open(model))
        using (var after = Qwen3Tts.Model.Checkpoint.CheckpointFiles.Open(Path.Combine(output, "last")))
        {
            var start = before.Read(AddedLanguage.CodecEmbedding).index_select(0, TorchSharp.torch.tensor(Config.Talker.CodecLanguageId.Values.Select(v => (long)v).ToArray())).mean([0L]);
            Assert.False(after.Read(AddedLanguage.CodecEmbedding)[row].allclose(start, rtol: 0, atol: 1e-6));
        }
        // The export speaks hausa with the prompt it was trained on: the language's row in the codec prefix.
        using var voice = ModelDirectory.Load(Path.Combine(output, "custom_voice"));
        var (positions, _) = new Qwen3Tts.Model.Generation.PromptBuilder(voice, Qwen3TextTokenizer.FromEmbeddedReference())
            .Describe(new Qwen3Tts.Model.Generation.SynthesisRequest { Text = "Sannu.", Language = "hausa", Speaker = "amina" });
        Assert.Contains(positions, p => p.Codec == $"language:{row}");
    }
}
