using System.Text.Json.Nodes;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Rank.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Training;

/// <summary>The single-process trainer end to end on the tiny preset and the bundled demo data.</summary>
public class TrainerTests : CleansTempDirs
{
    static string TinyModel(ulong seed = 0) => TrainingFixture.TinyModel(seed);

    static string DemoSubset(int records, int copies) => TrainingFixture.DemoData(records, copies);

    static TrainingOptions Options(string model, string data, string output) => new()
    {
        TrainData = data,
        InitModelPath = model,
        OutputModelPath = output,
        MixedPrecision = "fp32",
        LoggingSteps = 1000,
        NumEpochs = 1,
        WarmupSteps = 0,
        LrScheduler = "constant",
    };

    static Dictionary<string, Tensor> Weights(string dir)
    {
        using var files = CheckpointFiles.Open(dir);
        return files.Entries.ToDictionary(e => e.Name, e => files.Read(e.Name));
    }

    [Fact]
    public void Overfits_two_samples_to_near_zero_loss()
    {
        string output = TestPaths.NewTempDir("overfit");
        var o = Options(TinyModel(), DemoSubset(2, 150), output) with { BatchSize = 2, GradientAccumulationSteps = 1, Lr = 5e-3 };
        var log = new StringWriter();
        var result = new Trainer(o, log).Run();
        Assert.Equal(150, result.GlobalStep);
        Assert.True(result.LastLoss < 0.1, $"final loss {result.LastLoss}\n{log}");
    }

    [Fact]
    public void Accumulating_k_micro_batches_equals_one_k_times_batch()
    {
        string model = TinyModel(1), data = DemoSubset(8, 1);
        string a = TestPaths.NewTempDir("accum-a"), b = TestPaths.NewTempDir("accum-b");
        // 8 samples: one step of a batch of 8, and one step of 4 micro-batches of 2 (the same global batch).
        new Trainer(Options(model, data, a) with { BatchSize = 8, GradientAccumulationSteps = 1, Lr = 1e-3 }, TextWriter.Null) { StopAfterSteps = 1 }.Run();
        new Trainer(Options(model, data, b) with { BatchSize = 2, GradientAccumulationSteps = 4, Lr = 1e-3 }, TextWriter.Null) { StopAfterSteps = 1 }.Run();
        using var scope = NewDisposeScope();
        var wa = Weights(Path.Combine(a, "last"));
        var wb = Weights(Path.Combine(b, "last"));
        var w0 = Weights(model);
        // fp32 sums in a different order (and over differently padded micro-batches) differ in the last bits. AdamW's first
        // step moves each weight by lr·g/(|g| + eps): about lr = 1e-3 where |g| ≫ eps, so a real difference in the gradient
        // shows as ~1e-3. Where |g| is near eps = 1e-8 (cancelling sums) a last-bits change of g moves the update by a few
        // 1e-6 (seen: 5e-6). 2e-5 (2 % of lr) admits that and nothing real.
        foreach (var (name, t) in wa)
            Assert.True(t.allclose(wb[name], rtol: 0, atol: 2e-5), $"{name}: max |Δ| {(t - wb[name]).abs().max().item<float>():E2}");
        Assert.False(wa["talker.codec_head.weight"].equal(w0["talker.codec_head.weight"]).all().item<bool>()); // it did train
    }

    [Fact]
    public void Resuming_gives_bit_identical_weights_to_an_uninterrupted_run()
    {
        string model = TinyModel(2), data = DemoSubset(8, 1);
        string whole = TestPaths.NewTempDir("whole"), split = TestPaths.NewTempDir("split");
        var o = Options(model, data, whole) with { BatchSize = 2, GradientAccumulationSteps = 1, NumEpochs = 2, Lr = 1e-3, LrScheduler = "cosine", WarmupSteps = 2 };
        new Trainer(o, TextWriter.Null).Run();
        new Trainer(o with { OutputModelPath = split }, TextWriter.Null) { StopAfterSteps = 5 }.Run(); // stops mid-epoch 1
        var result = new Trainer(o with { OutputModelPath = split, ResumeFromCheckpoint = "latest" }, TextWriter.Null).Run();
        Assert.Equal(8, result.GlobalStep);
        Assert.Equal(File.ReadAllBytes(Path.Combine(whole, "last", "model.safetensors")), File.ReadAllBytes(Path.Combine(split, "last", "model.safetensors")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(whole, "last", "training_state", "optimizer.safetensors")),
            File.ReadAllBytes(Path.Combine(split, "last", "training_state", "optimizer.safetensors")));
    }

