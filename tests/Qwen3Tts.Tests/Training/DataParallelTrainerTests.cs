using Qwen3Tts.Model;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Rank.Training;
using Qwen3Tts.Tests.Distributed;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Training;

/// <summary>The whole trainer over in-process ranks (the fake communicator): N ranks with per-rank batch B train
/// the model one process trains with batch N·B.</summary>
public class DataParallelTrainerTests : CleansTempDirs
{
    [Theory]
    [InlineData(2, 2, 1)] // 2 ranks × 2, no accumulation  ==  1 × 4
    [InlineData(2, 1, 2)] // 2 ranks × 1, 2 micro-steps     ==  1 × 2, 2 micro-steps
    [InlineData(3, 1, 1)] // 3 ranks × 1 over 8 samples: the tail global batch of 2 leaves rank 2 nothing (zero-filled)
    [InlineData(2, 1, 2, "after_backward")] // the fallback: one blocking reduce after the last backward
    // ZeRO: the optimizer state sharded; gradients reduce-scattered once per step (1) or after every micro-step (2).
    [InlineData(2, 1, 2, "overlap", 1)]
    [InlineData(2, 1, 2, "overlap", 2)]
    [InlineData(3, 1, 2, "after_backward", 1)] // 3 uneven partitions; the tail leaves rank 2 nothing
    [InlineData(3, 1, 2, "after_backward", 2)]
    [InlineData(2, 2, 1, "after_backward", 2, 0.05)] // clipping by the global norm taken from the partitions
    public void N_ranks_train_the_model_of_one_process_with_an_N_times_batch(int world, int perRank, int accumulation, string gradSync = "overlap",
        int zeroStage = 0, double maxGradNorm = 1.0)
    {
        string model = TrainingFixture.TinyModel(21, "dp-model");
        string data = TrainingFixture.DemoData(8, tag: "dp-data");

        TrainingOptions Options(string output, int batch) => new()
        {
            TrainData = data, InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 1,
            BatchSize = batch, GradientAccumulationSteps = accumulation, Lr = 1e-3, LrScheduler = "constant", LoggingSteps = 1000,
            BucketSizeMb = 1, GradSync = gradSync, ZeroStage = zeroStage, MaxGradNorm = maxGradNorm,
            // A large epsilon keeps AdamW from magnifying fp32 rounding in near-zero gradients (with eps = 1e-8 an
            // element whose gradient is ~1e-8 moves by lr·g/(|g|+eps), where a 1e-10 summation difference shows).
            AdamEpsilon = 1e-3,
        };
        string single = TestPaths.NewTempDir("dp-single"), parallel = TestPaths.NewTempDir("dp-parallel");
        var expected = new Trainer(Options(single, perRank * world), TextWriter.Null).Run();

        var results = new TrainingResult[world];
        FakeWorld.Run(world, comm => results[comm.Rank] = new Trainer(Options(parallel, perRank), TextWriter.Null, comm).Run());
        Assert.All(results, r => Assert.Equal(expected.GlobalStep, r.GlobalStep));
        Assert.All(results, r => Assert.Equal(expected.LastLoss!.Value, r.LastLoss!.Value, tolerance: 1e-4));

        using var scope = NewDisposeScope();
        using var a = CheckpointFiles.Open(Path.Combine(single, "last"));
        using var b = CheckpointFiles.Open(Path.Combine(parallel, "last"));
        using var init = CheckpointFiles.Open(model);
        Tensor Init(string name) => init.Read(name);
        // What may differ is fp32 summation order (per-rank partial sums, then the reduce): ~1e-7 relative in the
        // gradients. A lost or mis-scaled rank contribution changes updates by a large fraction of lr (1e-3).
        foreach (var e in a.Entries)
            Assert.True(a.Read(e.Name).allclose(b.Read(e.Name), rtol: 0, atol: 1e-6), $"{e.Name}: max difference {(a.Read(e.Name) - b.Read(e.Name)).abs().max().item<float>()}, changed by training {(a.Read(e.Name) - Init(e.Name)).abs().max().item<float>()}");

        // The optimizer state: the same keys and values whoever held which partition (a sharded run's is gathered by rank 0).
        string OptimizerFile(string run) => Path.Combine(run, "last", TrainingCheckpoint.StateFolder, TrainingCheckpoint.OptimizerFile);
        using var sa = CheckpointFiles.Open(OptimizerFile(single));
        using var sb = CheckpointFiles.Open(OptimizerFile(parallel));
        Assert.Equal(sa.Entries.Select(e => e.Name).Order(), sb.Entries.Select(e => e.Name).Order());
        foreach (var e in sa.Entries)
        {
            var (x, y) = (sa.Read(e.Name), sb.Read(e.Name));
            if (e.Name.StartsWith("step.", StringComparison.Ordinal)) Assert.Equal(x.item<long>(), y.item<long>());
            // Summation order moves a gradient element that nearly cancels by up to ~2e-5 of its tensor's scale (measured); a lost,
            // doubled or mis-scaled partition moves it by all of it.
            else Assert.True(x.allclose(y, rtol: 0, atol: 1e-4 * x.abs().max().item<float>()), $"{e.Name}: max difference {(x - y).abs().max().item<float>()} of {x.abs().max().item<float>()}");
        }
    }
    /// <summary>A ZeRO checkpoint is the file set a stage-0 run writes: a stage-2 run stopped after a checkpoint and resumed
    /// at stage 2, 1 or 0 continues the uninterrupted stage-2 run.</summary>
    [Theory]
    [InlineData(2)]
    [InlineData(1)]
    [InlineData(0)]
    public void A_stage_2_run_resumed_at_any_stage_equals_the_uninterrupted_run(int resumeStage)
    {
        string model = TrainingFixture.TinyModel(22, "zero-resume-model");
        string data = TrainingFixture.DemoData(8, tag: "zero-resume-data");
        TrainingOptions Options(string output, int stage, string? resume = null) => new()
        {
            TrainData = data, InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 2, BatchSize = 1,
            GradientAccumulationSteps = 2, Lr = 1e-3, LrScheduler = "cosine", WarmupSteps = 1, LoggingSteps = 1000, BucketSizeMb = 1,
            AdamEpsilon = 1e-3, ZeroStage = stage, ResumeFromCheckpoint = resume, Coordinator = "off",
        };
        string whole = TestPaths.NewTempDir("zero-whole"), resumed = TestPaths.NewTempDir("zero-resumed");
        FakeWorld.Run(2, comm => new Trainer(Options(whole, 2), TextWriter.Null, comm).Run());
        FakeWorld.Run(2, comm => new Trainer(Options(resumed, 2), TextWriter.Null, comm) { StopAfterSteps = 1 }.Run()); // mid-epoch: 2 steps per epoch
        var results = new TrainingResult[2];
        FakeWorld.Run(2, comm => results[comm.Rank] = new Trainer(Options(resumed, resumeStage, "latest"), TextWriter.Null, comm).Run());
        Assert.All(results, r => Assert.Equal(4, r.GlobalStep));

        using var scope = NewDisposeScope();
        using var a = CheckpointFiles.Open(Path.Combine(whole, "last"));
        using var b = CheckpointFiles.Open(Path.Combine(resumed, "last"));
        using var init = CheckpointFiles.Open(model);
        foreach (var e in a.Entries)
            Assert.True(a.Read(e.Name).allclose(b.Read(e.Name), rtol: 0, atol: 1e-6), $"{e.Name}: max difference {(a.Read(e.Name) - b.Read(e.Name)).abs().max().item<float>()}, changed by training {(a.Read(e.Name) - init.Read(e.Name)).abs().max().item<float>()}");
    }
}
