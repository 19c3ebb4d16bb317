using System.Text.Json.Nodes;
using Qwen3Tts.Coordinator;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Rank.Training;
using Qwen3Tts.Tests.Distributed;
using Qwen3Tts.Tests.Training;

namespace Qwen3Tts.Tests.Coordination;

/// <summary>The trainer takes its batches from the coordinator: embedded in rank 0 (the default) or standalone, over real
/// gRPC on loopback, and trains exactly what the locally computed plan (--coordinator off) trains.</summary>
public class RunPlanTests : CleansTempDirs
{
    const string Token = "run-plan-test-token-42";

    static TrainingOptions Options(string model, string data, string output) => new()
    {
        TrainData = data, InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 2,
        BatchSize = 2, GradientAccumulationSteps = 1, Lr = 1e-3, LrScheduler = "constant", LoggingSteps = 1000, BucketWindow = 2,
    };

    static byte[] Weights(string output) => File.ReadAllBytes(Path.Combine(output, "last", "model.safetensors"));

    static PlanSettings PlanOf(string data, TrainingOptions o) =>
        PlanSettings.Bucketed(TrainingData.Read(data, false, out _).Select(r => r.PlanLength).ToArray(), o.Seed, o.BatchSize, o.BucketWindow);

    [Fact]
    public void Two_ranks_with_the_embedded_coordinator_train_what_the_local_plan_trains_and_it_records_the_run()
    {
        string model = TrainingFixture.TinyModel(41, "plan-model"), data = TrainingFixture.DemoData(8, tag: "plan-data");
        string local = TestPaths.NewTempDir("plan-local"), embedded = TestPaths.NewTempDir("plan-embedded");
        FakeWorld.Run(2, comm => new Trainer(Options(model, data, local) with { Coordinator = "off" }, TextWriter.Null, comm).Run());
        var log = new StringWriter();
        FakeWorld.Run(2, comm => new Trainer(Options(model, data, embedded), comm.Rank == 0 ? log : TextWriter.Null, comm).Run());

        Assert.Equal(Weights(local), Weights(embedded)); // the same batches in the same order: the same bytes
        Assert.Contains("embedded coordinator at http://127.0.0.1:", log.ToString());
        Assert.Contains("length grouping (windows of 2 global batches)", log.ToString());

        // 8 samples / global batch 4 = 2 batches per epoch, 2 epochs: both ranks finished through epoch 1, and every
        // checkpoint rank 0 wrote (epoch-1, epoch-2, last) was committed with the position it resumes from.
        var state = JsonNode.Parse(File.ReadAllText(Path.Combine(embedded, "coordinator", CoordinatorState.StateFileName)))!;
        Assert.Equal(2, state["world_size"]!.GetValue<int>());
        foreach (var rank in new[] { "0", "1" })
        {
            Assert.Equal(1, state["ranks"]![rank]!["epoch"]!.GetValue<int>());
            Assert.Equal(2, state["ranks"]![rank]!["next_batch"]!.GetValue<long>());
        }
        var committed = state["checkpoints"]!.AsArray().Select(c => (Path.GetFileName(c!["dir"]!.GetValue<string>()), c["epoch"]!.GetValue<int>(), c["next_batch"]!.GetValue<long>())).ToList();
        Assert.Equal([("epoch-1", 1, 0L), ("epoch-2", 2, 0L), ("last", 2, 0L)], committed);
    }

    [Fact]
    public async Task A_standalone_coordinator_serves_the_same_plan()
    {
        string model = TrainingFixture.TinyModel(42, "plan-model"), data = TrainingFixture.DemoData(8, tag: "plan-data");
        string local = TestPaths.NewTempDir("plan-local"), remote = TestPaths.NewTempDir("plan-remote");
        var o = Options(model, data, local);
        new Trainer(o with { Coordinator = "off" }, TextWriter.Null).Run();

        await using var host = await CoordinatorHost.StartAsync(new CoordinatorHostOptions(
            new CoordinatorOptions(TestPaths.NewTempDir("plan-coordinator"), PlanOf(data, o)) { WorldSize = 1 }) { Token = Token });
        new Trainer(o with { OutputModelPath = remote, Coordinator = host.Address.ToString() }, TextWriter.Null) { CoordinatorToken = Token }.Run();

        Assert.Equal(Weights(local), Weights(remote));
        Assert.Equal(new PlanPosition(1, 4), host.State.Position); // 8 samples / batch 2 = 4 batches, through epoch 1
    }

    [Fact]
    public async Task A_coordinator_planning_other_data_or_another_seed_is_refused_naming_the_difference()
    {
        string model = TrainingFixture.TinyModel(43, "plan-model"), data = TrainingFixture.DemoData(8, tag: "plan-data");
        var o = Options(model, data, TestPaths.NewTempDir("plan-refused"));
        var other = PlanOf(data, o) with { Seed = o.Seed + 1 };
        await using var host = await CoordinatorHost.StartAsync(new CoordinatorHostOptions(
            new CoordinatorOptions(TestPaths.NewTempDir("plan-coordinator"), other) { WorldSize = 1 }) { Token = Token });
        var e = Assert.Throws<InvalidOperationException>(() =>
            new Trainer(o with { Coordinator = host.Address.ToString() }, TextWriter.Null) { CoordinatorToken = Token }.Run());
        Assert.Contains($"seed {o.Seed + 1}, this rank has {o.Seed}", e.Message);

        var fewer = PlanOf(TrainingFixture.DemoData(7, tag: "plan-data-7"), o);
        await using var host2 = await CoordinatorHost.StartAsync(new CoordinatorHostOptions(
            new CoordinatorOptions(TestPaths.NewTempDir("plan-coordinator"), fewer) { WorldSize = 1 }) { Token = Token });
        e = Assert.Throws<InvalidOperationException>(() =>
            new Trainer(o with { Coordinator = host2.Address.ToString() }, TextWriter.Null) { CoordinatorToken = Token }.Run());
        Assert.Contains("sample count 7, this rank has 8", e.Message);
    }

