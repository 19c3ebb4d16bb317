using System.CommandLine;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Rank.Training;

namespace Qwen3Tts.Tests.Training;

public class TrainingFlagsTests
{
    static TrainingOptions Parse(params string[] args)
    {
        var command = new RootCommand();
        var bind = TrainingFlags.AddTo(command);
        var result = command.Parse(args);
        Assert.Empty(result.Errors);
        return bind(result);
    }

    /// <summary>--gradient_checkpointing alone recomputes the talker's layers; "all" the code predictor's too; absent, none.
    /// The flag's value must not swallow the next flag.</summary>
    [Fact]
    public void Gradient_checkpointing_is_off_talker_with_the_bare_flag_or_all()
    {
        string[] Base(params string[] more) => ["--train_jsonl", "t", "--init_model_path", "m", .. more];
        Assert.Equal(Qwen3Tts.Model.Layers.GradientCheckpointing.Off, Parse(Base()).Checkpointing);
        Assert.Equal(Qwen3Tts.Model.Layers.GradientCheckpointing.Talker, Parse(Base("--gradient_checkpointing")).Checkpointing);
        var bareThenFlag = Parse(["--gradient_checkpointing", .. Base("--batch_size", "3")]);
        Assert.Equal((Qwen3Tts.Model.Layers.GradientCheckpointing.Talker, 3), (bareThenFlag.Checkpointing, bareThenFlag.BatchSize));
        Assert.Equal(Qwen3Tts.Model.Layers.GradientCheckpointing.All, Parse(Base("--gradient-checkpointing", "all")).Checkpointing);
        var e = Assert.Throws<ArgumentException>(Parse(Base("--gradient_checkpointing", "some")).Validate);
        Assert.Contains("--gradient_checkpointing", e.Message);
    }

    /// <summary>The publishing flags bind (the token excepted: it is no option) and are refused where they cannot work.</summary>
    [Fact]
    public void Hub_publishing_flags_bind_and_are_refused_where_they_cannot_work()
    {
        string model = TestPaths.NewTempDir("hub-flags-model"), data = Path.Combine(model, "t.jsonl");
        File.WriteAllText(data, "");
        string[] Base(params string[] more) => ["--train_jsonl", data, "--init_model_path", model, .. more];
        var o = Parse(Base("--validation_jsonl", data, "--upload_to_hub", "--hub_model_id_best", "me/best", "--hub-model-id-last", "me/last",
            "--hub_private", "--hub_upload_every_eval", "--hub_token", "hf_secret_token_value"));
        Assert.Equal((true, "me/best", "me/last", true, true), (o.UploadToHub, o.HubModelIdBest, o.HubModelIdLast, o.HubPrivate, o.HubUploadEveryEval));
        o.Validate();
        Assert.DoesNotContain("hf_secret_token_value", o.ToString());

        void Refused(string flag, params string[] args) =>
            Assert.StartsWith(flag, Assert.Throws<ArgumentException>(Parse(Base(args)).Validate).Message);
        Refused("--upload_to_hub: name the repos", "--upload_to_hub");
        Refused("--hub_model_id_best/--hub_model_id_last/--hub_private/--hub_upload_every_eval: apply with --upload_to_hub", "--hub_model_id_last", "me/last");
        Refused("--hub_model_id_last: 'not an id' is not a Hub repo id", "--upload_to_hub", "--hub_model_id_last", "not an id");
        Refused("--hub_model_id_best: best/ is chosen by evaluation", "--upload_to_hub", "--hub_model_id_best", "me/best");
        Refused("--hub_upload_every_eval: publishes best/", "--upload_to_hub", "--hub_model_id_last", "me/last", "--hub_upload_every_eval");
    }

