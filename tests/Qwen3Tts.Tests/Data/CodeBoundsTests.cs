using System.Text.Json.Nodes;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Coordinator.Data.Prepare;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Rank.Distributed;
using Qwen3Tts.Rank.Prepare;
using Qwen3Tts.Rank.Training;
using Qwen3Tts.Tests.Model;
using Qwen3Tts.Tests.Prepare;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Data;

/// <summary>One rule for codes: codebook 0 below the talker's codec vocabulary and its first special id, codebooks
/// 1..15 below the code predictor's vocabulary; every reader, the trainer, info, preflight and prepare apply it.</summary>
public class CodeBoundsTests : CleansTempDirs
{
    [Fact]
    public void The_released_models_take_codebook_0_below_the_first_special_id_and_the_rest_below_2048()
    {
        var talker = Qwen3TtsConfig.Load(Path.Combine(ConfigTests.ReferenceDir, "Qwen3-TTS-12Hz-1.7B-Base", "config.json")).Talker;
        // codec vocabulary 3072; the first special id is english's language row, 2050 (pad 2148, bos 2149, think 2154 ...).
        Assert.Equal(new CodeBounds(16, 2050, 2048), CodeBounds.Of(talker));
        var small = CodeBounds.Of(SmallPredictorTalker());
        Assert.Equal(new CodeBounds(16, 2050, 16), small);
        Assert.Null(small.Problem(461, 0));
        Assert.Equal("is 2050, outside codebook 0's range [0, 2050)", small.Problem(2050, 0));
        Assert.Null(small.Problem(15, 1));
        Assert.Equal("is 16, outside codebook 1's range [0, 16)", small.Problem(16, 1));
        Assert.Equal("is -1, outside codebook 15's range [0, 16)", small.Problem(-1, 15));
    }

    [Fact]
    public void A_model_whose_code_predictor_is_smaller_than_its_codec_vocabulary_trains()
    {
        string model = SmallPredictorModel(41);
        string data = Data(frame => Row(frame, first: 461 + frame));
        string output = TestPaths.NewTempDir("bounds-out");
        var result = new Trainer(new TrainingOptions
        {
            TrainData = data, InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 1, BatchSize = 2,
            GradientAccumulationSteps = 1,
        }, TextWriter.Null).Run();
        Assert.Equal(2, result.GlobalStep); // 4 records, batches of 2: codebook-0 codes 461.. passed the collate
        Assert.True(Directory.Exists(Path.Combine(output, "last")));
    }

    [Theory]
    [InlineData(1, 16, "audio_codes[2][1]: is 16, outside codebook 1's range [0, 16)")]
    [InlineData(0, 2050, "audio_codes[2][0]: is 2050, outside codebook 0's range [0, 2050)")]
    public void A_code_outside_its_codebook_is_refused_alike_by_the_trainer_info_and_preflight(int codebook, int code, string expected)
    {
        string model = SmallPredictorModel(42);
        string data = Data(frame => Row(frame, first: 100), badLine: 3, bad: (frame: 2, codebook, code));
        string where = $"{data}:3: {expected}";

        var trainer = Assert.Throws<DataException>(() => new Trainer(new TrainingOptions
        {
            TrainData = data, InitModelPath = model, OutputModelPath = TestPaths.NewTempDir("bounds-refused"), MixedPrecision = "fp32",
        }, TextWriter.Null).Run());
        Assert.Equal(where, trainer.Message);

        var info = DatasetInfo.Compute(data, rules: RecordRules.ForModel(model));
        Assert.Equal(where, Assert.Single(info.Malformed).ToString());
        Assert.Contains($"refused {where}", info.ToText());
        // Without the model, info judges by the speech tokenizer's 16 x 2048: codebook 1's 16 is a valid code there.
        Assert.Equal(codebook == 1 ? 0 : 1, DatasetInfo.Compute(data).Malformed.Count);

        var report = Preflight.Run(data, Preflight.ForModel(new PreflightThresholds(), model));
        var issue = Assert.Single(report.Records[2].Issues, i => i.Code == "codes_out_of_range");
        Assert.Contains(expected.Replace(":", ""), issue.Message);
        Assert.DoesNotContain(report.Records[0].Issues, i => i.Code == "codes_out_of_range");
    }

