using Qwen3Tts.Entry;
using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Qwen3Tts.Model.Layers;
using Qwen3Tts.Model.Sft;

namespace Qwen3Tts.Rank.Training;

/// <summary>Everything a fine-tuning run is told. Flag names are the seed scripts' (snake_case), with
/// kebab-case spellings accepted too; a JSON config file (--config) gives defaults that flags override.</summary>
public sealed record TrainingOptions
{
    public required string TrainData { get; init; }
    public string? ValidationData { get; init; }

    /// <summary>--split / --validation_split: the splits read from a folder of Parquet shards (a dataset by id resolves to one):
    /// train by default; validation from the training data's folder when --validation_split names one and no
    /// --validation_jsonl is given.</summary>
    public string? Split { get; init; }
    public string? ValidationSplit { get; init; }
    public required string InitModelPath { get; init; }
    public string OutputModelPath { get; init; } = "output";
    public int BatchSize { get; init; } = 2;
    public double Lr { get; init; } = 2e-5;
    public int NumEpochs { get; init; } = 3;
    public string SpeakerName { get; init; } = "speaker_test";
    public int GradientAccumulationSteps { get; init; } = 4;
    public double WeightDecay { get; init; } = 0.01;
    public double AdamBeta1 { get; init; } = 0.9;
    public double AdamBeta2 { get; init; } = 0.999;
    public double AdamEpsilon { get; init; } = 1e-8;
    public int WarmupSteps { get; init; }
    public string LrScheduler { get; init; } = "cosine";
    public double MaxGradNorm { get; init; } = 1.0;
    public int LoggingSteps { get; init; } = 10;
    public int SaveSteps { get; init; }
    public int EvalSteps { get; init; }
    public int? SaveTotalLimit { get; init; }
    public string MixedPrecision { get; init; } = "bf16";
    public int? MaxTrainSamples { get; init; }
    public int? MaxEvalSamples { get; init; }

    /// <summary>--max_frames / --max_seconds: records with a longer target are refused up front (or skipped).</summary>
    public int? MaxFramesFlag { get; init; }
    public double? MaxSeconds { get; init; }

    /// <summary>--language: the language every record trains with (its codec tag), instead of each record's own.</summary>
    public string? Language { get; init; }

    /// <summary>--multi_speaker: every speaker_id of the data is a voice of its own (row, mean embedding, spk_id entry).</summary>
    public bool MultiSpeaker { get; init; }

    /// <summary>--speaker_column: the field naming each record's speaker (default speaker_id).</summary>
    public string SpeakerColumn { get; init; } = "speaker_id";

    /// <summary>--max_speakers: with --multi_speaker, only the N speakers with the most audio.</summary>
    public int? MaxSpeakers { get; init; }

    /// <summary>--add_language: a language the model has no tag for gets a new codec row, trained and kept in every checkpoint.</summary>
    public string? AddLanguage { get; init; }

    /// <summary>--max_line_mb: longest JSONL line read (null: 64 MB).</summary>
    public int? MaxLineMb { get; init; }

    /// <summary>--allow_absolute_paths: records may name clips outside their data file's folder.</summary>
    public bool AllowAbsolutePaths { get; init; }

    /// <summary>--max_memory_gb: the memory one rank may plan for; default on the CPU the memory available to it.</summary>
    public double? MaxMemoryGb { get; init; }

    /// <summary>The one frame limit of --max_frames and --max_seconds (the smaller), or null.</summary>
    public int? MaxFrames => Qwen3Tts.Coordinator.Data.RecordRules.FrameLimit(MaxFramesFlag, MaxSeconds);
    public long Seed { get; init; } = 42;
    public LossAlignment LossAlignment { get; init; } = LossAlignment.Fixed;

    /// <summary>--train_prompt: xvector (the reference script's prompt), icl (every record with a ref_text on the ICL cloning
    /// prompt) or mixed (a seeded choice per record, ICL with --icl_probability); see <see cref="Qwen3Tts.Coordinator.Data.TrainPrompt"/>.</summary>
    public string TrainPrompt { get; init; } = "xvector";
    public double IclProbability { get; init; } = 0.5;

    /// <summary><see cref="TrainPrompt"/> parsed (validated by <see cref="Validate"/>).</summary>
    public Qwen3Tts.Coordinator.Data.TrainPrompt Prompt => Qwen3Tts.Coordinator.Data.TrainPrompt.Parse(TrainPrompt, IclProbability, Seed);
    public double SubTalkerWeight { get; init; } = 0.3;
    public string? ResumeFromCheckpoint { get; init; }
    public bool SkipBadSamples { get; init; }

