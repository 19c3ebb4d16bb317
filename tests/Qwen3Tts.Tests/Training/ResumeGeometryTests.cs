using Qwen3Tts.Coordinator;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Rank.Training;
using Qwen3Tts.Tests.Distributed;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Training;

/// <summary>Resume at another world size: the rule by hand, then whole runs over in-process ranks (the embedded
/// coordinator included, whose saved state was written at the old world size).</summary>
public class ResumeGeometryTests : CleansTempDirs
{
    static readonly PlanPosition At = new(1, 5);

    [Fact]
    public void The_same_global_batch_at_another_world_size_continues_the_run()
    {
        // 2 ranks x 2 written; 1 rank asked with 4: nothing to adjust, a line says the world changed.
        var d = ResumeGeometry.Resolve(new BatchGeometry(2, 2, 3), new BatchGeometry(4, 1, 3), At, false, "ckpt");
        Assert.Equal((4, At), (d.BatchPerRank, d.Start));
        Assert.Contains("global batch stays 4", d.Note);
        // Unchanged world: nothing to say.
        Assert.Null(ResumeGeometry.Resolve(new BatchGeometry(2, 2, 3), new BatchGeometry(2, 2, 3), At, false, "ckpt").Note);
    }

    [Theory]
    [InlineData(2, 2, 1, 4)] // 2 ranks x 2 → 1 rank: 4 per rank
    [InlineData(4, 1, 2, 2)] // 1 rank x 4 → 2 ranks: 2 per rank
    [InlineData(2, 4, 8, 1)] // 4 ranks x 2 → 8 ranks: 1 per rank
    public void The_batch_per_rank_is_adjusted_when_the_new_world_divides_the_global_batch(int batch, int world, int newWorld, int expected)
    {
        var d = ResumeGeometry.Resolve(new BatchGeometry(batch, world, 2), new BatchGeometry(batch, newWorld, 2), At, false, "ckpt");
        Assert.Equal(expected, d.BatchPerRank);
        Assert.Equal(At, d.Start);
        Assert.Contains($"--batch_size {batch} → {expected} per rank", d.Note);
    }

    [Fact]
    public void A_global_batch_the_new_world_cannot_keep_is_refused_with_the_numbers()
    {
        var e = Assert.Throws<ArgumentException>(() => ResumeGeometry.Resolve(new BatchGeometry(2, 2, 1), new BatchGeometry(2, 3, 1), At, false, "out/checkpoint-4"));
        Assert.Contains("out/checkpoint-4", e.Message);
        Assert.Contains("2 per rank x 2 ranks x 1 accumulation = 4 samples per step", e.Message);
        Assert.Contains("3 ranks cannot split its global batch of 4 samples evenly", e.Message);
        Assert.Contains("--allow_new_global_batch", e.Message);
        var a = Assert.Throws<ArgumentException>(() => ResumeGeometry.Resolve(new BatchGeometry(2, 2, 4), new BatchGeometry(2, 2, 2), At, false, "ckpt"));
        Assert.Contains("--gradient_accumulation_steps 2 differs from its 4", a.Message);
    }

    [Fact]
    public void A_new_global_batch_when_allowed_continues_the_epoch_from_no_later_than_the_samples_consumed()
    {
        // 5 batches of 4 consumed = 20 samples; batches of 6: batch 3 starts at sample 18.
        var d = ResumeGeometry.Resolve(new BatchGeometry(2, 2, 1), new BatchGeometry(2, 3, 1), At, true, "ckpt");
        Assert.Equal((2, new PlanPosition(1, 3)), (d.BatchPerRank, d.Start));
        Assert.StartsWith("warning: --allow_new_global_batch", d.Note);
        Assert.Contains("batch 3 of the new plan (from sample 18 of the 20", d.Note);
    }

    static TrainingOptions Options(string model, string data, string output, int batch, string? resume = null, bool allowNew = false) => new()
    {
        TrainData = data, InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 2, BatchSize = batch,
        GradientAccumulationSteps = 1, Lr = 1e-3, LrScheduler = "cosine", WarmupSteps = 1, LoggingSteps = 1000, BucketSizeMb = 1,
        AdamEpsilon = 1e-3, ResumeFromCheckpoint = resume, AllowNewGlobalBatch = allowNew,
    };

    /// <summary>One rank with batch 4 stopped mid-epoch, resumed on 2 ranks with the same --batch_size 4 (adjusted to 2 per
    /// rank) through the embedded coordinator whose state says 1 rank: the uninterrupted one-rank run. Two ranks of 2 stopped,
    /// then 3 ranks: the global batch of 4 cannot be kept: refused with the numbers, and with --allow_new_global_batch it
    /// trains on.</summary>
    [Fact]
    public void A_one_rank_run_resumed_on_two_ranks_equals_the_uninterrupted_run_and_three_ranks_are_refused_unless_allowed()
    {
        string model = TrainingFixture.TinyModel(23, "geometry-model");
        string data = TrainingFixture.DemoData(8, tag: "geometry-data");
        string whole = TestPaths.NewTempDir("geometry-whole");
        new Trainer(Options(model, data, whole, 4), TextWriter.Null).Run();
        string resumed = TestPaths.NewTempDir("geometry-two");
        new Trainer(Options(model, data, resumed, 4), TextWriter.Null) { StopAfterSteps = 1 }.Run(); // mid-epoch: 2 steps per epoch
        var log = new StringWriter();
        var results = new TrainingResult[2];
        FakeWorld.Run(2, comm => results[comm.Rank] = new Trainer(Options(model, data, resumed, 4, "latest"), comm.Rank == 0 ? log : TextWriter.Null, comm).Run());
        Assert.All(results, r => Assert.Equal(4, r.GlobalStep));
        Assert.Contains("resuming at 2 ranks a run written by 1: --batch_size 4 → 2 per rank", log.ToString());
        using (var scope = NewDisposeScope())
        using (var a = CheckpointFiles.Open(Path.Combine(whole, "last")))
        using (var b = CheckpointFiles.Open(Path.Combine(resumed, "last")))
            foreach (var e in a.Entries)
                Assert.True(a.Read(e.Name).allclose(b.Read(e.Name), rtol: 0, atol: 1e-6), e.Name);

        string three = TestPaths.NewTempDir("geometry-three");
        FakeWorld.Run(2, comm => new Trainer(Options(model, data, three, 2), TextWriter.Null, comm) { StopAfterSteps = 1 }.Run());
        var refused = Assert.Throws<AggregateException>(() => FakeWorld.Run(3, comm => new Trainer(Options(model, data, three, 4, "latest"), TextWriter.Null, comm).Run()));
        Assert.All(refused.InnerExceptions, e => Assert.Contains("3 ranks cannot split its global batch of 4 samples evenly", e.Message));
        var allowed = new StringWriter();
        FakeWorld.Run(3, comm => new Trainer(Options(model, data, three, 2, "latest", allowNew: true), comm.Rank == 0 ? allowed : TextWriter.Null, comm).Run());
        Assert.Contains("warning: --allow_new_global_batch", allowed.ToString());
        Assert.True(File.Exists(Path.Combine(three, "last", "model.safetensors")));
    }
}