    [Fact]
    public async Task A_wrong_or_missing_token_is_refused_and_never_printed()
    {
        string model = TrainingFixture.TinyModel(44, "plan-model"), data = TrainingFixture.DemoData(8, tag: "plan-data");
        var o = Options(model, data, TestPaths.NewTempDir("plan-token"));
        await using var host = await CoordinatorHost.StartAsync(new CoordinatorHostOptions(
            new CoordinatorOptions(TestPaths.NewTempDir("plan-coordinator"), PlanOf(data, o)) { WorldSize = 1 }) { Token = Token });
        var log = new StringWriter();
        var e = Assert.Throws<InvalidOperationException>(() =>
            new Trainer(o with { Coordinator = host.Address.ToString() }, log) { CoordinatorToken = "not-the-token" }.Run());
        Assert.Contains("Unauthenticated", e.Message);
        Assert.DoesNotContain("not-the-token", e.Message + log);

        var missing = Assert.Throws<ArgumentException>(() => new Trainer(o with { Coordinator = host.Address.ToString() }, TextWriter.Null).Run());
        Assert.Contains("QWEN3TTS_COORDINATOR_TOKEN", missing.Message);
    }

    [Fact]
    public async Task A_stop_request_makes_every_rank_checkpoint_and_end_together()
    {
        string model = TrainingFixture.TinyModel(45, "plan-model"), data = TrainingFixture.DemoData(8, tag: "plan-data");
        string output = TestPaths.NewTempDir("plan-stop");
        var o = Options(model, data, output) with { NumEpochs = 5 };
        await using var host = await CoordinatorHost.StartAsync(new CoordinatorHostOptions(
            new CoordinatorOptions(TestPaths.NewTempDir("plan-coordinator"), PlanOf(data, o)) { WorldSize = 2 }) { Token = Token });
        // Asked before the ranks start: each sees it in its first lease, trains that step, and the flag on the step's
        // all-reduce makes both stop there, saving last/.
        host.State.Stop("maintenance window");
        var results = new TrainingResult[2];
        var log = new StringWriter();
        FakeWorld.Run(2, comm => results[comm.Rank] = new Trainer(o with { Coordinator = host.Address.ToString() }, comm.Rank == 0 ? log : TextWriter.Null, comm)
        {
            CoordinatorToken = Token,
        }.Run());
        Assert.All(results, r => Assert.Equal(1, r.GlobalStep));
        Assert.Contains("stopped by the coordinator after 1 steps (maintenance window)", log.ToString());
        Assert.True(File.Exists(Path.Combine(output, "last", "model.safetensors")));
    }
}

/// <summary>A job restarted from an older checkpoint than the coordinator's position: the embedded coordinator's ranks
/// register at the checkpoint's position, the batches after it are trained again, and the result is the uninterrupted run.</summary>
public class RunPlanRestartTests : CleansTempDirs
{
    [Fact]
    public void Resuming_from_an_earlier_checkpoint_rewinds_the_coordinator_and_equals_the_uninterrupted_run()
    {
        string model = TrainingFixture.TinyModel(46, "plan-model"), data = TrainingFixture.DemoData(8, tag: "plan-data");
        string whole = TestPaths.NewTempDir("plan-whole"), split = TestPaths.NewTempDir("plan-split");
        var o = new TrainingOptions
        {
            TrainData = data, InitModelPath = model, OutputModelPath = whole, MixedPrecision = "fp32", NumEpochs = 2,
            BatchSize = 2, GradientAccumulationSteps = 1, Lr = 1e-3, LrScheduler = "constant", LoggingSteps = 1000, SaveSteps = 2,
        };
        new Trainer(o, TextWriter.Null).Run();

        // Stop after 3 steps: the coordinator saw batches up to 3; checkpoint-2 is one step behind.
        new Trainer(o with { OutputModelPath = split }, TextWriter.Null) { StopAfterSteps = 3 }.Run();
        var state = JsonNode.Parse(File.ReadAllText(Path.Combine(split, "coordinator", CoordinatorState.StateFileName)))!;
        Assert.Equal(3, state["ranks"]!["0"]!["next_batch"]!.GetValue<long>());

        var log = new StringWriter();
        var result = new Trainer(o with { OutputModelPath = split, ResumeFromCheckpoint = Path.Combine(split, "checkpoint-2") }, log).Run();
        Assert.Equal(8, result.GlobalStep);
        Assert.Contains("rank 0 starts again at epoch 0 batch 2 (it had reached epoch 0 batch 3)", log.ToString());
        Assert.Equal(File.ReadAllBytes(Path.Combine(whole, "last", "model.safetensors")), File.ReadAllBytes(Path.Combine(split, "last", "model.safetensors")));
    }
}