    /// <summary>--allow_new_global_batch: resume with a global batch other than the checkpoint's (the run changes).</summary>
    public bool AllowNewGlobalBatch { get; init; }
    /// <summary>Also export OUTPUT/epoch-N-custom_voice/ after each epoch, as the upstream script's per-epoch checkpoints are.</summary>
    public bool ExportEveryEpoch { get; init; }
    public int BucketSizeMb { get; init; } = 25;
    public bool UseWandb { get; init; }
    public string? WandbProject { get; init; }
    public string? WandbRunName { get; init; }

    /// <summary>--grad_sync: "overlap" (buckets reduce while the last backward runs) or "after_backward" (one blocking
    /// reduce of every bucket after it).</summary>
    public string GradSync { get; init; } = "overlap";

    /// <summary>--gradient_checkpointing: off, talker (the flag alone) or all.</summary>
    public string GradientCheckpointing { get; init; } = "off";

    /// <summary><see cref="GradientCheckpointing"/> parsed (validated by <see cref="Validate"/>).</summary>
    public Qwen3Tts.Model.Layers.GradientCheckpointing Checkpointing => GradientCheckpointing switch
    {
        "talker" => Qwen3Tts.Model.Layers.GradientCheckpointing.Talker,
        "all" => Qwen3Tts.Model.Layers.GradientCheckpointing.All,
        _ => Qwen3Tts.Model.Layers.GradientCheckpointing.Off,
    };

    /// <summary>--zero_stage: 0 replicates AdamW's state on every rank; 1 shards it across the ranks (gradients
    /// reduce-scattered once per optimizer step); 2 also reduce-scatters after every micro-step, so no rank keeps a
    /// whole gradient between micro-steps. Ignored with one rank.</summary>
    public int ZeroStage { get; init; }

    /// <summary>--dry_run_memory: print the memory plan per rank for the model's config, world size and stage, and exit
    /// (no data, weights or launcher needed).</summary>
    public bool DryRunMemory { get; init; }

    /// <summary>--eval_sentences: sentences rank 0 speaks at each evaluation (plain lines or JSONL {"text", "language"}).</summary>
    public string? EvalSentences { get; init; }

    /// <summary>--eval_sample_max_seconds: the longest eval sample (bounds max_new_tokens).</summary>
    public double EvalSampleMaxSeconds { get; init; } = 10;

    /// <summary>--coordinator: embedded (rank 0 hosts it), off (local plan), or a standalone coordinator's address.</summary>
    public string Coordinator { get; init; } = "embedded";

    /// <summary>--bucket_window: global batches per length-sorting window of the plan (0: random batching).</summary>
    public int BucketWindow { get; init; } = 32;

    /// <summary>--heartbeat_timeout: seconds a rank (or the coordinator) may stay silent before the job is stopped.</summary>
    public double HeartbeatTimeout { get; init; } = 60;

    /// <summary>--device: cpu, cuda (cuda:LOCAL_RANK), cuda:N or auto; see <see cref="TrainingDevice"/>.</summary>
    public string Device { get; init; } = TrainingDevice.Default;

    /// <summary>The Hub ids --init_model_path and the training data were given as (null for local paths): the model card's
    /// base_model and datasets.</summary>
    public string? BaseModelId { get; init; }
    public string? DatasetId { get; init; }

    /// <summary>--upload_to_hub: rank 0 publishes best/ and last/ as custom_voice models to these repos after training
    /// (<see cref="HubPublisher"/>); --hub_upload_every_eval also publishes best/ each time it changes. The token is not
    /// an option: it never reaches a config dump.</summary>
    public bool UploadToHub { get; init; }
    public string? HubModelIdBest { get; init; }
    public string? HubModelIdLast { get; init; }
    public bool HubPrivate { get; init; }
    public bool HubUploadEveryEval { get; init; }

