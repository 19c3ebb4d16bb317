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
        var e = Assert.Throws<DataException>(() => new Trainer(o, TextWriter.Null).Run());
        Assert.StartsWith($"{data}:5: audio_codes: the training sequence is 40", e.Message);
        Assert.Contains("above the talker's max_position_embeddings 32768", e.Message);
        Assert.False(Directory.Exists(Path.Combine(output, "last")));

        var log = new StringWriter();
        var result = new Trainer(o with { SkipBadSamples = true }, log).Run();
        Assert.Equal(2, result.GlobalStep); // the 4 good records
        var report = File.ReadAllLines(Path.Combine(output, "skipped_train_samples.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal([(5, "audio_codes"), (6, "text_ids[3]")], report.Select(r => ((int)r["line"]!, (string)r["field"]!)));
        Assert.Contains("skipped 2 malformed train records", log.ToString());
    }
}
