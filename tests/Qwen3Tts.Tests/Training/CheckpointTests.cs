using System.Text;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Rank.Training;
using Qwen3Tts.Tests.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Training;

/// <summary>Training checkpoints: complete, bit-exact, atomic, rotated, resumable.</summary>
public class CheckpointTests : CleansTempDirs
{
    sealed class SimulatedCrash(string stage) : Exception($"simulated crash before {stage}");

    static TrainerState State(long step) => new()
    {
        GlobalStep = step,
        Epoch = 1,
        BatchInEpoch = 17,
        OptimizerStep = step - 1,
        BestEvalLoss = 2.5,
        BestEvalStep = 40,
        LrSchedule = new("cosine", new Dictionary<string, double> { ["lr"] = 2e-5, ["warmup_steps"] = 100, ["total_steps"] = 1000 }),
        Seed = 12_345_678_901_234UL,
        RngStates = new Dictionary<string, object> { ["torch_cpu"] = "AAECAwQFBgc=", ["sampler_offset"] = 42L },
        MetricHistory = [new(10, "eval_loss", 3.1), new(20, "eval_loss", 0.1 + 0.2)],
        MetricsLogCursor = 21,
        SpeakerEmbeddings = [new("alice", 3, [0.1, -1e-300, 1.0 / 3])],
    };

    /// <summary>AdamW-like tensors in several dtypes, including a scalar step and a bf16 moment.</summary>
    static Dictionary<string, Tensor> Optimizer(long seed)
    {
        var g = new Generator((ulong)seed);
        return new Dictionary<string, Tensor>
        {
            ["state.0.exp_avg"] = randn([4, 3], generator: g),
            ["state.0.exp_avg_sq"] = rand([4, 3], generator: g).to(ScalarType.BFloat16),
            ["state.0.step"] = tensor(seed * 7),
            ["param_groups.0.lr"] = tensor(2e-5 * seed, ScalarType.Float64),
        };
    }

    static Dictionary<string, (ScalarType, long[], byte[])> Snapshot(IEnumerable<(string Name, Tensor T)> tensors) =>
        tensors.ToDictionary(x => x.Name, x => (x.T.dtype, x.T.shape, Raw.Of(x.T)));

    static Dictionary<string, (ScalarType, long[], byte[])> Snapshot(IReadOnlyDictionary<string, Tensor> tensors) =>
        Snapshot(tensors.Select(kv => (kv.Key, kv.Value)));

    static Dictionary<string, (ScalarType, long[], byte[])> Snapshot(nn.Module model) =>
        Snapshot(model.state_dict().Select(kv => (kv.Key, kv.Value)));

    static Dictionary<string, (ScalarType, long[], byte[])> StoredWeights(string dir)
    {
        using var files = CheckpointFiles.Open(dir);
        using var scope = NewDisposeScope();
        return Snapshot(files.Entries.Select(e => (e.Name, files.Read(e.Name))));
    }

