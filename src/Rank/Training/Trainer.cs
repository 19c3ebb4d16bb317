using System.Diagnostics;
using System.Globalization;
using Qwen3Tts.Coordinator;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Coordinator.Planning;
using Qwen3Tts.Rank.Coordination;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Model.Text;
using Qwen3Tts.Coordinator.Observability;
using Qwen3Tts.Rank.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Training;

/// <summary>What a finished (or stopped) run reports.</summary>
/// <summary>What a finished (or stopped) run reports. <see cref="TrainSeconds"/> is the time spent in optimizer steps
/// (data, forward, backward, communication, optimizer), without loading, evaluation and checkpoints.</summary>
public sealed record TrainingResult(long GlobalStep, int EpochsCompleted, double? LastLoss, double? BestEvalLoss, string OutputDir, double TrainSeconds = 0);

/// <summary>Single-speaker supervised fine-tuning of the talker, in one process. Reads top to bottom:
/// load, data, optimizer, (resume), then per optimizer step: micro-batches forward/backward with
/// token-weighted loss scaling, clip, step, log, eval, checkpoint.</summary>
public sealed class Trainer(TrainingOptions o, TextWriter log, ICommunicator? communicator = null)
{
    readonly ICommunicator comm = communicator ?? new SingleProcessCommunicator();

    /// <summary>--device, resolved by <see cref="Run"/> (cuda means cuda:LocalRank).</summary>
    Device device = CPU;

    /// <summary>The communicator for tensors on <see cref="device"/>: <see cref="comm"/> itself, or for GPU tensors over
    /// MPI/TCP the same one staged through host memory (<see cref="TrainingDevice.CommunicatorFor"/>).</summary>
    ICommunicator collectives = communicator ?? new SingleProcessCommunicator();

    /// <summary>Only rank 0 writes checkpoints, exports and logs.</summary>
    bool Main => comm.Rank == 0;

    /// <summary>Stop after this many optimizer steps in this process (saving last/), as an interruption would; the
    /// schedule still spans every epoch. Tests and time-boxed jobs use it.</summary>
    public long? StopAfterSteps { get; init; }

    /// <summary>WandB settings; null resolves them from the environment and the --use_wandb flags.</summary>
    public WandbSettings? Wandb { get; init; }

    /// <summary>Rank 0's live display on a terminal (<see cref="ConsoleProgress.Suits"/>); null keeps the plain lines on the log writer.
    /// The trainer disposes it before its last lines.</summary>
    public ConsoleProgress? Progress { get; init; }

    /// <summary>The bearer token of a standalone coordinator (--coordinator ADDRESS); the embedded one generates its own.
    /// Kept out of <see cref="TrainingOptions"/> so it can never reach a config dump or WandB.</summary>
    public string? CoordinatorToken { get; init; }

    /// <summary>--hub_token (else HF_TOKEN) for --upload_to_hub; like <see cref="CoordinatorToken"/> never an option.</summary>
    public string? HubToken { get; init; }

    /// <summary>The command line the run was started with (the model card shows it, secrets left out); null in-process.</summary>
    public IReadOnlyList<string>? CommandLine { get; init; }

    WandbRun? wandb;

    void Log(string line)
    {
        if (!Main) return;
        if (Progress is { } live) live.Line(line);
        else log.WriteLine(line);
        wandb?.Output(line);
    }

    /// <summary>Metric names as the Python pipelines users come from log them (train/loss, train/learning_rate, eval/loss, ...).</summary>
    void Metrics(long step, params (string Name, double Value)[] metrics) =>
        wandb?.Log(step, metrics.ToDictionary(m => m.Name, m => m.Value));

    void Metrics(long step, IReadOnlyList<WandbAudio> audio, params (string Name, double Value)[] metrics) =>
        wandb?.Log(step, metrics.ToDictionary(m => m.Name, m => m.Value), audio);