    /// <summary>Checks values that would otherwise fail mid-run; the message names the flag and the fix.</summary>
    public void Validate()
    {
        void Require(bool ok, string flag, string what)
        {
            if (!ok) throw new ArgumentException($"--{flag}: {what}");
        }
        Require(BatchSize >= 1, "batch_size", $"must be at least 1, got {BatchSize}");
        Require(Lr > 0 && double.IsFinite(Lr), "lr", $"must be a positive number, got {Lr}");
        Require(NumEpochs >= 1, "num_epochs", $"must be at least 1, got {NumEpochs}");
        Require(GradientAccumulationSteps >= 1, "gradient_accumulation_steps", $"must be at least 1, got {GradientAccumulationSteps}");
        Require(WeightDecay >= 0, "weight_decay", $"must be non-negative, got {WeightDecay}");
        Require(WarmupSteps >= 0, "warmup_steps", $"must be non-negative, got {WarmupSteps}");
        Require(LrScheduler is "cosine" or "constant", "lr_scheduler", $"must be cosine or constant, got '{LrScheduler}'");
        Require(MaxGradNorm > 0, "max_grad_norm", $"must be positive, got {MaxGradNorm}");
        Require(LoggingSteps >= 1, "logging_steps", $"must be at least 1, got {LoggingSteps}");
        Require(SaveSteps >= 0 && EvalSteps >= 0, "save_steps/--eval_steps", "must be non-negative (0 turns them off)");
        Require(SaveTotalLimit is null or >= 1, "save_total_limit", $"must be at least 1, got {SaveTotalLimit}");
        Require(MixedPrecision is "bf16" or "fp32", "mixed_precision", $"must be bf16 or fp32, got '{MixedPrecision}'");
        Require(SubTalkerWeight >= 0, "sub_talker_weight", $"must be non-negative, got {SubTalkerWeight}");
        Require(TrainPrompt is "xvector" or "icl" or "mixed", "train_prompt", $"must be xvector, icl or mixed, got '{TrainPrompt}'");
        Require(IclProbability is >= 0 and <= 1, "icl_probability", $"must be between 0 and 1, got {IclProbability}");
        Require(!string.IsNullOrWhiteSpace(SpeakerName), "speaker_name", "must not be empty");
        Require(GradSync is "overlap" or "after_backward", "grad_sync", $"must be overlap or after_backward, got '{GradSync}'");
        Require(GradientCheckpointing is "off" or "talker" or "all", "gradient_checkpointing", $"must be talker (the flag alone), all or off, got '{GradientCheckpointing}'");
        Require(BucketSizeMb >= 1, "bucket_size_mb", $"must be at least 1, got {BucketSizeMb}");
        Require(ZeroStage is >= 0 and <= 2, "zero_stage", $"must be 0, 1 or 2, got {ZeroStage}");
        Require(EvalSentences is null || File.Exists(EvalSentences), "eval_sentences", $"no such file: {EvalSentences}");
        Require(EvalSampleMaxSeconds > 0 && double.IsFinite(EvalSampleMaxSeconds), "eval_sample_max_seconds", $"must be a positive number of seconds, got {EvalSampleMaxSeconds}");
        Require(MaxFramesFlag is null or >= 1, "max_frames", $"must be at least 1, got {MaxFramesFlag}");
        Require(MaxSeconds is null || (MaxSeconds >= 1 / Qwen3Tts.Coordinator.Data.RecordRules.FramesPerSecond && double.IsFinite(MaxSeconds.Value)),
            "max_seconds", $"must be at least one frame (0.08 s), got {MaxSeconds}");
        Require(MaxSpeakers is null or >= 1, "max_speakers", $"must be at least 1, got {MaxSpeakers}");
        Require(MaxSpeakers is null || MultiSpeaker, "max_speakers", "applies with --multi_speaker");
        Require(!string.IsNullOrWhiteSpace(SpeakerColumn), "speaker_column", "must name a field");
        Require(MaxLineMb is null or (>= 1 and <= 1024), "max_line_mb", $"must be 1 to 1024 (MB), got {MaxLineMb}");
        Require(MaxMemoryGb is null || (MaxMemoryGb > 0 && double.IsFinite(MaxMemoryGb.Value)), "max_memory_gb", $"must be a positive number of GB, got {MaxMemoryGb}");
        Require(BucketWindow >= 0, "bucket_window", $"must be 0 (random batching) or more, got {BucketWindow}");
        Require(TrainingDevice.SyntaxError(Device) is null, "device", TrainingDevice.SyntaxError(Device) ?? "");
        Require(HeartbeatTimeout > 0 && double.IsFinite(HeartbeatTimeout), "heartbeat_timeout", $"must be a positive number of seconds, got {HeartbeatTimeout}");
        Require(Coordinator is "embedded" or "off" || Coordinator.StartsWith("http://", StringComparison.Ordinal) || Coordinator.StartsWith("https://", StringComparison.Ordinal),
            "coordinator", $"must be embedded, off, or an address such as http://coordinator:50051, got '{Coordinator}'");
        Require(File.Exists(TrainData) || Directory.Exists(TrainData), "train_jsonl", $"no such file or folder: {TrainData}");
        Require(ValidationData is null || File.Exists(ValidationData) || Directory.Exists(ValidationData), "validation_jsonl", $"no such file or folder: {ValidationData}");
        Require(Directory.Exists(InitModelPath), "init_model_path", $"no such model directory: {InitModelPath}");
        Require(!UploadToHub || HubModelIdBest is not null || HubModelIdLast is not null, "upload_to_hub", "name the repos: --hub_model_id_best and/or --hub_model_id_last (owner/name)");
        Require(UploadToHub || (HubModelIdBest is null && HubModelIdLast is null && !HubUploadEveryEval && !HubPrivate), "hub_model_id_best/--hub_model_id_last/--hub_private/--hub_upload_every_eval",
            "apply with --upload_to_hub");
        foreach (var (flag, id) in new[] { ("hub_model_id_best", HubModelIdBest), ("hub_model_id_last", HubModelIdLast) })
            Require(id is null || Qwen3Tts.Entry.Hub.HubRepo.LooksLikeId(id), flag, $"'{id}' is not a Hub repo id (owner/name)");
        Require(HubModelIdBest is null || ValidationData is not null, "hub_model_id_best", "best/ is chosen by evaluation: give --validation_jsonl or --validation_split (or publish last/ alone)");
        Require(!HubUploadEveryEval || HubModelIdBest is not null, "hub_upload_every_eval", "publishes best/: give --hub_model_id_best");
    }
}