    [Fact]
    public void Train_prompt_binds_and_is_refused_when_unknown()
    {
        string model = TestPaths.NewTempDir("icl-flags-model"), data = Path.Combine(model, "t.jsonl");
        File.WriteAllText(data, "");
        string[] Base(params string[] more) => ["--train_jsonl", data, "--init_model_path", model, "--seed", "9", .. more];
        Assert.Equal(Qwen3Tts.Coordinator.Data.TrainPrompt.XVector.Kind, Parse(Base()).Prompt.Kind);
        var mixed = Parse(Base("--train-prompt", "mixed", "--icl_probability", "0.3"));
        mixed.Validate();
        Assert.Equal(new Qwen3Tts.Coordinator.Data.TrainPrompt(Qwen3Tts.Coordinator.Data.TrainPromptKind.Mixed, 0.3, 9), mixed.Prompt);
        Assert.StartsWith("--train_prompt: must be xvector, icl or mixed", Assert.Throws<ArgumentException>(Parse(Base("--train_prompt", "clone")).Validate).Message);
        Assert.StartsWith("--icl_probability: must be between 0 and 1", Assert.Throws<ArgumentException>(Parse(Base("--train_prompt", "mixed", "--icl_probability", "1.5")).Validate).Message);
    }

    [Fact]
    public void Seed_names_and_kebab_spellings_both_work()
    {
        var snake = Parse("--train_jsonl", "t.jsonl", "--init_model_path", "m", "--batch_size", "3", "--gradient_accumulation_steps", "2",
            "--lr", "1e-4", "--mixed_precision", "fp32", "--loss_alignment", "upstream", "--max_train_samples", "7");
        var kebab = Parse("--train-jsonl", "t.jsonl", "--init-model-path", "m", "--batch-size", "3", "--gradient-accumulation-steps", "2",
            "--lr", "1e-4", "--mixed-precision", "fp32", "--loss-alignment", "upstream", "--max-train-samples", "7");
        Assert.Equal(snake, kebab);
        Assert.Equal((3, 2, 1e-4, "fp32", LossAlignment.Upstream, 7), (snake.BatchSize, snake.GradientAccumulationSteps, snake.Lr, snake.MixedPrecision, snake.LossAlignment, snake.MaxTrainSamples));
        // Defaults as documented.
        Assert.Equal((0.01, 1.0, 3, "bf16", 25), (snake.WeightDecay, snake.MaxGradNorm, snake.NumEpochs, Parse("--train_jsonl", "t", "--init_model_path", "m").MixedPrecision, snake.BucketSizeMb));
    }

    [Fact]
    public void A_config_file_gives_defaults_and_flags_win()
    {
        string dir = TestPaths.NewTempDir("flags");
        string config = Path.Combine(dir, "run.json");
        File.WriteAllText(config, """{"train_jsonl": "from-file.jsonl", "init_model_path": "m", "lr": 3e-4, "num_epochs": 5, "skip_bad_samples": true, "weight-decay": 0.1}""");
        var o = Parse("--config", config, "--num_epochs", "2");
        Assert.Equal(("from-file.jsonl", 3e-4, 2, true, 0.1), (o.TrainData, o.Lr, o.NumEpochs, o.SkipBadSamples, o.WeightDecay));

        File.WriteAllText(config, """{"train_jsonl": "t", "init_model_path": "m", "num_epochs": "many"}""");
        var e = Assert.Throws<ArgumentException>(() => Parse("--config", config));
        Assert.Contains("num_epochs", e.Message);
    }

    [Fact]
    public void Bad_values_name_the_flag()
    {
        var e = Assert.Throws<ArgumentException>(() => Parse("--init_model_path", "m"));
        Assert.Contains("--train_jsonl is required", e.Message);
        e = Assert.Throws<ArgumentException>(() => Parse("--train_jsonl", "t", "--init_model_path", "m", "--loss_alignment", "sideways"));
        Assert.Contains("--loss_alignment", e.Message);
        var o = Parse("--train_jsonl", "t", "--init_model_path", "m", "--batch_size", "0");
        e = Assert.Throws<ArgumentException>(o.Validate);
        Assert.Contains("--batch_size", e.Message);
        o = Parse("--train_jsonl", "t", "--init_model_path", "m", "--grad_sync", "sometimes");
        e = Assert.Throws<ArgumentException>(o.Validate);
        Assert.Contains("--grad_sync", e.Message);
        Assert.Equal(("overlap", "after_backward"), (Parse("--train_jsonl", "t", "--init_model_path", "m").GradSync,
            Parse("--train_jsonl", "t", "--init_model_path", "m", "--grad-sync", "after_backward").GradSync));
        o = Parse("--train_jsonl", "missing.jsonl", "--init_model_path", "m");
        e = Assert.Throws<ArgumentException>(o.Validate);
        Assert.Contains("missing.jsonl", e.Message);
    }
}