    public TrainingResult Run()
    {
        o.Validate();
        Directory.CreateDirectory(o.OutputModelPath);
        // --upload_to_hub: refused now when there is no token, not after training; rank 0 alone publishes.
        using var publisher = Main ? HubPublisher.Create(o, HubToken, EnvVars.Snapshot(), log) : null;
        // ---- a resume at another world size keeps the checkpoint's global batch (adjusting --batch_size), or is refused
        string? resumeDir = o.ResumeFromCheckpoint is { } spec ? CheckpointRotation.ResolveResume(o.OutputModelPath, spec) : null;
        Qwen3Tts.Coordinator.PlanPosition? resumeStart = null;
        if (resumeDir is not null && TrainingCheckpoint.ReadState(resumeDir) is { Batch: { } savedBatch } savedState)
        {
            var decision = ResumeGeometry.Resolve(savedBatch, new BatchGeometry(o.BatchSize, comm.WorldSize, o.GradientAccumulationSteps),
                new(savedState.Epoch, savedState.BatchInEpoch), o.AllowNewGlobalBatch, resumeDir);
            o = o with { BatchSize = decision.BatchPerRank };
            resumeStart = decision.Start;
            if (decision.Note is { } note) Log(note);
        }
        var precision = TrainableModel.ParsePrecision(o.MixedPrecision);
        device = TrainingDevice.Resolve(o.Device, comm.LocalRank);
        collectives = TrainingDevice.CommunicatorFor(device, comm);
        TrainingDevice.MakeCurrent(device);

        // ---- model on --device: fp32 masters (+ a bf16 compute copy on the same device in bf16 mode); the speaker encoder is frozen
        var config = Qwen3TtsConfig.Load(Path.Combine(o.InitModelPath, ModelDirectory.ConfigFile));
        if (!config.HasSpeakerEncoder)
            throw new ConfigException($"{o.InitModelPath}: tts_model_type is '{config.TtsModelType}'; fine-tuning starts from a Base checkpoint (it has the speaker encoder)");
        // --add_language: a new codec_language_id row, in this run's config and so in every checkpoint and export.
        int? addedLanguageRow = null;
        if (o.AddLanguage is { } added)
        {
            (config, int row, bool isNew) = CodecRows.AddLanguage(config, added);
            Log(isNew ? $"added language '{added.Trim().ToLowerInvariant()}': codec row {row}, starting from the mean of the {config.Talker.CodecLanguageId.Count - 1} language rows"
                : $"--add_language {added}: the model already has it (codec row {row}); trained as it is");
            if (isNew) addedLanguageRow = row;
        }
        using var model = ModelDirectory.Load(o.InitModelPath, config, ScalarType.Float32, device);
        if (addedLanguageRow is int languageRow) AddedLanguage.Initialize(model, config, languageRow); // a resumed run then loads its trained row
        model.SpeakerEncoder!.eval();
        using var trainable = new TrainableModel(model, precision);
        trainable.ComputeTalker.GradientCheckpointing = o.Checkpointing; // layers recompute their activations in backward

        // ---- data
        var tokenizer = Qwen3TextTokenizer.FromModelDirectory(o.InitModelPath);
        var train = OpenData(o.TrainData, o.Split, o.MaxTrainSamples, "train", tokenizer, config);
        var validation = o.ValidationData is null ? null : OpenData(o.ValidationData, o.ValidationSplit, o.MaxEvalSamples, "validation", tokenizer, config);
        if (train.Count == 0) throw new ArgumentException($"--train_jsonl {o.TrainData}: no usable records");
        // Listening samples at each evaluation: rank 0 only (it alone writes and logs).
        var samples = Main && o.EvalSentences is { } sentences ? EvalSamples.Open(sentences, o.InitModelPath, tokenizer, o.EvalSampleMaxSeconds, o.Seed) : null;
        // --batch_size is per rank, as in the seed: the global batch grows with the world.
        int globalBatch = o.BatchSize * comm.WorldSize;
        int batchesPerEpoch = (train.Count + globalBatch - 1) / globalBatch;
        int stepsPerEpoch = (batchesPerEpoch + o.GradientAccumulationSteps - 1) / o.GradientAccumulationSteps;
        long totalSteps = (long)stepsPerEpoch * o.NumEpochs;

        // ---- memory, planned before the first step: the longest batch the plan can form, against the budget
        memoryPlan = PlanMemory(model, trainable, precision, config, train);

        // ---- gradient sync, optimizer and schedule (AdamW over the talker only; its moments and the gradient buckets on the
        // masters' device). With --zero_stage 1 or 2 and several ranks, each rank keeps AdamW's state for its partition only.
        using var sync = new GradientSynchronizer(trainable.MasterParameters, collectives, BucketAssignment.CapBytes(o.BucketSizeMb),
            precision == MixedPrecision.Bf16 ? trainable.ComputeParameters : null, zeroStage: comm.WorldSize > 1 ? o.ZeroStage : 0);
        var adamW = new AdamWOptions(o.Lr, o.AdamBeta1, o.AdamBeta2, o.AdamEpsilon, o.WeightDecay);
        using ITrainingOptimizer optimizer = sync.Partition is null ? new AdamW(trainable.MasterParameters, adamW)
            : new ShardedAdamW(trainable, sync, collectives, adamW, BucketAssignment.CapBytes(o.BucketSizeMb));
        var schedule = new LrSchedule(o.Lr, o.WarmupSteps, totalSteps, LrSchedule.ParseDecay(o.LrScheduler)).Validated();

        long step = 0;
        int startEpoch = 0;
        long startBatch = 0;
        double? bestEval = null;
        long? bestEvalStep = null;
        IReadOnlyList<CheckpointVoice> resumedVoices = [];
        if (resumeDir is { } dir)
        {
            using var loaded = TrainingCheckpoint.Load(dir);
            CheckpointLoader.Load(model, dir, strict: true); // CPU file tensors copied into the device's weights
            trainable.CopyMasterToCompute();
            optimizer.LoadState(loaded.Optimizer, loaded.State.OptimizerStep);
            (step, startEpoch, startBatch) = (loaded.State.GlobalStep, loaded.State.Epoch, loaded.State.BatchInEpoch);
            if (resumeStart is { } at) (startEpoch, startBatch) = (at.Epoch, at.NextBatch); // moved by a new global batch
            (bestEval, bestEvalStep) = (loaded.State.BestEvalLoss, loaded.State.BestEvalStep);
            resumedVoices = CheckpointVoices.Read(loaded.Directory);
            if (loaded.State.Seed != (ulong)o.Seed)
                throw new ArgumentException($"--seed {o.Seed} differs from the checkpoint's {loaded.State.Seed} ({dir}): the data order would change mid-run");
            Log($"resumed from {dir}: step {step}, epoch {startEpoch}, batch {startBatch}");
        }

        // The run's voices, which every checkpoint carries so it speaks by name: per speaker the frozen speaker encoder's mean
        // over its training rows, computed once (a resumed run takes them from its checkpoint). Rank 0 alone writes checkpoints.
        var speakers = train.Records.Select(SpeakerOf).Distinct().Order(StringComparer.Ordinal).ToList();
        IReadOnlyList<CheckpointVoice> voices = !Main ? []
            : resumedVoices.Select(v => v.Name).Order(StringComparer.Ordinal).SequenceEqual(speakers) ? resumedVoices : RunVoices(model, train, config.Talker, speakers);

        // Every rank starts from rank 0's weights (a resumed run loaded them from the same files), and checks it.
        sync.BroadcastParameters(root: 0);
        trainable.CopyMasterToCompute();
        sync.VerifyParametersInSync();
        optimizer.Start(); // ZeRO takes each rank's slice of the masters (in bf16 releasing the whole ones)

        // ---- the plan: leased from the coordinator (embedded in rank 0 by default), grouped by length
        var planSettings = PlanSettings.Bucketed(train.PlanLengths, o.Seed, o.BatchSize, o.BucketWindow);
        using var plan = RunPlans.Open(o.Coordinator, planSettings, new Qwen3Tts.Coordinator.PlanPosition(startEpoch, startBatch),
            fresh: o.ResumeFromCheckpoint is null, comm, o.OutputModelPath, CoordinatorToken, TimeSpan.FromSeconds(o.HeartbeatTimeout), log,
            failure =>
            {
                // A collective with a dead rank never returns: end the job from here.
                Console.Error.WriteLine($"error: rank {comm.Rank} of {comm.WorldSize}: the coordinator stopped the run: {failure.Message}");
                Console.Error.Flush();
                comm.Abort(1);
            }, o.AllowNewGlobalBatch);
        if (startBatch > batchesPerEpoch)
            throw new ArgumentException($"the checkpoint resumes at batch {startBatch} of epoch {startEpoch}, but an epoch has {batchesPerEpoch} global batches now: train with the run's --batch_size and world size");

        // Only rank 0 talks to WandB. Sending happens off this thread; an unreachable server never stops training.
        using var run = Main ? WandbRun.Start(Wandb ?? WandbSettings.Resolve(EnvVars.Snapshot(), new WandbFlags(o.UseWandb, o.WandbProject, o.WandbRunName)),
            o.OutputModelPath, WandbConfig(comm.WorldSize), log) : null;
        wandb = run;
        wandb?.SetSummary("train/icl_samples", train.IclCount); // both kinds counted, whatever --train_prompt
        wandb?.SetSummary("train/xvector_samples", train.Count - train.IclCount);

        Log($"training {train.Count} samples, {o.NumEpochs} epochs × {stepsPerEpoch} steps = {totalSteps} optimizer steps; " +
            $"global batch {o.BatchSize} per rank × {comm.WorldSize} ranks × {o.GradientAccumulationSteps} accumulation = {globalBatch * o.GradientAccumulationSteps} samples per step; " +
            $"{o.MixedPrecision} on {device}{Zero(sync, trainable)}{(o.GradientCheckpointing == "off" ? "" : $"; gradient checkpointing: {o.GradientCheckpointing}")}; loss alignment {o.LossAlignment.ToString().ToLowerInvariant()}; {collectives.Backend}; {plan.Description}");
        if (Main)
        {
            var lengths = planSettings.Lengths!;
            double grouped = EpochPlan.PaddingFraction(planSettings.GlobalBatches(0, comm.WorldSize), lengths, comm.WorldSize);
            double random = EpochPlan.PaddingFraction(EpochPlan.GlobalBatches(train.Count, o.Seed, 0, globalBatch), lengths, comm.WorldSize);
            Log(o.BucketWindow > 1
                ? string.Create(CultureInfo.InvariantCulture, $"length grouping (windows of {o.BucketWindow} global batches): {grouped:P1} of the codec frames each rank computes are padding; random batching would pad {random:P1}")
                : string.Create(CultureInfo.InvariantCulture, $"random batching (--bucket_window {o.BucketWindow}): {random:P1} of the codec frames each rank computes are padding"));
        }

        TrainerState State(int epoch, long batchInEpoch) => new()
        {
            GlobalStep = step,
            Epoch = epoch,
            BatchInEpoch = batchInEpoch,
            OptimizerStep = optimizer.StepCount,
            BestEvalLoss = bestEval,
            BestEvalStep = bestEvalStep,
            LrSchedule = new LrScheduleState(o.LrScheduler, new Dictionary<string, double>
            {
                ["lr"] = o.Lr, ["warmup_steps"] = o.WarmupSteps, ["total_steps"] = totalSteps,
            }),
            Seed = (ulong)o.Seed,
            BaseModel = Path.GetFullPath(o.InitModelPath),
            Batch = new BatchGeometry(o.BatchSize, comm.WorldSize, o.GradientAccumulationSteps),
            ZeroStage = comm.WorldSize > 1 ? o.ZeroStage : 0,
        };
        void Save(string dir, int epoch, long batchInEpoch)
        {
            using var span = Telemetry.Source.StartActivity(Telemetry.CheckpointSpan)?.SetTag("qwen3tts.checkpoint.dir", dir);
            long started = Stopwatch.GetTimestamp();
            sync.VerifyParametersInSync(computeCopy: trainable.MastersReleased); // a checkpoint of diverged replicas would be silently wrong
            using var scope = NewDisposeScope();
            if (!Main) optimizer.ServeCheckpoint(); // with ZeRO rank 0 gathers the masters and the optimizer state tensor by tensor
            else
            {
                var checkpoint = optimizer.CheckpointTensors(model.state_dict().Select(kv => (kv.Key, kv.Value)));
                try
                {
                    TrainingCheckpoint.Save(dir, model.Config.Json, checkpoint.Weights, o.InitModelPath, checkpoint.Optimizer, State(epoch, batchInEpoch),
                        voices: voices, fill: checkpoint.Fill);
                }
                finally { optimizer.EndCheckpoint(); }
                plan.CheckpointSaved(step, dir, new Qwen3Tts.Coordinator.PlanPosition(epoch, batchInEpoch));
            }
            Telemetry.CheckpointDuration.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
        }

        // ---- the loop
        double? lastLoss = null;
        double trainSeconds = 0;
        var window = new LossWindow();
        var clock = Stopwatch.StartNew();
        int epochsCompleted = startEpoch;
        bool firstStepMeasured = false;
        Progress?.Begin(step, totalSteps);
        for (int epoch = startEpoch; epoch < o.NumEpochs; epoch++)
        {
            for (long b = epoch == startEpoch ? startBatch : 0; b < batchesPerEpoch; b += o.GradientAccumulationSteps)
            {
                long started = Stopwatch.GetTimestamp();
                var micro = Enumerable.Range(0, (int)Math.Min(o.GradientAccumulationSteps, batchesPerEpoch - b)).Select(i => plan.Batch(epoch, b + i)).ToList();
                var stats = TrainStep(trainable, optimizer, sync, schedule.At(step), train, micro, step, stopRequested: plan.StopRequested is not null);
                trainSeconds += Stopwatch.GetElapsedTime(started).TotalSeconds;
                step++;
                if (!firstStepMeasured && device.type == DeviceType.CPU)
                {
                    firstStepMeasured = true;
                    using var self = Process.GetCurrentProcess();
                    Log(string.Create(CultureInfo.InvariantCulture, $"memory after the first step: peak resident {self.PeakWorkingSet64 / 1e9:F2} GB (planned {memoryPlan!.Total / 1e9:F2} GB)"));
                }
                lastLoss = stats.Loss;
                window.Add(stats);
                Telemetry.RecordStep(stats.Loss, stats.TalkerLoss, stats.SubTalkerLoss, stats.Lr, stats.GradNorm, stats.Samples, stats.Tokens, stats.Seconds);
                Progress?.Step(epoch, step, stats.Loss, stats.Lr, stats.Samples / Math.Max(1e-9, stats.Seconds));

                if (step % o.LoggingSteps == 0)
                {
                    double samplesPerSecond = window.SamplesPerSecond(clock), tokensPerSecond = window.TokensPerSecond(clock);
                    Log(string.Create(CultureInfo.InvariantCulture,
                        $"epoch {epoch} step {step}/{totalSteps} loss {stats.Loss:F4} (talker {stats.TalkerLoss:F4}, sub-talker {stats.SubTalkerLoss:F4}) " +
                        $"avg {window.MeanLoss:F4} lr {stats.Lr:E3} grad_norm {stats.GradNorm:F3} {samplesPerSecond:F1} samples/s"));
                    Metrics(step, ("train/loss", stats.Loss), ("train/talker_loss", stats.TalkerLoss), ("train/sub_talker_loss", stats.SubTalkerLoss),
                        ("train/avg_loss", window.MeanLoss), ("train/learning_rate", stats.Lr), ("train/grad_norm", stats.GradNorm),
                        ("train/epoch", epoch + (double)(b + micro.Count) / batchesPerEpoch), ("train/samples_per_second", samplesPerSecond),
                        ("train/tokens_per_second", tokensPerSecond), ("train/time_share_data", window.TimeShare(TrainPhase.Data)),
                        ("train/time_share_forward", window.TimeShare(TrainPhase.Forward)), ("train/time_share_backward", window.TimeShare(TrainPhase.Backward)),
                        ("train/time_share_communication", window.TimeShare(TrainPhase.Communication)),
                        ("train/time_share_optimizer", window.TimeShare(TrainPhase.Optimizer)), ("train/memory_gb", Environment.WorkingSet / 1e9));
                    window.Reset(clock);
                }
                long nextBatch = b + micro.Count;
                plan.StepFinished(step, new Dictionary<string, double> { ["train/loss"] = stats.Loss, ["train/learning_rate"] = stats.Lr, ["train/grad_norm"] = stats.GradNorm },
                    new Qwen3Tts.Coordinator.PlanPosition(epoch, nextBatch));
                if (validation is not null && o.EvalSteps > 0 && step % o.EvalSteps == 0)
                    Evaluate(epoch, nextBatch);
                if (o.SaveSteps > 0 && step % o.SaveSteps == 0)
                {
                    Save(CheckpointRotation.StepDir(o.OutputModelPath, step), epoch, nextBatch);
                    if (Main && o.SaveTotalLimit is { } limit) CheckpointRotation.Prune(o.OutputModelPath, limit);
                }
                // Every rank saw the same all-reduced stop flag in this step, so every rank takes this branch together.
                bool stopByCoordinator = stats.StopRequested;
                if (stopByCoordinator || StopAfterSteps is { } stop && step >= stop)
                {
                    Save(CheckpointRotation.LastDir(o.OutputModelPath), epoch, nextBatch);
                    Log(stopByCoordinator
                        ? $"stopped by the coordinator after {step} steps ({plan.StopRequested ?? "another rank saw the request"}); resume with --resume_from_checkpoint latest"
                        : $"stopped after {step} steps; resume with --resume_from_checkpoint latest");
                    plan.Finish();
                    Progress?.Dispose();
                    return new TrainingResult(step, epochsCompleted, lastLoss, bestEval, o.OutputModelPath, trainSeconds);
                }
            }
            epochsCompleted = epoch + 1;
            if (validation is not null) Evaluate(epoch + 1, 0, endOfEpoch: true);
            else if (o.EvalSentences is not null) Metrics(step, Speak()); // no evaluation to ride on: the samples come at each epoch's end
            Save(CheckpointRotation.EpochDir(o.OutputModelPath, epoch + 1), epoch + 1, 0);
            if (Main && o.ExportEveryEpoch)
                ExportVoice(CheckpointRotation.EpochDir(o.OutputModelPath, epoch + 1), Path.Combine(o.OutputModelPath, $"epoch-{epoch + 1}-custom_voice"));
        }
        Save(CheckpointRotation.LastDir(o.OutputModelPath), o.NumEpochs, 0);
        plan.Finish();
        Progress?.Dispose(); // the live display stops before the export's line
        // custom_voice/ from the best checkpoint when validation chose one, else from the final weights.
        string exportFrom = validation is not null && Directory.Exists(CheckpointRotation.BestDir(o.OutputModelPath))
            ? CheckpointRotation.BestDir(o.OutputModelPath) : CheckpointRotation.LastDir(o.OutputModelPath);
        if (Main) ExportVoice(exportFrom, Path.Combine(o.OutputModelPath, "custom_voice"));
        publisher?.Finish(RunFacts());
        wandb?.Finish(0);
        return new TrainingResult(step, epochsCompleted, lastLoss, bestEval, o.OutputModelPath, trainSeconds);

        // The listening samples rank 0 speaks with the current weights; every rank calls it (with ZeRO rank 0 gathers the
        // masters it speaks with).
        IReadOnlyList<WandbAudio> Speak()
        {
            if (o.EvalSentences is null) return [];
            using var whole = optimizer.WholeMasters();
            if (samples is null) return [];
            var (audio, summary) = samples.Write(model, train, step, o.OutputModelPath, o.MultiSpeaker ? voices : null);
            Log(summary);
            return audio;
        }

        // What a model card says of the run besides the checkpoint's own numbers.
        HubRunFacts RunFacts()
        {
            var languages = o.Language is { } fixedLanguage && fixedLanguage != "auto" ? [fixedLanguage]
                : train.Records.Select(r => r.Language?.Trim().ToLowerInvariant()).OfType<string>().Where(l => l.Length > 0 && l != "auto").Distinct().Order(StringComparer.Ordinal).ToList();
            var secrets = Qwen3Tts.Entry.SecretValues.Current(("--hub_token", HubToken), ("--coordinator_token", CoordinatorToken));
            return new HubRunFacts(languages, lastLoss, totalSteps, o.NumEpochs,
                $"{o.BatchSize} per rank × {comm.WorldSize} ranks × {o.GradientAccumulationSteps} accumulation = {globalBatch * o.GradientAccumulationSteps} samples per step",
                string.Create(CultureInfo.InvariantCulture, $"{o.Lr:g4} peak, {o.LrScheduler} after {o.WarmupSteps} warmup steps, AdamW weight decay {o.WeightDecay:g4}"),
                o.LossAlignment.ToString().ToLowerInvariant(),
                CommandLine is { } args ? Qwen3Tts.Entry.SecretValues.CommandLine("qwen3tts-rank", args, secrets) : "(run in-process)");
        }

        void Evaluate(int epoch, long batchInEpoch, bool endOfEpoch = false)
        {
            double loss, talker, sub;
            using (var span = Telemetry.Source.StartActivity(Telemetry.EvalSpan))
            {
                (loss, talker, sub) = EvalLoss(trainable, validation!);
                span?.SetTag("qwen3tts.eval.loss", loss);
            }
            Telemetry.EvalLoss.Record(loss);
            Log(string.Create(CultureInfo.InvariantCulture, $"eval step {step}: loss {loss:F4} (talker {talker:F4}, sub-talker {sub:F4})"));
            var audio = Speak();
            if (endOfEpoch) // the community pipelines' end-of-epoch validation number
                Metrics(step, audio, ("eval/loss", loss), ("eval/talker_loss", talker), ("eval/sub_talker_loss", sub), ("eval/epoch_loss", loss));
            else
                Metrics(step, audio, ("eval/loss", loss), ("eval/talker_loss", talker), ("eval/sub_talker_loss", sub));
            if (bestEval is null || loss < bestEval)
            {
                (bestEval, bestEvalStep) = (loss, step);
                wandb?.SetSummary("eval/best_loss", loss);
                Save(CheckpointRotation.BestDir(o.OutputModelPath), epoch, batchInEpoch);
                publisher?.BestChanged(RunFacts());
            }
        }
    }

