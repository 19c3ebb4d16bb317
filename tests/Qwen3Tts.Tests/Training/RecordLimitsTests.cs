using System.Text.Json.Nodes;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Rank.Training;

namespace Qwen3Tts.Tests.Training;

/// <summary>Every record is checked against the model before the first step: text ids within the vocabulary, the
/// training sequence within max_position_embeddings. A refusal names file, line and field and comes before any batch is
/// built (a runaway sequence used to allocate tens of GB in the causal mask); --skip_bad_samples trains on the rest.</summary>
public class RecordLimitsTests : CleansTempDirs
{
    [Fact]
    public void The_sequence_length_is_the_collates_and_the_limit_is_the_talkers()
    {
        var config = Qwen3Tts.Model.Config.Presets.Config("tiny");
        // Chat ids: 3 prefix + text + 5 trailing; rows: text + 3, then the frames, then the 8 prefix rows.
        Assert.Equal(4 - 5 + 6 + 8, SftCollate.SequenceLength(4, 6));
        int limit = config.Talker.MaxPositionEmbeddings;
        int[] Ids(int count) => Enumerable.Repeat(100, count).ToArray();
        Assert.Null(SftCollate.Problem(Ids(limit - 8 + 5 - 6), 6, config)); // exactly the limit
        var over = SftCollate.Problem(Ids(limit - 8 + 5 - 6), 7, config);
        Assert.Equal("audio_codes", over?.Field);
        Assert.Contains($"the training sequence is {limit + 1} positions", over?.Reason);
        Assert.Equal(("text_ids[2]", $"is {config.Talker.TextVocabSize}, outside the text vocabulary [0, {config.Talker.TextVocabSize})"),
            SftCollate.Problem([1, 2, config.Talker.TextVocabSize, 4, 5, 6, 7, 8, 9], 3, config));
    }

    [Fact]
    public void Records_the_model_cannot_take_are_refused_before_training_or_skipped_and_listed()
    {
        string model = TrainingFixture.TinyModel(61, "limits-model");
        string data = TrainingFixture.DemoData(4, tag: "limits-data");
        var lines = File.ReadAllLines(data).ToList();
        // Line 5: far beyond the talker's 32768 positions. Line 6: a text id outside the vocabulary.
        var runaway = JsonNode.Parse(lines[0])!.AsObject();
        runaway["text_ids"] = new JsonArray(Enumerable.Repeat(100, 40_000).Select(i => (JsonNode)i).ToArray());
        var foreign = JsonNode.Parse(lines[1])!.AsObject();
        foreign["text_ids"] = new JsonArray(new[] { 151644, 77091, 198, 200_000, 151645, 198, 151644, 77091, 198 }.Select(i => (JsonNode)i).ToArray());
        File.WriteAllLines(data, [.. lines, runaway.ToJsonString(), foreign.ToJsonString()]);

        string output = TestPaths.NewTempDir("limits-out");
        var o = new TrainingOptions
        {
            TrainData = data, InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 1, BatchSize = 2,
            GradientAccumulationSteps = 1,
        };
        // Both refusals at once, before any step; an empty line between the records is a warning with its number.
        File.AppendAllText(data, "\n");
        var e = Assert.Throws<DataException>(() => new Trainer(o, TextWriter.Null).Run());
        Assert.Equal(2, e.Count);
        Assert.StartsWith($"{data}: 2 records cannot be used; --skip_bad_samples", e.Message);
        Assert.StartsWith($"{data}:5: audio_codes: the training sequence is 40", e.Details[0]);
        Assert.Contains("above the talker's max_position_embeddings 32768", e.Details[0]);
        Assert.StartsWith($"{data}:6: text_ids[3]: is 200000, outside the text vocabulary", e.Details[1]);
        Assert.False(Directory.Exists(Path.Combine(output, "last")));

        // --max_frames (or --max_seconds) refuses the longer targets too, naming the limit.
        int longest = File.ReadAllLines(data).Take(4).Max(l => JsonNode.Parse(l)!["audio_codes"]!.AsArray().Count);
        var limited = Assert.Throws<DataException>(() => new Trainer(o with { MaxSeconds = (longest - 1) / 12.5 }, TextWriter.Null).Run());
        Assert.Contains($"above the limit of {longest - 1} frames", string.Join("\n", limited.Details));

        var log = new StringWriter();
        var result = new Trainer(o with { SkipBadSamples = true }, log).Run();
        Assert.Equal(2, result.GlobalStep); // the 4 good records
        var report = File.ReadAllLines(Path.Combine(output, "skipped_train_samples.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal([(5, "audio_codes"), (6, "text_ids[3]")], report.Select(r => ((int)r["line"]!, (string)r["field"]!)));
        Assert.Contains("skipped 2 malformed train records", log.ToString());
        Assert.Contains($"warning: {data}: blank line 7 skipped", log.ToString());
    }

    [Fact]
    public void A_stopped_run_lists_the_first_twenty_refusals_and_counts_the_rest()
    {
        var refusals = new Refusals(skip: false);
        for (int line = 1; line <= 25; line++) refusals.Add(new BadRecord("d.jsonl", line, "text", "is empty"));
        refusals.AddBlankLine("d.jsonl", 30);
        var e = Assert.Throws<DataException>(() => refusals.ThrowIfAny());
        Assert.Equal("d.jsonl: 25 records cannot be used (the first 20 listed); " + Refusals.SkipHint, e.Message);
        Assert.Equal(21, e.Details.Count);
        Assert.Equal("d.jsonl:20: text: is empty", e.Details[19]);
        Assert.Equal("... and 5 more", e.Details[20]);
        Assert.Equal("d.jsonl: blank line 30 skipped", refusals.BlankLineWarning);
        var files = new Refusals(skip: false);
        files.Add(new BadRecord("a.parquet", 1, "text", "is empty"));
        files.Add(new BadRecord("b.parquet", 1, "text", "is empty"));
        Assert.StartsWith("2 records in 2 files cannot be used; ", Assert.Throws<DataException>(() => files.ThrowIfAny()).Message);

        // Skipping keeps every one for the report and never throws; one refusal reads as itself.
        var skip = new Refusals(skip: true);
        for (int line = 1; line <= 25; line++) skip.Add(new BadRecord("d.jsonl", line, "text", "is empty"));
        skip.ThrowIfAny();
        Assert.Equal(25, skip.Kept.Count);
        var one = new Refusals(skip: false);
        one.Add(new BadRecord("d.jsonl", 3, "text", "is empty"));
        Assert.Equal("d.jsonl:3: text: is empty", Assert.Throws<DataException>(() => one.ThrowIfAny()).Message);
    }

    [Fact]
    public void The_frame_limit_is_the_smaller_of_max_frames_and_max_seconds()
    {
        Assert.Null(RecordRules.FrameLimit(null, null));
        Assert.Equal(100, RecordRules.FrameLimit(100, null));
        Assert.Equal(125, RecordRules.FrameLimit(null, 10));
        Assert.Equal(100, RecordRules.FrameLimit(100, 10));
        Assert.Equal(62, RecordRules.FrameLimit(200, 4.99)); // 62.375 frames: whole frames only
    }
}
