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
    // Gradient checkpointing on the ranks only: the recompute's reads are counted in forward and tapped in backward.
    [InlineData(2, 1, 2, "overlap", 0, 1.0, "all")]
    [InlineData(2, 1, 2, "overlap", 2, 1.0, "talker")]
    public void N_ranks_train_the_model_of_one_process_with_an_N_times_batch(int world, int perRank, int accumulation, string gradSync = "overlap",
        int zeroStage = 0, double maxGradNorm = 1.0, string checkpointing = "off")
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
        FakeWorld.Run(world, comm => results[comm.Rank] = new Trainer(Options(parallel, perRank) with { GradientCheckpointing = checkpointing }, TextWriter.Null, comm).Run());
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
    /// at stage 2, 1 or 0 continues the uninterrupted stage-2 run, and a stage-0 checkpoint resumes at stage 2.</summary>
    [Theory]
    [InlineData(2)]
    [InlineData(1)]
    [InlineData(0)]
    [InlineData(2, 0)]
    public void A_stage_2_run_resumed_at_any_stage_equals_the_uninterrupted_run(int resumeStage, int writtenStage = 2)
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
        FakeWorld.Run(2, comm => new Trainer(Options(resumed, writtenStage), TextWriter.Null, comm) { StopAfterSteps = 1 }.Run()); // mid-epoch: 2 steps per epoch
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
    /// <summary>bf16 with ZeRO: no rank keeps the whole fp32 masters (each its slice), the bf16 copy is all-gathered from the
    /// slices, and rank 0 gathers the masters for every checkpoint and listening sample. Without clipping stage 1 makes
    /// exactly the updates of stage 0 (the same sums, only bucketed differently), so its checkpoints and samples are the
    /// same bits; stage 2 sums each micro-step's reduced gradient, so only summation order differs. Listening samples
    /// are spoken from the gathered masters.</summary>
    [Fact]
    public void Zero_in_bf16_trains_checkpoints_and_speaks_as_stage_0_does()
    {
        string model = TrainingFixture.TinyModel(23, "zero-bf16-model");
        string data = TrainingFixture.DemoData(8, tag: "zero-bf16-data");
        string sentences = Path.Combine(Path.GetDirectoryName(data)!, "zero-bf16-sentences.txt");
        File.WriteAllLines(sentences, ["Sannu da zuwa."]);
        string Run(int stage)
        {
            string output = TestPaths.NewTempDir($"zero-bf16-{stage}");
            var log = new StringWriter();
            FakeWorld.Run(2, comm => new Trainer(new TrainingOptions
            {
                TrainData = data, ValidationData = data, InitModelPath = model, OutputModelPath = output, MixedPrecision = "bf16", NumEpochs = 1,
                BatchSize = 1, GradientAccumulationSteps = 2, Lr = 1e-3, LrScheduler = "constant", LoggingSteps = 1000, BucketSizeMb = 1,
                AdamEpsilon = 1e-3, MaxGradNorm = 1e9, ZeroStage = stage, GradSync = "after_backward", EvalSentences = sentences, EvalSampleMaxSeconds = 0.3, Coordinator = "off",
            }, comm.Rank == 0 ? log : TextWriter.Null, comm).Run());
            Assert.Equal(stage > 0, log.ToString().Contains("and the fp32 masters of those only"));
            return output;
        }
        string stage0 = Run(0), stage1 = Run(1), stage2 = Run(2);

        using var scope = NewDisposeScope();
        foreach (string checkpoint in new[] { "last", "best" })
        {
            using var a = CheckpointFiles.Open(Path.Combine(stage0, checkpoint));
            using var b = CheckpointFiles.Open(Path.Combine(stage1, checkpoint));
            using var c = CheckpointFiles.Open(Path.Combine(stage2, checkpoint));
            Assert.Equal(a.Entries.Select(e => e.Name), b.Entries.Select(e => e.Name));
            foreach (var e in a.Entries)
            {
                Assert.True(a.Read(e.Name).allclose(b.Read(e.Name), rtol: 0, atol: 0), $"{checkpoint}/{e.Name}: stage 1 differs from stage 0");
                // Only fp32 summation order differs (after_backward: every run sums a parameter's read gradients in autograd's
                // bf16; overlap's taps sum them in fp32, so stage 2 there, which taps every micro-step, is more precise than
                // stage 0 and differs by ~1e-4). A lost or doubled partition moves weights by lr = 1e-3.
                Assert.True(a.Read(e.Name).allclose(c.Read(e.Name), rtol: 0, atol: 1e-7), $"{checkpoint}/{e.Name}: stage 2 differs from stage 0 by {(a.Read(e.Name) - c.Read(e.Name)).abs().max().item<float>()}");
            }
        }
        string Codes(string run) => File.ReadAllText(Path.Combine(run, "samples", "step-2", "codes.jsonl"));
        Assert.Equal(Codes(stage0), Codes(stage1));
    }
}