    /// <summary>One optimizer step over up to gradient_accumulation_steps global micro-batches, of which this rank
    /// computes its share. Each share's mean losses are weighted by its share of the whole window's label tokens
    /// (known on every rank from the records), so the gradient summed over ranks and micro-steps is the gradient of
    /// the mean over every token of the global window: N ranks × batch B equal one process with batch N·B, k
    /// micro-batches equal one k-times batch, and a short window at the end of an epoch averages what it has.
    /// Each phase is timed and traced from outside (<see cref="StepTimer"/>): data, forward, backward, communication
    /// (the wait that is left exposed, and the loss all-reduce), optimizer (clip, step, copy to the compute weights).</summary>
    /// <param name="stopRequested">this rank saw the coordinator's stop request; the flag rides on the loss all-reduce, so
    /// the step's result says whether any rank saw it and every rank decides alike.</param>
    StepStats TrainStep(TrainableModel trainable, ITrainingOptimizer optimizer, GradientSynchronizer sync, double lr, SftDataSource data, IReadOnlyList<PlannedBatch> micro, long step,
        bool stopRequested)
    {
        using var timer = new StepTimer(step + 1);
        using var scope = NewDisposeScope();
        var all = micro.SelectMany(m => m.Global).ToList();
        double talkerTokens = data.TalkerTokens(all);
        double subTokens = data.SubTalkerTokens(all, o.LossAlignment);
        // The synchronizer averages over ranks; scaling by the world size turns that average into the sum we want.
        double world = comm.WorldSize;
        // Talker loss sum, sub-talker loss sum, ranks asked to stop: on the device, next to the losses added into it.
        var sums = zeros(3, dtype: ScalarType.Float64, device: device);
        if (stopRequested) sums[2] = 1.0;
        bool overlap = o.GradSync == "overlap";
        for (int m = 0; m < micro.Count; m++)
        {
            var indices = micro[m].Share;
            // Gradients are reduced after the window's last micro-step (after every one with ZeRO-2, into the rank's shard).
            // In overlap mode the synchronizer watches that forward read the parameters and reduces each bucket as soon
            // as backward has completed it.
            bool reduces = m == micro.Count - 1 || sync.ReducesEveryMicroStep;
            bool overlapped = overlap && reduces;
            using (overlapped ? sync.ObserveLastMicroStep() : null)
            if (indices.Length > 0) // a short tail batch may leave this rank nothing: it contributes zero gradients
            {
                using var microScope = NewDisposeScope();
                SftBatch batch;
                using (timer.Phase(TrainPhase.Data))
                    batch = data.Batch(indices, device);
                using var _ = batch;
                SftLoss loss;
                Tensor scaled;
                using (timer.Phase(TrainPhase.Forward))
                {
                    var speakers = SftCollate.SpeakerEmbeddings(trainable.SpeakerEncoder!, batch);
                    loss = SftObjective.Compute(trainable.ComputeTalker, batch, speakers, o.LossAlignment, o.SubTalkerWeight);
                    scaled = world * (loss.TalkerLoss * (loss.TalkerTokens / talkerTokens) + o.SubTalkerWeight * loss.SubTalkerLoss * (loss.SubTalkerTokens / subTokens));
                }
                using (timer.Phase(TrainPhase.Backward))
                {
                    scaled.backward();
                    sums[0] += loss.TalkerLoss.detach().to(ScalarType.Float64) * loss.TalkerTokens;
                    sums[1] += loss.SubTalkerLoss.detach().to(ScalarType.Float64) * loss.SubTalkerTokens;
                }
            }
            // The overlapped step's gradients are in the buckets already (WaitAll drops the bf16 copies); with one
            // rank nothing was tapped and they are folded in here as on every other micro-step.
            // With several ranks they go into the synchronizer's fp32 buckets instead of master gradients.
            if (!overlapped || !sync.ReducesAcrossRanks)
                using (timer.Phase(TrainPhase.Backward, span: false)) // timed as backward, under the micro-step's one backward span
                    if (!sync.Accumulate()) trainable.AccumulateGradsToMaster();
            if (reduces)
                using (timer.Phase(TrainPhase.Communication)) // one span per reducing micro-step, the loss sums with the last
                {
                    if (overlap) sync.WaitAll(); // what is still on the wire; sync.LastStep.ExposedSeconds is this wait
                    else sync.SynchronizeAll();
                    if (m == micro.Count - 1) collectives.AllReduceSum(sums);
                }
        }
        double norm;
        using (timer.Phase(TrainPhase.Optimizer))
        {
            norm = optimizer.ClipGradNorm(o.MaxGradNorm); // with ZeRO the global norm from every rank's partition
            optimizer.Step(lr);
            optimizer.ZeroGrad();
            trainable.CopyMasterToCompute();
        }
        var reduced = sums.cpu().data<double>().ToArray();
        double talker = reduced[0] / talkerTokens, sub = reduced[1] / subTokens;
        return new StepStats(talker + o.SubTalkerWeight * sub, talker, sub, lr, norm, all.Count, (long)talkerTokens,
            timer.ElapsedSeconds, [.. timer.PhaseSeconds], StopRequested: reduced[2] > 0);
    }