    static void AssertSame(Dictionary<string, (ScalarType Dtype, long[] Shape, byte[] Bytes)> expected,
        Dictionary<string, (ScalarType Dtype, long[] Shape, byte[] Bytes)> actual)
    {
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, e) in expected)
        {
            var a = actual[name];
            Assert.True(e.Dtype == a.Dtype, $"{name}: dtype {a.Dtype}, expected {e.Dtype}");
            Assert.True(e.Shape.SequenceEqual(a.Shape), $"{name}: shape differs");
            Assert.True(e.Bytes.AsSpan().SequenceEqual(a.Bytes), $"{name}: bytes differ");
        }
    }

    /// <summary>Moves every weight a little, as training would, so saved weights cannot be a copy of the init files.</summary>
    static void Train(Qwen3TtsModel model, double by)
    {
        using var noGrad = no_grad();
        foreach (var (_, p) in model.named_parameters()) p.add_(by);
    }

    static string NewInit(ulong seed)
    {
        string dir = TestPaths.NewTempDir("ckpt-init");
        ModelDirectory.CreateRandom(dir, "tiny", seed, ScalarType.Float32);
        return dir;
    }

    [Fact]
    public void Save_then_load_gives_back_every_weight_the_optimizer_tensors_and_the_state_bit_for_bit()
    {
        string init = NewInit(11), output = TestPaths.NewTempDir("ckpt-out");
        using var scope = NewDisposeScope();
        using var model = ModelDirectory.Load(init);
        Train(model, 0.25);
        var optimizer = Optimizer(1);
        var state = State(120);
        string last = CheckpointRotation.LastDir(output);

        TrainingCheckpoint.Save(last, model, init, optimizer, state);

        using var loaded = TrainingCheckpoint.Load(last);
        Assert.Equal(Path.GetFullPath(last), loaded.Directory);
        Assert.True(loaded.State.SameAs(state), loaded.State.ToJson());
        Assert.Equal(state.SpeakerEmbeddings[0].Sum, loaded.State.SpeakerEmbeddings[0].Sum); // fp64 exact through JSON
        Assert.Equal(0.1 + 0.2, loaded.State.MetricHistory[1].Value);
        Assert.Equal(42L, loaded.State.RngStates["sampler_offset"]);
        AssertSame(Snapshot(optimizer), Snapshot(loaded.Optimizer));

        var expected = Snapshot(model);
        Assert.Contains(expected.Keys, k => k.StartsWith("speaker_encoder.", StringComparison.Ordinal)); // upstream #204
        AssertSame(expected, StoredWeights(loaded.WeightsPath));

        // The checkpoint is a complete model directory in the released layout.
        foreach (var file in ModelDirectory.CompanionFiles)
            Assert.Equal(File.ReadAllBytes(Path.Combine(init, file)), File.ReadAllBytes(Path.Combine(last, file)));
        Assert.True(ModelInspector.Inspect(last).IsValid);
        using var reloaded = ModelDirectory.Load(last);
        AssertSame(expected, Snapshot(reloaded));
        Assert.Equal(["last"], Directory.EnumerateFileSystemEntries(output).Select(Path.GetFileName));
    }

    [Fact]
    public void Load_names_the_missing_files()
    {
        string output = TestPaths.NewTempDir("ckpt-missing");
        string dir = CheckpointRotation.StepDir(output, 5);
        SaveSmall(dir, 5, StubInit());
        File.Delete(Path.Combine(dir, TrainingCheckpoint.StateFolder, TrainingCheckpoint.OptimizerFile));
        File.Delete(Path.Combine(dir, "vocab.json"));

        var e = Assert.Throws<TrainingCheckpointException>(() => TrainingCheckpoint.Load(dir));
        Assert.Contains("training_state/optimizer.safetensors", e.Message);
        Assert.Contains("vocab.json", e.Message);
        Assert.Contains("checkpoint-5", e.Message);
        var none = Assert.Throws<TrainingCheckpointException>(() => TrainingCheckpoint.Load(Path.Combine(output, "nope")));
        Assert.Contains("nope", none.Message);
    }

    [Fact]
    public void No_secret_from_the_environment_reaches_a_checkpoint()
    {
        string secret = "wandb-" + Guid.NewGuid().ToString("N");
        string? before = Environment.GetEnvironmentVariable("WANDB_API_KEY");
        Environment.SetEnvironmentVariable("WANDB_API_KEY", secret);
        try
        {
            string init = NewInit(3), output = TestPaths.NewTempDir("ckpt-secret");
            using var scope = NewDisposeScope();
            using var model = ModelDirectory.Load(init);
            TrainingCheckpoint.Save(CheckpointRotation.LastDir(output), model, init, Optimizer(2), State(9));

            var bytes = Encoding.UTF8.GetBytes(secret);
            var files = Directory.EnumerateFiles(output, "*", SearchOption.AllDirectories).ToList();
            Assert.Contains(files, f => f.EndsWith(TrainingCheckpoint.StateFile, StringComparison.Ordinal));
            foreach (var file in files)
                Assert.True(File.ReadAllBytes(file).AsSpan().IndexOf(bytes) < 0, $"{file} holds the secret");

            // A caller that puts the key into the state is refused, and nothing is written.
            string leaky = CheckpointRotation.StepDir(output, 10);
            var bad = State(10) with { RngStates = new Dictionary<string, object> { ["oops"] = secret } };
            var e = Assert.Throws<TrainingCheckpointException>(() => TrainingCheckpoint.Save(leaky, model, init, Optimizer(2), bad));
            Assert.Contains("WANDB_API_KEY", e.Message);
            Assert.DoesNotContain(secret, e.Message);
            Assert.Equal(["last"], Directory.EnumerateFileSystemEntries(output).Select(Path.GetFileName));
        }
        finally
        {
            Environment.SetEnvironmentVariable("WANDB_API_KEY", before);
        }
    }

    public static TheoryData<string> Stages() => [.. TrainingCheckpoint.AllStages];

    [Theory]
    [MemberData(nameof(Stages))]
    public void A_crash_at_any_stage_of_replacing_last_leaves_the_old_or_the_new_checkpoint_whole(string crashStage)
    {
        string init = NewInit(5), output = TestPaths.NewTempDir("ckpt-crash");
        string last = CheckpointRotation.LastDir(output);
        using var scope = NewDisposeScope();
        using var model = ModelDirectory.Load(init);
        var (oldWeights, oldOptimizer) = (Snapshot(model), Optimizer(1));
        TrainingCheckpoint.Save(last, model, init, oldOptimizer, State(10));

        Train(model, 0.5);
        var (newWeights, newOptimizer) = (Snapshot(model), Optimizer(2));
        var seen = new List<string>();
        Assert.Throws<SimulatedCrash>(() => TrainingCheckpoint.Save(last, model, init, newOptimizer, State(20), stage =>
        {
            seen.Add(stage);
            if (stage == crashStage) throw new SimulatedCrash(stage);
        }));
        Assert.Equal(TrainingCheckpoint.AllStages.TakeWhile(s => s != crashStage).Append(crashStage), seen);

        // Once the new folder is renamed into place the new checkpoint wins; before that, the old one.
        bool isNew = crashStage == AtomicDirectory.DeleteOld;
        var (weights, optimizer, step) = isNew ? (newWeights, Snapshot(newOptimizer), 20L) : (oldWeights, Snapshot(oldOptimizer), 10L);
        if (crashStage == AtomicDirectory.RenameNew) Assert.False(Directory.Exists(last)); // between the renames: only last.old

        // Readers (read-only, as every rank resumes) find a complete checkpoint, never a .tmp-* one.
        string resumed = CheckpointRotation.ResolveResume(output, CheckpointRotation.Latest);
        Assert.DoesNotContain(".tmp-", resumed);
        using (var loaded = TrainingCheckpoint.Load(last))
        {
            Assert.Equal(resumed, loaded.Directory);
            Assert.Equal(step, loaded.State.GlobalStep);
            AssertSame(weights, StoredWeights(loaded.Directory));
            AssertSame(optimizer, Snapshot(loaded.Optimizer));
            using var asModel = ModelDirectory.Load(loaded.Directory);
        }

        // The writer's recovery (run by the next save) puts last/ itself back whole and clears the leftovers.
        AtomicDirectory.Recover(last);
        Assert.Equal(["last"], Directory.EnumerateFileSystemEntries(output).Select(Path.GetFileName));
        Assert.Equal(step, TrainingCheckpoint.ReadState(last).GlobalStep);
        AssertSame(weights, StoredWeights(last));
        Assert.True(ModelInspector.Inspect(last).IsValid);

        // And the next save goes through.
        TrainingCheckpoint.Save(last, model, init, newOptimizer, State(30));
        Assert.Equal(30, TrainingCheckpoint.ReadState(last).GlobalStep);
        Assert.Equal(["last"], Directory.EnumerateFileSystemEntries(output).Select(Path.GetFileName));
    }

    [Fact]
    public void The_next_save_cleans_up_after_a_crash_without_an_explicit_recover()
    {
        string output = TestPaths.NewTempDir("ckpt-crash-next"), init = StubInit();
        string last = CheckpointRotation.LastDir(output);
        SaveSmall(last, 1, init);
        Assert.Throws<SimulatedCrash>(() => SaveSmall(last, 2, init, s => { if (s == AtomicDirectory.RenameNew) throw new SimulatedCrash(s); }));
        Assert.Equal(["last.old", $"last.tmp-{Environment.ProcessId}"], Directory.EnumerateFileSystemEntries(output).Select(Path.GetFileName).Order());
        SaveSmall(last, 3, init);
        Assert.Equal(["last"], Directory.EnumerateFileSystemEntries(output).Select(Path.GetFileName));
        Assert.Equal(3, TrainingCheckpoint.ReadState(last).GlobalStep);
    }

    /// <summary>An init folder with stub companion files: enough for rotation, which reads only trainer states.</summary>
    static string StubInit()
    {
        string dir = TestPaths.NewTempDir("ckpt-stub-init");
        foreach (var file in ModelDirectory.CompanionFiles) File.WriteAllText(Path.Combine(dir, file), "{}");
        return dir;
    }

    static void SaveSmall(string dir, long step, string init, Action<string>? beforeStep = null)
    {
        using var scope = NewDisposeScope();
        TrainingCheckpoint.Save(dir, new System.Text.Json.Nodes.JsonObject { ["tts_model_type"] = "base" }, [("w", tensor(new float[] { step }))],
            init, Optimizer(step), State(step), beforeStep);
    }

    [Fact]
    public void Save_total_limit_keeps_the_newest_step_checkpoints_and_never_best_last_or_epochs()
    {
        string output = TestPaths.NewTempDir("ckpt-rotate"), init = StubInit();
        foreach (long step in new long[] { 300, 100, 1000, 500, 200, 400 }) SaveSmall(CheckpointRotation.StepDir(output, step), step, init);
        SaveSmall(CheckpointRotation.BestDir(output), 250, init);
        SaveSmall(CheckpointRotation.LastDir(output), 1000, init);
        SaveSmall(CheckpointRotation.EpochDir(output, 0), 50, init);
        SaveSmall(CheckpointRotation.EpochDir(output, 1), 120, init);

        var deleted = CheckpointRotation.Prune(output, limit: 2);

        Assert.Equal(new long[] { 100, 200, 300, 400 }.Select(s => CheckpointRotation.StepDir(output, s)), deleted);
        Assert.Equal(["best", "checkpoint-1000", "checkpoint-500", "epoch-0", "epoch-1", "last"],
            Directory.EnumerateDirectories(output).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(500, TrainingCheckpoint.ReadState(CheckpointRotation.StepDir(output, 500)).GlobalStep);
        Assert.Empty(CheckpointRotation.Prune(output, limit: 2));
        Assert.Equal([CheckpointRotation.StepDir(output, 500)], CheckpointRotation.Prune(output, limit: 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => CheckpointRotation.Prune(output, limit: 0));
    }

    [Fact]
    public void Resume_latest_picks_the_highest_global_step_and_ignores_leftovers()
    {
        string output = TestPaths.NewTempDir("ckpt-latest"), init = StubInit();
        var e = Assert.Throws<TrainingCheckpointException>(() => CheckpointRotation.ResolveResume(output, "latest"));
        Assert.Contains("no complete checkpoint", e.Message);

        // Written highest first, so neither write order nor name order gives the answer.
        SaveSmall(CheckpointRotation.EpochDir(output, 0), 150, init); // epoch-0/: the name runs before epoch-1.. numbering wrote
        SaveSmall(CheckpointRotation.StepDir(output, 100), 100, init);
        SaveSmall(CheckpointRotation.LastDir(output), 120, init);
        // Leftovers of crashed writes hold higher steps but must never be picked.
        SaveSmall(Path.Combine(output, "staging"), 900, init);
        Directory.Move(Path.Combine(output, "staging"), Path.Combine(output, "checkpoint-900.tmp-4242"));
        SaveSmall(Path.Combine(output, "staging"), 950, init);
        Directory.Move(Path.Combine(output, "staging"), Path.Combine(output, "last.tmp-4242"));
        // An incomplete step folder is skipped too.
        SaveSmall(CheckpointRotation.StepDir(output, 800), 800, init);
        File.Delete(Path.Combine(CheckpointRotation.StepDir(output, 800), TrainingCheckpoint.StateFolder, TrainingCheckpoint.OptimizerFile));

        Assert.Equal(Path.GetFullPath(CheckpointRotation.EpochDir(output, 0)), CheckpointRotation.ResolveResume(output, "latest"));
        SaveSmall(CheckpointRotation.LastDir(output), 300, init);
        Assert.Equal(Path.GetFullPath(CheckpointRotation.LastDir(output)), CheckpointRotation.ResolveResume(output, "latest"));

        // A path is taken as given, once it is a complete checkpoint.
        string step100 = CheckpointRotation.StepDir(output, 100);
        Assert.Equal(Path.GetFullPath(step100), CheckpointRotation.ResolveResume(output, step100));
        var incomplete = Assert.Throws<TrainingCheckpointException>(() => CheckpointRotation.ResolveResume(output, CheckpointRotation.StepDir(output, 800)));
        Assert.Contains("training_state/optimizer.safetensors", incomplete.Message);
    }
}