    [Fact]
    public void Prepare_refuses_codes_the_model_cannot_take_naming_the_record()
    {
        // The tiny codec emits codes up to 2047 in every codebook; this model's code predictor takes 16.
        var f = new PrepareFixture("bounds-prepare");
        string model = SmallPredictorModel(43);
        Directory.Delete(Path.Combine(model, "speech_tokenizer"), recursive: true);
        CopyDirectory(Path.Combine(f.Model, "speech_tokenizer"), Path.Combine(model, "speech_tokenizer"));
        var e = Assert.Throws<DataException>(() =>
            DistributedPrepare.Run(new PrepareOptions(f.Jsonl, f.Out("out.jsonl")), model, new SingleProcessCommunicator(), TextWriter.Null));
        Assert.Matches($@"^{System.Text.RegularExpressions.Regex.Escape(f.Jsonl)}:1: audio_codes\[\d+\]\[([1-9]|1[0-5])\]: is \d+, outside codebook \d+'s range \[0, 16\) \(this model's\)$", e.Message);

        // With the model's own codec range, the same clips prepare.
        var ok = DistributedPrepare.Run(new PrepareOptions(f.Jsonl, f.Out("ok.jsonl"), MaxSamples: 2), f.Model, new SingleProcessCommunicator(), TextWriter.Null);
        Assert.Equal(2, ok!.Written);
    }

    // -------------------------------------------------------------------------------------------------- fixtures

    static TalkerConfig SmallPredictorTalker()
    {
        var (json, source, _, _) = ModelDirectory.ResolveConfig(SmallPredictorConfig());
        return Qwen3TtsConfig.Parse(json, source).Talker;
    }

    /// <summary>The tiny preset with a 16-code predictor: the talker still has its 3072-row codec vocabulary.</summary>
    static string SmallPredictorConfig()
    {
        string dir = TestPaths.NewTempDir("bounds-config");
        var (json, _, _, _) = ModelDirectory.ResolveConfig("tiny");
        json["talker_config"]!["code_predictor_config"]!["vocab_size"] = 16;
        string path = Path.Combine(dir, ModelDirectory.ConfigFile);
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }

    static string SmallPredictorModel(ulong seed)
    {
        string dir = TestPaths.NewTempDir("bounds-model");
        var config = ModelDirectory.CreateRandom(dir, SmallPredictorConfig(), seed, ScalarType.Float32);
        Assert.Equal(3072, config.Talker.VocabSize);
        Assert.Equal(16, config.Talker.CodePredictor.VocabSize);
        return dir;
    }

    static long[] Row(int frame, int first) => [first, .. Enumerable.Range(1, 15).Select(g => (long)((frame + g) % 16))];

    /// <summary>4 demo records (text, reference clip) with their codes replaced: 6 frames each from <paramref name="row"/>,
    /// and on <paramref name="badLine"/> one code set to a bad value.</summary>
    static string Data(Func<int, long[]> row, int badLine = 0, (int frame, int codebook, int code) bad = default)
    {
        string demo = Training.TrainingFixture.DemoData(4, tag: "bounds-data");
        var lines = File.ReadAllLines(demo).Select((text, i) =>
        {
            var o = JsonNode.Parse(text)!.AsObject();
            var frames = new JsonArray(Enumerable.Range(0, 6).Select(f =>
            {
                var codes = row(f);
                if (i + 1 == badLine && f == bad.frame) codes[bad.codebook] = bad.code;
                return (JsonNode)new JsonArray(codes.Select(c => (JsonNode)c).ToArray());
            }).ToArray());
            o["audio_codes"] = frames;
            return o.ToJsonString();
        });
        File.WriteAllLines(demo, lines);
        return demo;
    }

    static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (string dir in Directory.GetDirectories(from)) CopyDirectory(dir, Path.Combine(to, Path.GetFileName(dir)));
    }
}