    /// <summary>Mean validation losses over every label token (fixed order, no gradients), each rank scoring its
    /// share of every batch and the sums all-reduced, so every rank gets the same numbers (and the same best/ decision).</summary>
    (double Loss, double Talker, double Sub) EvalLoss(TrainableModel trainable, SftDataSource data)
    {
        using var scope = NewDisposeScope();
        var sums = zeros(4, dtype: ScalarType.Float64, device: device); // talker sum, sub sum, talker tokens, sub tokens
        using (no_grad())
            foreach (var global in Enumerable.Range(0, data.Count).Chunk(o.BatchSize * comm.WorldSize))
            {
                var indices = EpochPlan.Share(global, comm.Rank, comm.WorldSize);
                if (indices.Length == 0) continue;
                using var batchScope = NewDisposeScope();
                using var batch = data.Batch(indices, device);
                var speakers = SftCollate.SpeakerEmbeddings(trainable.SpeakerEncoder!, batch);
                var loss = SftObjective.Compute(trainable.ComputeTalker, batch, speakers, o.LossAlignment, o.SubTalkerWeight);
                sums[0] += loss.TalkerLoss.to(ScalarType.Float64) * loss.TalkerTokens;
                sums[1] += loss.SubTalkerLoss.to(ScalarType.Float64) * loss.SubTalkerTokens;
                sums[2] += loss.TalkerTokens;
                sums[3] += loss.SubTalkerTokens;
            }
        collectives.AllReduceSum(sums);
        var v = sums.cpu().data<double>().ToArray();
        double talker = v[0] / v[2], sub = v[1] / v[3];
        return (talker + o.SubTalkerWeight * sub, talker, sub);
    }