    [Fact]
    public void Checkpoints_keep_the_speaker_encoder_and_the_export_is_a_custom_voice()
    {
        string model = TinyModel(3), output = TestPaths.NewTempDir("export");
        var data = DemoSubset(4, 1);
        new Trainer(Options(model, data, output) with { BatchSize = 2, GradientAccumulationSteps = 1, SpeakerName = "amina" }, TextWriter.Null).Run();
        foreach (var dir in new[] { "last", "epoch-1" })
        {
            Assert.True(ModelInspector.Inspect(Path.Combine(output, dir)).IsValid, dir);
            Assert.Contains(Weights(Path.Combine(output, dir)).Keys, k => k.StartsWith("speaker_encoder.")); // #204
        }

        string voice = Path.Combine(output, "custom_voice");
        var config = Qwen3TtsConfig.Load(Path.Combine(voice, "config.json"));
        Assert.Equal("custom_voice", config.TtsModelType);
        Assert.Equal(3000, config.Talker.SpkId["amina"]);
        Assert.Null(config.Talker.SpkIsDialect["amina"]);
        using var scope = NewDisposeScope();
        using var exported = ModelDirectory.Load(voice); // strict: exactly the custom_voice layout
        Assert.Null(exported.SpeakerEncoder);

        // Row 3000 is the speaker embedding of the (shared) reference clip, computed here independently.
        using var base_ = ModelDirectory.Load(model);
        var clip = Resampler.LoadMono24k(Path.Combine(Path.GetDirectoryName(data)!, "ref_voice.wav"));
        Tensor expected;
        using (no_grad()) expected = base_.SpeakerEncoder!.Embed(tensor(clip.Samples).unsqueeze(0))[0];
        var row = Weights(voice)["talker.model.codec_embedding.weight"][3000];
        Assert.True(row.allclose(expected, rtol: 1e-5, atol: 1e-6));
        var trained = Weights(Path.Combine(output, "last"))["talker.model.codec_embedding.weight"];
        Assert.True(Weights(voice)["talker.model.codec_embedding.weight"][2999].equal(trained[2999]).all().item<bool>());
    }

    [Fact]
    public void Bf16_mixed_precision_trains_and_keeps_fp32_checkpoints()
    {
        string output = TestPaths.NewTempDir("bf16");
        // Random pairs (--bucket_window 0): with two distinct samples, length grouping makes every batch two copies of one
        // sample, and the last step's loss would then score a single sample.
        var o = Options(TinyModel(4), DemoSubset(2, 20), output) with { BatchSize = 2, GradientAccumulationSteps = 1, Lr = 3e-3, MixedPrecision = "bf16", BucketWindow = 0 };
        var result = new Trainer(o, TextWriter.Null).Run();
        Assert.True(result.LastLoss < 4, $"final loss {result.LastLoss}");
        using var files = CheckpointFiles.Open(Path.Combine(output, "last"));
        Assert.All(files.Entries, e => Assert.Equal("F32", e.Dtype));
    }

    [Fact]
    public void Bad_records_stop_the_run_or_are_skipped_with_a_report()
    {
        string data = DemoSubset(3, 1);
        var lines = File.ReadAllLines(data).ToList();
        var bad = JsonNode.Parse(lines[1])!.AsObject();
        bad["audio_codes"]![0]![3] = 4096;
        lines[1] = bad.ToJsonString();
        File.WriteAllLines(data, lines);
        string model = TinyModel(5);

        var e = Assert.Throws<DataException>(() => new Trainer(Options(model, data, TestPaths.NewTempDir("bad")), TextWriter.Null).Run());
        Assert.Contains("train.jsonl:2: audio_codes[0][3]", e.Message);

        string output = TestPaths.NewTempDir("skip");
        var result = new Trainer(Options(model, data, output) with { SkipBadSamples = true, BatchSize = 2 }, TextWriter.Null).Run();
        Assert.Equal(1, result.GlobalStep);
        string report = File.ReadAllText(Path.Combine(output, "skipped_train_samples.jsonl"));
        Assert.Contains("audio_codes[0][3]", report);
    }
}