/// <summary>The trainer's command-line surface: every flag with help text and a default.</summary>
public static class TrainingFlags
{
    // Both spellings of a flag: the seed's snake_case and kebab-case.
    static string[] Names(string snake) => snake.Contains('_') ? new[] { "--" + snake, "--" + snake.Replace('_', '-') } : new[] { "--" + snake };

    static Option<T> Flag<T>(string snake, string description, params string[] extra)
    {
        var names = Names(snake).Concat(extra.SelectMany(Names)).ToArray();
        return new Option<T>(names[0], names[1..]) { Description = description };
    }

    /// <summary>--hub_token as given on the command line (the binder uses it to resolve ids and never keeps it).</summary>
    public static string? HubToken(ParseResult parse) => parse.GetValue<string?>("--hub_token");

    /// <summary>Adds the training flags to <paramref name="command"/> and returns a binder. Precedence: flag, then --config file, then default.</summary>
    public static Func<ParseResult, TrainingOptions> AddTo(Command command)
    {
        var config = new Option<string?>("--config") { Description = "JSON file of flag values (snake_case keys); flags given on the command line win" };
        var train = Flag<string?>("train_jsonl", "training data: a JSONL file (seed format), a Parquet file, a folder of Parquet shards, or a dataset's id (owner/name); raw speech is prepared first", "train_data", "dataset_name");
        var split = Flag<string?>("split", "the training split of a folder of Parquet shards or a dataset id (default train)");
        var validationSplit = Flag<string?>("validation_split", "the validation split of the training data's folder or dataset (enables evaluation without --validation_jsonl)");
        var validation = Flag<string?>("validation_jsonl", "validation data (JSONL, Parquet file or folder); enables evaluation", "validation_data");
        var init = Flag<string?>("init_model_path", "the Base model to fine-tune: a directory, or its id in the Hugging Face cache (Qwen/Qwen3-TTS-12Hz-1.7B-Base)");
        var revision = Flag<string?>("revision", "the revision (branch, tag or commit) of a model given by id (default main)");
        // Used once, to resolve the ids, and never kept in the options (which reach WandB and config dumps).
        var hubToken = Flag<string?>("hub_token", "Hub token: to read a private or gated model or dataset, and with --upload_to_hub to write (default HF_TOKEN; a flag shows in the process list, the variable does not)");
        var uploadToHub = Flag<bool>("upload_to_hub", "after training, rank 0 publishes best/ and last/ as custom_voice models with a model card to the Hub repos --hub_model_id_best / --hub_model_id_last (created when missing; HF_TOKEN or --hub_token must be a write token). A failed upload leaves them in OUTPUT/hub/ for `qwen3tts hub-upload`");
        var hubBest = Flag<string?>("hub_model_id_best", "with --upload_to_hub: the repo (owner/name) for best/, the checkpoint of the lowest validation loss");
        var hubLast = Flag<string?>("hub_model_id_last", "with --upload_to_hub: the repo (owner/name) for last/, the final weights");
        var hubPrivate = Flag<bool>("hub_private", "with --upload_to_hub: create the repos private (an existing repo keeps its visibility)");
        var hubEveryEval = Flag<bool>("hub_upload_every_eval", "with --upload_to_hub: also publish best/ whenever an evaluation improves it (in the background; training goes on)");
        var output = Flag<string?>("output_model_path", "where checkpoints and exports go (default: output)", "output_dir").ForFolder();
        var batch = Flag<int?>("batch_size", "samples per rank per micro-step (default 2)");
        var lr = Flag<double?>("lr", "peak learning rate (default 2e-5)", "learning_rate");
        var epochs = Flag<int?>("num_epochs", "epochs (default 3)");
        var speaker = Flag<string?>("speaker_name", "name of the trained voice in the exported custom_voice model (default speaker_test)");
        var accumulation = Flag<int?>("gradient_accumulation_steps", "micro-steps per optimizer step (default 4)");
        var decay = Flag<double?>("weight_decay", "AdamW decoupled weight decay (default 0.01; never applied to the frozen speaker encoder)");
        var warmup = Flag<int?>("warmup_steps", "linear warmup, in optimizer steps (default 0)");
        var scheduler = Flag<string?>("lr_scheduler", "cosine or constant after warmup (default cosine)", "lr_scheduler_type");
        var clip = Flag<double?>("max_grad_norm", "gradient clipping max L2 norm (default 1.0)");
        var logging = Flag<int?>("logging_steps", "log every N optimizer steps (default 10)");
        var save = Flag<int?>("save_steps", "save checkpoint-STEP every N optimizer steps (default 0: off)");
        var eval = Flag<int?>("eval_steps", "evaluate every N optimizer steps (default 0: end of epoch only)");
        var limit = Flag<int?>("save_total_limit", "keep at most N checkpoint-STEP folders (best/, last/, epoch-N/ are kept)");
        var precision = Flag<string?>("mixed_precision", "bf16 (bf16 compute, fp32 master weights) or fp32 (default bf16)");
        var maxTrain = Flag<int?>("max_train_samples", "use only the first N training records");
        var maxEval = Flag<int?>("max_eval_samples", "use only the first N validation records");
        var maxFrames = Flag<int?>("max_frames", "refuse (or with --skip_bad_samples skip) records whose target is longer than N codec frames (12.5 per second)");
        var maxSeconds = Flag<double?>("max_seconds", "the same limit in seconds of target audio");
        var language = Flag<string?>("language", "the language every record trains with (its codec_language_id tag, as synthesize --language uses it), instead of each record's own 'language'; auto: no tag");
        var multiSpeaker = Flag<bool>("multi_speaker", "train every speaker_id of the data as a voice of its own: its own codec row (free rows only, named in the log), mean embedding and spk_id entry in every checkpoint and export (records without one speak as --speaker_name)");
        var maxSpeakers = Flag<int?>("max_speakers", "with --multi_speaker: keep the N speakers with the most audio");
        var speakerColumn = Flag<string?>("speaker_column", "with --multi_speaker: the field (JSONL key or Parquet column) naming each record's speaker (default speaker_id)");
        var addLanguage = Flag<string?>("add_language", "give a language the model has no tag for (e.g. hausa) a new codec row, started from the mean of the language rows and trained; it is written to codec_language_id in every checkpoint and export, so synthesize --language NAME uses the prompt it was trained on");
        var maxLine = Flag<int?>("max_line_mb", "longest JSONL line read, in MB (default 64); a longer line is refused (or skipped) without being held in memory");
        var allowAbsolute = Flag<bool>("allow_absolute_paths", "let records name clips outside their data file's folder (absolute paths, ../ chains): only for data you trust");
        var maxMemory = Flag<double?>("max_memory_gb", "memory one rank may use: the run is refused before the first step when the longest batch's planned memory exceeds it (default on the CPU: available memory / ranks on the node)");
        var seed = Flag<long?>("seed", "seed of initialization-independent randomness: shuffling (default 42)");
        var alignment = Flag<string?>("loss_alignment", "fixed (as the model generates, default) or upstream (the reference script's numbers, see README)");
        var subWeight = Flag<double?>("sub_talker_weight", "weight of the code predictor loss (default 0.3)");
        var trainPrompt = Flag<string?>("train_prompt", "the prompt samples train on: xvector (the speaker embedding, as the reference script; default), icl (every record with a " +
            "ref_text on the in-context cloning prompt: its transcript and clip codes before the target, as synthesize --ref_audio --ref_text builds it), or mixed");
        var iclProbability = Flag<double?>("icl_probability", "with --train_prompt mixed: the share of records (with a ref_text) on the ICL prompt, a seeded choice per record (default 0.5)");
        var resume = Flag<string?>("resume_from_checkpoint", "a checkpoint folder, or 'latest' in the output folder");
        var skipBad = Flag<bool>("skip_bad_samples", "skip malformed records (listed in OUTPUT/skipped_train_samples.jsonl) instead of stopping");
        var allowNewBatch = Flag<bool>("allow_new_global_batch", "resume even where the world size cannot keep the checkpoint's global batch (the data order and schedule change)");
        var exportEveryEpoch = Flag<bool>("export_every_epoch", "also export OUTPUT/epoch-N-custom_voice/ after each epoch (custom_voice/ is always exported at the end, from best/ or last/)");
        var beta1 = Flag<double?>("adam_beta1", "AdamW beta1 (default 0.9)");
        var beta2 = Flag<double?>("adam_beta2", "AdamW beta2 (default 0.999)");
        var epsilon = Flag<double?>("adam_epsilon", "AdamW epsilon (default 1e-8)");
        var useWandb = Flag<bool>("use_wandb", "log metrics to Weights & Biases (WANDB_API_KEY; WANDB_MODE=offline keeps them in OUTPUT/wandb for `qwen3tts wandb-sync`)");
        var wandbProject = Flag<string?>("wandb_project", "WandB project (default: $WANDB_PROJECT)");
        var wandbRunName = Flag<string?>("wandb_run_name", "WandB run display name (default: $WANDB_NAME)");
        var bucket = Flag<int?>("bucket_size_mb", "gradient all-reduce bucket size in MB (default 25; the first bucket is 1 MB)");
        var evalSentences = Flag<string?>("eval_sentences", "at each evaluation rank 0 speaks these sentences (a line each, or JSONL {\"text\", \"language\"}) in the training voice: OUTPUT/samples/step-S/NN.wav, and WandB audio");
        var evalSampleSeconds = Flag<double?>("eval_sample_max_seconds", "longest eval sample in seconds (default 10)");
        var coordinator = Flag<string?>("coordinator", "where the data plan comes from: embedded (default: rank 0 hosts the coordinator), off (each rank computes it), or a qwen3tts-coordinator address (http://host:port; token from $QWEN3TTS_COORDINATOR_TOKEN)");
        var bucketWindow = Flag<int?>("bucket_window", "group batches by length within windows of N global batches (default 32; 0: random batching)");
        var heartbeatTimeout = Flag<double?>("heartbeat_timeout", "seconds a silent rank or coordinator is tolerated before the job stops (default 60)");
        var device = Flag<string?>("device", TrainingDevice.Help);
        var checkpointing = Flag<string?>("gradient_checkpointing", "recompute each layer's activations in backward instead of keeping them: " +
            "talker (the flag alone: the talker's layers) or all (the code predictor's too); off by default");
        checkpointing.Arity = ArgumentArity.ZeroOrOne;
        var gradSync = Flag<string?>("grad_sync", "overlap (reduce each bucket as soon as backward completes it, default) or after_backward (reduce all after backward)");
        var dryRunMemory = Flag<bool>("dry_run_memory", "print the planned memory per rank by category for --init_model_path's config, --world_size, --zero_stage, --mixed_precision, --batch_size and --max_seconds (default 20), and exit; needs no data, weights or launcher");
        var zeroStage = Flag<int?>("zero_stage", "0 (default): every rank holds AdamW's state; 1: ZeRO-1, the optimizer state sharded across ranks; 2: ZeRO-2, gradients reduce-scattered every micro-step too");

        foreach (var o in new Option[] { config, train, validation, split, validationSplit, init, revision, hubToken, output, batch, lr, epochs, speaker, accumulation, decay, warmup, scheduler, clip,
                     logging, save, eval, limit, precision, maxTrain, maxEval, maxFrames, maxSeconds, maxMemory, allowAbsolute, maxLine, language, addLanguage, multiSpeaker, maxSpeakers, speakerColumn, seed, alignment, subWeight, resume, skipBad, allowNewBatch, exportEveryEpoch, bucket, gradSync, checkpointing, zeroStage, dryRunMemory, evalSentences, evalSampleSeconds, coordinator, bucketWindow, heartbeatTimeout, device, beta1, beta2, epsilon, useWandb, wandbProject, wandbRunName,
                     uploadToHub, hubBest, hubLast, hubPrivate, hubEveryEval, trainPrompt, iclProbability })
            command.Options.Add(o);

        return parse =>
        {
            var file = LoadConfigFile(parse.GetValue(config));
            T? Pick<T>(Option<T?> option, string key) where T : struct => parse.GetValue(option) ?? ValueFromFile<T>(file, key);
            string? PickString(Option<string?> option, string key) => parse.GetValue(option) ?? StringFromFile(file, key);
            var d = new TrainingOptions { TrainData = "", InitModelPath = "" };
            string alignmentText = PickString(alignment, "loss_alignment") ?? "fixed";
            var env = Qwen3Tts.Rank.Distributed.EnvVars.Snapshot();
            string? trainSplit = PickString(split, "split"), validationSplitName = PickString(validationSplit, "validation_split");
            string? Dataset(string? value, string flag, string? name) => value is null ? null
                : Qwen3Tts.Entry.Hub.HubPaths.Resolve(value, Qwen3Tts.Entry.Hub.HubRepoType.Dataset, flag, null, env, name, parse.GetValue(hubToken));
            string? trainSource = PickString(train, "train_jsonl") ?? PickString(train, "train_data");
            string? validationSource = PickString(validation, "validation_jsonl") ?? StringFromFile(file, "validation_data");
            // Validation from the training data's own folder or dataset when only a split is named.
            validationSource ??= validationSplitName is null ? null : trainSource;
            string? validationData = Dataset(validationSource, "--validation_jsonl", validationSplitName ?? "validation");
            string? trainData = Dataset(trainSource, "--train_jsonl", trainSplit ?? "train");
            string? initSource = PickString(init, "init_model_path");
            var options = new TrainingOptions
            {
                TrainData = trainData ?? (parse.GetValue(dryRunMemory) ? ""
                    : throw new ArgumentException("--train_jsonl is required (a JSONL file of training records)")),
                DatasetId = trainData is not null && trainData != trainSource ? trainSource : null,
                ValidationData = validationData,
                Split = trainSplit,
                // A dataset by id resolves to a snapshot that may hold every split: its validation split by name.
                ValidationSplit = validationSplitName ?? (validationData != validationSource ? "validation" : null),
                InitModelPath = Qwen3Tts.Entry.Hub.HubPaths.Resolve(initSource ?? throw new ArgumentException("--init_model_path is required (a Base model directory)"),
                    Qwen3Tts.Entry.Hub.HubRepoType.Model, "--init_model_path", PickString(revision, "revision"), Qwen3Tts.Rank.Distributed.EnvVars.Snapshot(),
                    token: parse.GetValue(hubToken)),
                OutputModelPath = PickString(output, "output_model_path") ?? d.OutputModelPath,
                BatchSize = Pick(batch, "batch_size") ?? d.BatchSize,
                Lr = Pick(lr, "lr") ?? d.Lr,
                NumEpochs = Pick(epochs, "num_epochs") ?? d.NumEpochs,
                SpeakerName = PickString(speaker, "speaker_name") ?? d.SpeakerName,
                GradientAccumulationSteps = Pick(accumulation, "gradient_accumulation_steps") ?? d.GradientAccumulationSteps,
                WeightDecay = Pick(decay, "weight_decay") ?? d.WeightDecay,
                WarmupSteps = Pick(warmup, "warmup_steps") ?? d.WarmupSteps,
                LrScheduler = PickString(scheduler, "lr_scheduler") ?? d.LrScheduler,
                MaxGradNorm = Pick(clip, "max_grad_norm") ?? d.MaxGradNorm,
                LoggingSteps = Pick(logging, "logging_steps") ?? d.LoggingSteps,
                SaveSteps = Pick(save, "save_steps") ?? d.SaveSteps,
                EvalSteps = Pick(eval, "eval_steps") ?? d.EvalSteps,
                SaveTotalLimit = Pick(limit, "save_total_limit"),
                MixedPrecision = PickString(precision, "mixed_precision") ?? d.MixedPrecision,
                MaxTrainSamples = Pick(maxTrain, "max_train_samples"),
                MaxEvalSamples = Pick(maxEval, "max_eval_samples"),
                MaxFramesFlag = Pick(maxFrames, "max_frames"),
                MaxSeconds = Pick(maxSeconds, "max_seconds"),
                MaxMemoryGb = Pick(maxMemory, "max_memory_gb"),
                MaxLineMb = Pick(maxLine, "max_line_mb"),
                Language = PickString(language, "language"),
                AddLanguage = PickString(addLanguage, "add_language"),
                MultiSpeaker = parse.GetValue(multiSpeaker) || (ValueFromFile<bool>(file, "multi_speaker") ?? false),
                MaxSpeakers = Pick(maxSpeakers, "max_speakers"),
                SpeakerColumn = PickString(speakerColumn, "speaker_column") ?? d.SpeakerColumn,
                AllowAbsolutePaths = parse.GetValue(allowAbsolute) || (ValueFromFile<bool>(file, "allow_absolute_paths") ?? false),
                Seed = Pick(seed, "seed") ?? d.Seed,
                LossAlignment = alignmentText switch
                {
                    "fixed" => LossAlignment.Fixed,
                    "upstream" => LossAlignment.Upstream,
                    _ => throw new ArgumentException($"--loss_alignment: must be fixed or upstream, got '{alignmentText}'"),
                },
                SubTalkerWeight = Pick(subWeight, "sub_talker_weight") ?? d.SubTalkerWeight,
                TrainPrompt = PickString(trainPrompt, "train_prompt") ?? d.TrainPrompt,
                IclProbability = Pick(iclProbability, "icl_probability") ?? d.IclProbability,
                ResumeFromCheckpoint = PickString(resume, "resume_from_checkpoint"),
                SkipBadSamples = parse.GetValue(skipBad) || (ValueFromFile<bool>(file, "skip_bad_samples") ?? false),
                AllowNewGlobalBatch = parse.GetValue(allowNewBatch) || (ValueFromFile<bool>(file, "allow_new_global_batch") ?? false),
                ExportEveryEpoch = parse.GetValue(exportEveryEpoch) || (ValueFromFile<bool>(file, "export_every_epoch") ?? false),
                BucketSizeMb = Pick(bucket, "bucket_size_mb") ?? d.BucketSizeMb,
                GradSync = PickString(gradSync, "grad_sync") ?? d.GradSync,
                GradientCheckpointing = parse.GetResult(checkpointing) is null ? StringFromFile(file, "gradient_checkpointing") ?? d.GradientCheckpointing
                    : parse.GetValue(checkpointing) ?? "talker",
                ZeroStage = Pick(zeroStage, "zero_stage") ?? d.ZeroStage,
                DryRunMemory = parse.GetValue(dryRunMemory),
                EvalSentences = PickString(evalSentences, "eval_sentences"),
                EvalSampleMaxSeconds = Pick(evalSampleSeconds, "eval_sample_max_seconds") ?? d.EvalSampleMaxSeconds,
                Coordinator = PickString(coordinator, "coordinator") ?? d.Coordinator,
                BucketWindow = Pick(bucketWindow, "bucket_window") ?? d.BucketWindow,
                HeartbeatTimeout = Pick(heartbeatTimeout, "heartbeat_timeout") ?? d.HeartbeatTimeout,
                Device = PickString(device, "device") ?? d.Device,
                UseWandb = parse.GetValue(useWandb) || (ValueFromFile<bool>(file, "use_wandb") ?? false),
                WandbProject = PickString(wandbProject, "wandb_project"),
                WandbRunName = PickString(wandbRunName, "wandb_run_name"),
                AdamBeta1 = Pick(beta1, "adam_beta1") ?? d.AdamBeta1,
                AdamBeta2 = Pick(beta2, "adam_beta2") ?? d.AdamBeta2,
                AdamEpsilon = Pick(epsilon, "adam_epsilon") ?? d.AdamEpsilon,
                UploadToHub = parse.GetValue(uploadToHub) || (ValueFromFile<bool>(file, "upload_to_hub") ?? false),
                HubModelIdBest = PickString(hubBest, "hub_model_id_best"),
                HubModelIdLast = PickString(hubLast, "hub_model_id_last"),
                HubPrivate = parse.GetValue(hubPrivate) || (ValueFromFile<bool>(file, "hub_private") ?? false),
                HubUploadEveryEval = parse.GetValue(hubEveryEval) || (ValueFromFile<bool>(file, "hub_upload_every_eval") ?? false),
            };
            options = options with { BaseModelId = options.InitModelPath != initSource ? initSource : null };
            // The flag was checked as it was parsed; a path from --config (or the default) is checked here, still before any work.
            OutputPaths.RequireFolder("--output_model_path", options.OutputModelPath);
            return options;
        };
    }