    /// <summary>The ZeRO part of the run's summary line.</summary>
    string Zero(GradientSynchronizer sync, TrainableModel trainable) => sync.Partition is { } p
        ? string.Create(CultureInfo.InvariantCulture, $"; ZeRO stage {o.ZeroStage}: each rank holds AdamW's state for {p.ShardNumel:N0} of the {trainable.ComputeParameters.Sum(m => m.Parameter.numel()):N0} trainable elements")
            + (trainable.MastersReleased ? ", and the fp32 masters of those only (the bf16 copy is all-gathered from them)" : "")
        : o.ZeroStage > 0 ? $"; --zero_stage {o.ZeroStage} has nothing to shard with one rank" : "";

    /// <summary>Who a record speaks as: with --multi_speaker its --speaker_column field (speaker_id; --speaker_name when it has
    /// none), else --speaker_name.</summary>
    string SpeakerOf(TrainingRecord r) => o.MultiSpeaker && r.Field(o.SpeakerColumn) is { } id && !string.IsNullOrWhiteSpace(id) ? id.Trim() : o.SpeakerName;

    /// <summary>The run's voices: per speaker, the mean speaker embedding over its training rows' reference clips (fp32),
    /// not the first batch's as the reference keeps, in its own codec row (<see cref="CodecRows.SpeakerRows"/>; one voice:
    /// row 3000, as upstream). Each distinct clip is embedded once and counted for the rows that use it.</summary>
    IReadOnlyList<CheckpointVoice> RunVoices(Qwen3TtsModel model, SftDataSource train, TalkerConfig talker, IReadOnlyList<string> speakers)
    {
        var rows = o.MultiSpeaker ? CodecRows.SpeakerRows(talker, speakers.Count) : [VoiceExport.SpeakerRow];
        using var scope = NewDisposeScope();
        var mean = new SpeakerEmbeddingMean();
        var clips = train.DistinctClips(SpeakerOf);
        using (no_grad())
            foreach (var (index, count) in clips)
            {
                using var batchScope = NewDisposeScope();
                using var batch = train.Batch([index], device);
                mean.Add(SpeakerOf(train.Records[index]), SftCollate.SpeakerEmbeddings(model.SpeakerEncoder!, batch), count); // summed in fp64 on the CPU
            }
        var voices = speakers.Select((name, i) => new CheckpointVoice(name, rows[i], mean.Mean(name).data<float>().ToArray())).ToList();
        if (o.MultiSpeaker)
        {
            var records = train.Records.CountBy(SpeakerOf).ToDictionary();
            var clipCounts = clips.CountBy(c => SpeakerOf(train.Records[c.Index])).ToDictionary();
            Log("speakers: " + string.Join(", ", voices.Select(v => $"{v.Name} row {v.CodecRow} ({records[v.Name]} records, {clipCounts[v.Name]} clips)")));
        }
        return voices;
    }