public class TrainerAudioCheckTests : CleansTempDirs
{
    [Fact]
    public void An_unreadable_reference_clip_is_reported_before_training_or_skipped()
    {
        string model = TrainingFixture.TinyModel(6);
        string data = TrainingFixture.DemoData(4);
        string dir = Path.GetDirectoryName(data)!;
        File.WriteAllText(Path.Combine(dir, "broken.wav"), "RIFF but not really");
        var lines = File.ReadAllLines(data).ToList();
        var broken = JsonNode.Parse(lines[2])!.AsObject();
        broken["ref_audio"] = "broken.wav";
        lines[2] = broken.ToJsonString();
        File.WriteAllLines(data, lines);
        var o = new TrainingOptions { TrainData = data, InitModelPath = model, OutputModelPath = TestPaths.NewTempDir("audio-out"), MixedPrecision = "fp32", NumEpochs = 1, BatchSize = 2, GradientAccumulationSteps = 1 };

        var log = new StringWriter();
        var e = Assert.Throws<DataException>(() => new Trainer(o, log).Run());
        Assert.Contains("train.jsonl:3: ref_audio", e.Message);
        Assert.Contains("broken.wav", e.Message);
        Assert.DoesNotContain("step", log.ToString()); // nothing trained

        var result = new Trainer(o with { SkipBadSamples = true }, TextWriter.Null).Run();
        Assert.Equal(2, result.GlobalStep); // the 3 good records in batches of 2
        string report = File.ReadAllText(Path.Combine(o.OutputModelPath, "skipped_train_samples.jsonl"));
        Assert.Contains("\"line\":3", report.Replace(" ", ""));
        Assert.Contains("ref_audio", report);
    }
}

public class TrainerWandbTests : CleansTempDirs
{
    [Fact]
    public void Offline_wandb_keeps_the_pipeline_metric_names_in_the_run_folder()
    {
        string model = TrainingFixture.TinyModel(8);
        string demo = TrainingFixture.DemoDir;
        string output = TestPaths.NewTempDir("wb-out");
        var o = new TrainingOptions
        {
            TrainData = Path.Combine(demo, "train.jsonl"), ValidationData = Path.Combine(demo, "validation.jsonl"), InitModelPath = model,
            OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 1, BatchSize = 4, GradientAccumulationSteps = 1, LoggingSteps = 2,
        };
        new Trainer(o, TextWriter.Null) { Wandb = new Qwen3Tts.Coordinator.Observability.WandbSettings { Mode = Qwen3Tts.Coordinator.Observability.WandbMode.Offline } }.Run();

        var rows = File.ReadAllLines(Path.Combine(output, "wandb", "history.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        var train = rows.Where(r => r.ContainsKey("train/loss")).ToList();
        Assert.Equal(new long[] { 2, 4 }, train.Select(r => r["_step"]!.GetValue<long>()));
        foreach (var name in new[] { "train/talker_loss", "train/sub_talker_loss", "train/avg_loss", "train/learning_rate", "train/grad_norm", "train/epoch", "train/samples_per_second", "train/tokens_per_second" })
            Assert.True(train[0].ContainsKey(name), name);
        Assert.Equal(1.0, train[^1]["train/epoch"]!.GetValue<double>(), 6);
        Assert.Contains(rows, r => r.ContainsKey("eval/loss") && r.ContainsKey("eval/talker_loss") && r.ContainsKey("eval/sub_talker_loss"));
        Assert.Single(rows, r => r.ContainsKey("eval/epoch_loss")); // one epoch, one end-of-epoch evaluation
        Assert.Contains("step 4/4", File.ReadAllText(Path.Combine(output, "wandb", "output.log")));
    }

    [Fact]
    public void A_resumed_run_continues_the_same_wandb_run_and_history()
    {
        string model = TrainingFixture.TinyModel(12);
        string data = TrainingFixture.DemoData(8);
        string output = TestPaths.NewTempDir("wb-resume");
        var o = new TrainingOptions
        {
            TrainData = data, InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 1,
            BatchSize = 2, GradientAccumulationSteps = 1, LoggingSteps = 1,
        };
        var offline = new Qwen3Tts.Coordinator.Observability.WandbSettings { Mode = Qwen3Tts.Coordinator.Observability.WandbMode.Offline };
        new Trainer(o, TextWriter.Null) { Wandb = offline, StopAfterSteps = 2 }.Run();
        string state = Path.Combine(output, "wandb", "state.json");
        string runId = JsonNode.Parse(File.ReadAllText(state))!["runId"]!.GetValue<string>();

        new Trainer(o with { ResumeFromCheckpoint = "latest" }, TextWriter.Null) { Wandb = offline }.Run();
        Assert.Equal(runId, JsonNode.Parse(File.ReadAllText(state))!["runId"]!.GetValue<string>());
        var steps = File.ReadAllLines(Path.Combine(output, "wandb", "history.jsonl"))
            .Select(l => JsonNode.Parse(l)!.AsObject()).Where(r => r.ContainsKey("train/loss")).Select(r => r["_step"]!.GetValue<long>());
        Assert.Equal(new long[] { 1, 2, 3, 4 }, steps); // steps 1-2 before the stop, 3-4 after the resume, each once
    }
}
