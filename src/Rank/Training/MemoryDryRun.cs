using System.Globalization;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Rank.Distributed;

namespace Qwen3Tts.Rank.Training;

/// <summary>qwen3tts-rank --dry_run_memory: the <see cref="MemoryPlan"/> of one rank for a model config, world size, ZeRO
/// stage, precision and batch, by category, with the other stages beside it; the parameters are counted on the meta
/// device, so the 1.7B config costs nothing and no weights, data or launcher are needed.</summary>
public static class MemoryDryRun
{
    /// <summary>Clip length planned when neither --max_frames nor --max_seconds is given.</summary>
    public const double DefaultSeconds = 20;

    /// <summary>Text tokens per second of speech assumed for the batch's positions, plus the chat template and codec
    /// prefix rows: generous for the languages the tokenizer covers, so the plan errs high.</summary>
    const double TextTokensPerSecond = 6;
    const int PromptRows = 16;

    public static int Run(TrainingOptions o, int worldSize, TextWriter output)
    {
        if (worldSize < 1) throw new ArgumentException($"--world_size must be at least 1, got {worldSize}");
        if (o.ZeroStage is < 0 or > 2) throw new ArgumentException($"--zero_stage must be 0, 1 or 2, got {o.ZeroStage}");
        bool bf16 = TrainableModel.ParsePrecision(o.MixedPrecision) == MixedPrecision.Bf16;
        if (o.BatchSize < 1) throw new ArgumentException($"--batch_size must be at least 1, got {o.BatchSize}");
        string configPath = Path.Combine(o.InitModelPath, ModelDirectory.ConfigFile);
        if (!File.Exists(configPath)) throw new ArgumentException($"--init_model_path {o.InitModelPath}: no {ModelDirectory.ConfigFile} there");
        var config = Qwen3TtsConfig.Load(configPath);

        long total, trainable, largestBucket;
        using (var model = new Qwen3TtsModel(config, new TorchSharp.torch.Device("meta")))
        {
            var parameters = model.named_parameters().ToList();
            total = parameters.Sum(p => p.parameter.numel());
            var talker = parameters.Where(p => !p.name.StartsWith("speaker_encoder.", StringComparison.Ordinal)).ToList();
            trainable = talker.Sum(p => p.parameter.numel());
            largestBucket = BucketAssignment.LargestBucketBytes(talker.Select(p => new BucketParameter(p.name, p.parameter.numel(), 4)).ToList(),
                BucketAssignment.CapBytes(o.BucketSizeMb));
        }
        int frames = o.MaxFrames ?? (int)Math.Round(DefaultSeconds * RecordRules.FramesPerSecond);
        double seconds = frames / RecordRules.FramesPerSecond;
        var batch = new BatchShape(o.BatchSize, frames + PromptRows + (int)Math.Ceiling(seconds * TextTokensPerSecond), (long)o.BatchSize * frames);
        bool cuda = o.Device.StartsWith("cuda", StringComparison.Ordinal);
        MemoryPlan Plan(int stage) => MemoryPlan.Estimate(config.Talker, total, trainable, bf16, worldSize, batch, cuda, stage, BucketAssignment.CapBytes(o.BucketSizeMb),
            largestBucket, o.Checkpointing);
        var plan = Plan(o.ZeroStage);

        var c = CultureInfo.InvariantCulture;
        string Gb(long bytes) => (bytes / 1e9).ToString("F2", c).PadLeft(8);
        output.WriteLine(string.Create(c, $"memory plan per rank: {Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(o.InitModelPath)))}, " +
            $"{trainable / 1e6:F0} M trainable of {total / 1e6:F0} M parameters, {o.MixedPrecision}, {worldSize} rank{(worldSize == 1 ? "" : "s")}, " +
            $"ZeRO stage {(worldSize > 1 ? o.ZeroStage : 0)}, batch {o.BatchSize} x {seconds:F1} s ({frames} frames, ~{batch.Positions} positions), {(cuda ? "cuda" : "cpu")}"));
        foreach (var (name, bytes) in new (string, long)[]
        {
            ("masters (fp32, with the speaker encoder)", plan.Masters), ("compute copy (bf16)", plan.ComputeCopy), ("gradients", plan.Gradients),
            ("optimizer (AdamW)", plan.Optimizer), ("gradient buckets", plan.Buckets),
            (o.GradientCheckpointing == "off" ? "activations" : $"activations (layers recomputed: {o.GradientCheckpointing})", plan.Activations), ("runtime", plan.Runtime),
        })
            output.WriteLine($"  {name,-42}{Gb(bytes)} GB");
        output.WriteLine($"  {"total",-42}{Gb(plan.Total)} GB");
        output.WriteLine(string.Create(c, $"  {plan.States / (double)trainable:F1} bytes per trainable parameter before activations"));
        if (worldSize > 1)
            output.WriteLine($"at {worldSize} ranks, before activations: " +
                string.Join(", ", Enumerable.Range(0, 3).Select(s => string.Create(c, $"stage {s} {Plan(s).States / 1e9:F2} GB"))));
        return 0;
    }
}