    /// <summary>A custom-voice export of a checkpoint just written: its weights with each voice's row set to its mean
    /// embedding (what <c>qwen3tts export-voice --checkpoint</c> writes from the same folder).</summary>
    void ExportVoice(string checkpoint, string dir)
    {
        VoiceExport.FromCheckpoint(checkpoint, dir, o.MultiSpeaker ? null : o.SpeakerName);
        log.WriteLine($"exported custom voice{(o.MultiSpeaker ? "s" : $" '{o.SpeakerName}'")} from {Path.GetFileName(checkpoint)}/ to {dir}");
    }

    MemoryPlan? memoryPlan;

    /// <summary>--max_speakers: the records of the speakers with the most audio (frames; ties by name), the rest left out and logged.</summary>
    IReadOnlyList<TrainingRecord> KeepSpeakers(IReadOnlyList<TrainingRecord> records, int most)
    {
        var ranked = records.GroupBy(SpeakerOf).Select(g => (Name: g.Key, Frames: g.Sum(r => (long)r.AudioCodes.Frames)))
            .OrderByDescending(x => x.Frames).ThenBy(x => x.Name, StringComparer.Ordinal).ToList();
        if (ranked.Count <= most) return records;
        var kept = ranked.Take(most).Select(x => x.Name).ToHashSet(StringComparer.Ordinal);
        var result = records.Where(r => kept.Contains(SpeakerOf(r))).ToList();
        Log($"--max_speakers {most}: training {string.Join(", ", ranked.Take(most).Select(x => x.Name))}; left out {records.Count - result.Count} records of {ranked.Count - most} other speakers");
        return result;
    }