    static JsonObject? LoadConfigFile(string? path)
    {
        if (path is null) return null;
        if (!File.Exists(path)) throw new ArgumentException($"--config: no such file: {path}");
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject
                ?? throw new ArgumentException($"--config {path}: the top level must be a JSON object of flag values");
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"--config {path}: not valid JSON (line {e.LineNumber + 1}): {e.Message}");
        }
    }

    static T? ValueFromFile<T>(JsonObject? file, string key) where T : struct =>
        Node(file, key) is { } node ? Convert<T>(node, key) : null;

    static string? StringFromFile(JsonObject? file, string key) =>
        Node(file, key) is { } node ? Convert<string>(node, key) : null;

    static JsonNode? Node(JsonObject? file, string key) => file is null ? null : file[key] ?? file[key.Replace('_', '-')];

    static T Convert<T>(JsonNode node, string key)
    {
        try
        {
            // Numbers may be written as 2 or 2.0; JSON integers also serve double-valued flags.
            return typeof(T) == typeof(double) ? (T)(object)double.Parse(node.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture)
                 : typeof(T) == typeof(int) ? (T)(object)checked((int)double.Parse(node.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture))
                 : typeof(T) == typeof(long) ? (T)(object)checked((long)double.Parse(node.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture))
                 : node.GetValue<T>();
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or OverflowException)
        {
            throw new ArgumentException($"--config: '{key}' must be a {typeof(T).Name}, found {node.ToJsonString()}");
        }
    }
}