    /// <summary>The memory a step of the longest batch needs (<see cref="MemoryPlan"/>), logged, and refused with the
    /// numbers and the fixes when it exceeds --max_memory_gb (default on the CPU: the memory available to this rank).</summary>
    MemoryPlan PlanMemory(Qwen3TtsModel model, TrainableModel trainable, MixedPrecision precision, Qwen3TtsConfig config, SftDataSource train)
    {
        long total = model.parameters().Sum(p => p.numel());
        long trainableCount = trainable.MasterParameters.Sum(p => p.Parameter.numel());
        long largestBucket = BucketAssignment.LargestBucketBytes(
            trainable.MasterParameters.Select(p => new BucketParameter(p.Name, p.Parameter.numel(), 4)).ToList(), BucketAssignment.CapBytes(o.BucketSizeMb));
        var shapes = train.Shapes;
        MemoryPlan For(BatchShape batch, Qwen3Tts.Model.Layers.GradientCheckpointing? checkpointing = null) => MemoryPlan.Estimate(config.Talker, total, trainableCount,
            precision == MixedPrecision.Bf16, comm.WorldSize, batch, device.type == DeviceType.CUDA, o.ZeroStage, BucketAssignment.CapBytes(o.BucketSizeMb),
            largestBucket, checkpointing ?? o.Checkpointing);
        var plan = For(BatchShape.Longest(o.BatchSize, shapes));
        // The default budget: what this rank may still take, plus what it already holds (its weights and runtime are in the plan).
        var (budget, source) = o.MaxMemoryGb is double gb ? ((long)(gb * 1e9), "--max_memory_gb")
            : device.type == DeviceType.CPU ? (MemoryBudget.AvailableToRank(EnvVars.Snapshot()), "the memory available to this rank")
            : CudaMemory.FreeBytes(device.index, Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES")) is long free
                ? (free + plan.Weights + plan.Runtime, $"{device}'s free memory (NVML) and what this rank holds on it")
                : (0L, "");
        Log(budget > 0 ? string.Create(CultureInfo.InvariantCulture, $"memory plan per rank: {plan}; budget {budget / 1e9:F2} GB ({source})")
            : $"memory plan per rank: {plan} (no NVML to read {device}'s free memory: the budget is checked only with --max_memory_gb)");
        if (budget <= 0 || plan.Total <= budget) return plan;

        // The fixes, sized: the longest target that fits at this batch size, and whether batch size 1 fits.
        int textRows = shapes.Max(s => s.Positions - s.Frames);
        int fits = 0;
        for (int lo = 1, hi = shapes.Max(s => s.Frames); lo <= hi;)
        {
            int mid = lo + (hi - lo) / 2;
            if (For(new BatchShape(o.BatchSize, textRows + mid, (long)o.BatchSize * mid)).Total <= budget) { fits = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        var single = For(BatchShape.Longest(1, shapes));
        var fixes = new List<string>();
        var recomputed = For(BatchShape.Longest(o.BatchSize, shapes), Qwen3Tts.Model.Layers.GradientCheckpointing.All);
        if (o.Checkpointing != Qwen3Tts.Model.Layers.GradientCheckpointing.All && recomputed.Total <= budget)
            fixes.Add($"--gradient_checkpointing all recomputes the layers' activations in backward ({recomputed.Total / 1e9:F2} GB, about one more forward per step)");
        if (fits > 0) fixes.Add(string.Create(CultureInfo.InvariantCulture, $"--max_frames {fits} (--max_seconds {fits / RecordRules.FramesPerSecond:F1}) with --skip_bad_samples leaves out the longer records"));
        if (o.BatchSize > 1 && single.Total <= budget)
            fixes.Add($"--batch_size 1 --gradient_accumulation_steps {o.GradientAccumulationSteps * o.BatchSize} keeps the global batch ({single.Total / 1e9:F2} GB)");
        if (fixes.Count == 0) fixes.Add(string.Create(CultureInfo.InvariantCulture, $"the weights and optimizer alone need {(plan.Total - plan.Activations) / 1e9:F2} GB: a larger device, or fewer ranks per node"));
        throw new ArgumentException(string.Create(CultureInfo.InvariantCulture,
            $"memory plan: a step of the longest batch needs {plan} — more than the budget of {budget / 1e9:F2} GB ({source}). Fixes: {string.Join("; or ", fixes)}"));
    }

    /// <summary>Reads and checks a split up front (records of a JSONL file, a Parquet file or a folder of Parquet shards,
    /// then each distinct reference clip): a bad record stops the run naming file, line (or row) and field, or with --skip_bad_samples is listed in OUTPUT/skipped_{split}_samples.jsonl.</summary>
    SftDataSource OpenData(string path, string? folderSplit, int? max, string split, Qwen3TextTokenizer tokenizer, Qwen3TtsConfig config)
    {
        var rules = new RecordRules(config, tokenizer.EncodeChat, o.MaxFrames, o.AllowAbsolutePaths, o.Language);
        var refusals = new Refusals(o.SkipBadSamples);
        // --split / --validation_split pick shards in a folder (a dataset by id is one); a single file has no splits.
        var records = TrainingData.Read(path, refusals, Directory.Exists(path) ? folderSplit : null, rules.Bounds, JsonlTrainingData.LineLimit(o.MaxLineMb));
        if (max is { } n) records = records.Take(n).ToList();
        if (split == "train" && o.MultiSpeaker && o.MaxSpeakers is int most) records = KeepSpeakers(records, most);
        // The rules and the reference clips are checked once, by rank 0; the other ranks take its verdict, so every rank
        // trains the same records (and none starts on one rank 0 refused) whatever its own view of the files.
        // ICL records without ref_codes: their clips encoded by the model's speech tokenizer, loaded only if needed and released after.
        using var codec = Main && o.Prompt.Kind != TrainPromptKind.XVector ? new ReferenceCodec(Path.Combine(o.InitModelPath, "speech_tokenizer")) : null;
        var data = Main ? SftDataSource.Open(records, tokenizer, config, rules, refusals, o.Prompt, codec is { Exists: true } ? codec.Encode : null) : null;
        if (comm.WorldSize > 1) data = ShareVerdict(path, records, data, refusals, tokenizer, config, rules.Languages!);
        if (refusals.BlankLineWarning is { } blank) Log($"warning: {blank}");
        refusals.ThrowIfAny();
        Log($"{split}: {rules.Languages!.Describe(data!.Records)}");
        if (o.Prompt.Kind != TrainPromptKind.XVector)
            Log($"{split}: {data.IclCount} samples on the ICL prompt, {data.Count - data.IclCount} on the x-vector prompt (--train_prompt {o.TrainPrompt}" +
                (o.Prompt.Kind == TrainPromptKind.Mixed ? string.Create(CultureInfo.InvariantCulture, $", --icl_probability {o.IclProbability:0.##}") : "") +
                $"{(data.Records.Count(r => string.IsNullOrWhiteSpace(r.RefText)) is > 0 and var plain ? $"; {plain} have no ref_text" : "")})");
        if (refusals.Count > 0)
        {
            string report = Path.Combine(o.OutputModelPath, $"skipped_{split}_samples.jsonl");
            if (Main) JsonlTrainingData.WriteSkipReport(report, refusals.Kept);
            Log($"skipped {refusals.Count} malformed {split} records (see {report})");
        }
        return data!;
    }

    /// <summary>Rank 0's verdict on every record read (kept or refused, and whether the run stops) to every rank.</summary>
    SftDataSource ShareVerdict(string path, IReadOnlyList<TrainingRecord> records, SftDataSource? checkedByRank0, Refusals refusals,
        Qwen3TextTokenizer tokenizer, Qwen3TtsConfig config, LanguageChoice languages)
    {
        var count = BitConverter.GetBytes((long)records.Count);
        comm.Broadcast(count, root: 0);
        if (BitConverter.ToInt64(count) != records.Count)
            throw new InvalidDataException($"{path}: rank {comm.Rank} reads {records.Count} records where rank 0 reads {BitConverter.ToInt64(count)}; every rank must see the same data");
        var verdict = new byte[records.Count + 1]; // 1 = kept; the last byte: 1 = rank 0 stops the run
        if (Main)
        {
            var kept = checkedByRank0!.Records.Select(r => (r.Source, r.Line)).ToHashSet();
            for (int i = 0; i < records.Count; i++) verdict[i] = kept.Contains((records[i].Source, records[i].Line)) ? (byte)1 : (byte)0;
            verdict[^1] = refusals.Count > 0 && !refusals.Skip ? (byte)1 : (byte)0;
        }
        comm.Broadcast(verdict, root: 0);
        // Rank 0 prints the refusals and ends the job; this rank only stops.
        if (!Main && verdict[^1] == 1) throw new DataException(path, 0, "records", "refused by rank 0, which lists them");
        var keptRecords = Main ? checkedByRank0!.Records : records.Where((_, i) => verdict[i] == 1).ToList();
        if (o.Prompt.Kind != TrainPromptKind.XVector) keptRecords = ShareRefCodes(keptRecords);
        return Main ? checkedByRank0! : new SftDataSource(keptRecords, tokenizer, config, languages.IdOf, o.Prompt);
    }

    /// <summary>The reference codes rank 0 encoded for the ICL records (one grid per distinct clip, and per record its
    /// grid), to every rank: the codec runs once, and every rank trains on the same codes.</summary>
    IReadOnlyList<TrainingRecord> ShareRefCodes(IReadOnlyList<TrainingRecord> kept)
    {
        byte[] payload = [];
        if (Main)
        {
            var grids = new Dictionary<CodeGrid, int>(ReferenceEqualityComparer.Instance);
            var index = kept.Select(r => o.Prompt.IsIcl(r) ? (grids.TryGetValue(r.RefCodes!, out int g) ? g : grids[r.RefCodes!] = grids.Count) : -1).ToArray();
            using var stream = new MemoryStream();
            using (var w = new BinaryWriter(stream))
            {
                w.Write(grids.Count);
                foreach (var grid in grids.Keys)
                {
                    var codes = grid.ToArray();
                    w.Write(codes.GetLength(0));
                    foreach (long c in codes) w.Write((short)c);
                }
                foreach (int i in index) w.Write(i);
            }
            payload = stream.ToArray();
        }
        var length = BitConverter.GetBytes((long)payload.Length);
        comm.Broadcast(length, root: 0);
        if (!Main) payload = new byte[BitConverter.ToInt64(length)];
        comm.Broadcast(payload, root: 0);
        if (Main) return kept;
        using var reader = new BinaryReader(new MemoryStream(payload));
        var table = new CodeGrid[reader.ReadInt32()];
        int groups = kept.Count > 0 ? kept[0].AudioCodes.Codebooks : 16;
        for (int g = 0; g < table.Length; g++)
        {
            var codes = new long[reader.ReadInt32(), groups];
            for (int f = 0; f < codes.GetLength(0); f++) for (int k = 0; k < groups; k++) codes[f, k] = reader.ReadInt16();
            table[g] = new CodeGrid(codes);
        }
        return kept.Select(r => reader.ReadInt32() is var g && g >= 0 ? r with { RefCodes = table[g] } : r).ToList();
    }

    /// <summary>The model's speech tokenizer (speech_tokenizer/) as the encoder of ICL reference clips: loaded on the first
    /// clip, released with the data source's opening.</summary>
    sealed class ReferenceCodec(string dir) : IDisposable
    {
        Qwen3Tts.Model.Codec.SpeechTokenizer? codec;

        public bool Exists => Directory.Exists(dir);

        public long[,] Encode(float[] mono24k) => (codec ??= Qwen3Tts.Model.Codec.SpeechTokenizer.Load(dir)).Encode(mono24k);

        public void Dispose() => codec?.Dispose();
    }

    /// <summary>The run's settings as WandB config (no secrets: the options hold none).</summary>
    Dictionary<string, object?> WandbConfig(int worldSize)
    {
        var json = System.Text.Json.JsonSerializer.SerializeToNode(o, new System.Text.Json.JsonSerializerOptions
        {
            PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower,
            Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() },
        })!.AsObject();
        var config = json.ToDictionary(kv => kv.Key, kv => (object?)kv.Value);
        config["world_size"] = worldSize;
        config["global_batch_size"] = o.BatchSize * worldSize * o.GradientAccumulationSteps;
        return config;
    }

    /// <param name="PhaseSeconds">seconds per <see cref="TrainPhase"/> (indexed by it).</param>
    sealed record StepStats(double Loss, double TalkerLoss, double SubTalkerLoss, double Lr, double GradNorm, int Samples, long Tokens,
        double Seconds, double[] PhaseSeconds, bool StopRequested);

    /// <summary>Running numbers between two log lines.</summary>
    sealed class LossWindow
    {
        double lossSum, stepSeconds;
        readonly double[] phaseSeconds = new double[5];
        int count, samples;
        long tokens;
        TimeSpan since;

        public void Add(StepStats s)
        {
            lossSum += s.Loss;
            count++;
            samples += s.Samples;
            tokens += s.Tokens;
            stepSeconds += s.Seconds;
            for (int i = 0; i < phaseSeconds.Length; i++) phaseSeconds[i] += s.PhaseSeconds[i];
        }

        /// <summary>The phase's share of the steps' wall time since the last reset (the shares sum to a little under 1).</summary>
        public double TimeShare(TrainPhase phase) => phaseSeconds[(int)phase] / Math.Max(1e-9, stepSeconds);

        public double MeanLoss => count == 0 ? double.NaN : lossSum / count;

        public double SamplesPerSecond(Stopwatch clock) => samples / Math.Max(1e-9, (clock.Elapsed - since).TotalSeconds);

        public double TokensPerSecond(Stopwatch clock) => tokens / Math.Max(1e-9, (clock.Elapsed - since).TotalSeconds);

        public void Reset(Stopwatch clock)
        {
            (lossSum, count, samples, tokens, since, stepSeconds) = (0, 0, 0, 0, clock.Elapsed, 0);
            Array.Clear(phaseSeconds);
        }
    }
}
