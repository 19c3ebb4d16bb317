using System.CommandLine;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Rank.Distributed;
using Qwen3Tts.Rank.Training;
using Qwen3Tts.Tests.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Training;

/// <summary>--device without a GPU: the flag and its resolution, the backend decision that follows it, and the
/// placement plumbing checked on the one non-CPU device libtorch always has, <c>meta</c> (allocation without memory):
/// a factory call that forgets its device argument lands on the CPU and fails these checks. What needs a real GPU
/// (kernels, NCCL, the loss matching the CPU's) is listed in README: GPU clusters.</summary>
public class DeviceTests
{
    static readonly Qwen3TtsConfig Config = Presets.Config("tiny");
    static readonly Device Meta = new("meta");
    static readonly Device Gpu0 = new(DeviceType.CUDA, 0), Gpu1 = new(DeviceType.CUDA, 1);

    static int NoDeviceCount() => throw new InvalidOperationException("the device count must not be asked for");

    static bool On(Tensor t, Device d) => t.device_type == d.type && (d.type != DeviceType.CUDA || t.device_index == d.index);

    // ------------------------------------------------------------------------------------------------ --device

    [Fact]
    public void Cpu_and_auto_without_cuda_resolve_to_the_cpu_without_asking_for_devices()
    {
        Assert.Equal(DeviceType.CPU, TrainingDevice.Resolve("cpu", 3, cudaAvailable: true, NoDeviceCount).type);
        Assert.Equal(DeviceType.CPU, TrainingDevice.Resolve("auto", 3, cudaAvailable: false, NoDeviceCount).type);
        // This machine: the TorchSharp-cpu build, so auto is the CPU.
        Assert.False(cuda.is_available());
        Assert.Equal(DeviceType.CPU, TrainingDevice.Resolve("auto", 0).type);
        Assert.Equal("cpu", TrainingDevice.Resolve("cpu", 0).ToString());
    }

    [Fact]
    public void Cuda_and_auto_with_cuda_pick_the_local_rank_and_cuda_N_picks_N()
    {
        var one = TrainingDevice.Resolve("cuda", 2, cudaAvailable: true, () => 4);
        Assert.Equal((DeviceType.CUDA, 2), (one.type, one.index));
        var auto = TrainingDevice.Resolve("auto", 3, cudaAvailable: true, () => 4);
        Assert.Equal((DeviceType.CUDA, 3), (auto.type, auto.index));
        var fixedIndex = TrainingDevice.Resolve("cuda:1", 7, cudaAvailable: true, () => 2);
        Assert.Equal((DeviceType.CUDA, 1), (fixedIndex.type, fixedIndex.index));
        Assert.Equal("cuda:1", fixedIndex.ToString());
    }

    [Fact]
    public void Cuda_without_cuda_names_the_package_to_build_with()
    {
        foreach (var spec in new[] { "cuda", "cuda:0" })
        {
            var e = Assert.Throws<ArgumentException>(() => TrainingDevice.Resolve(spec, 0, cudaAvailable: false, NoDeviceCount));
            Assert.StartsWith($"--device {spec}: torch.cuda.is_available() is false", e.Message);
            Assert.Contains("TorchSharp-cuda-linux", e.Message);
            Assert.Contains("--device cpu", e.Message);
        }
        // This process, for real.
        Assert.Contains("TorchSharp-cuda-linux", Assert.Throws<ArgumentException>(() => TrainingDevice.Resolve("cuda", 0)).Message);
    }

    [Fact]
    public void More_ranks_on_a_node_than_gpus_is_refused_with_the_launcher_fix()
    {
        var e = Assert.Throws<ArgumentException>(() => TrainingDevice.Resolve("cuda", 2, cudaAvailable: true, () => 2));
        Assert.Contains("local rank is 2", e.Message);
        Assert.Contains("2 visible CUDA device(s)", e.Message);
        Assert.Contains("-npernode 2", e.Message);
        Assert.Throws<ArgumentException>(() => TrainingDevice.Resolve("auto", 2, cudaAvailable: true, () => 2));
        var index = Assert.Throws<ArgumentException>(() => TrainingDevice.Resolve("cuda:2", 0, cudaAvailable: true, () => 2));
        Assert.Contains("--device cuda:2", index.Message);
        Assert.Contains("cuda:0..cuda:1", index.Message);
    }

    [Theory]
    [InlineData("gpu")]
    [InlineData("CUDA")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:x")]
    [InlineData("")]
    public void Misspelled_devices_are_refused_naming_the_flag(string spec)
    {
        Assert.NotNull(TrainingDevice.SyntaxError(spec));
        var e = Assert.Throws<ArgumentException>(() => TrainingDevice.Resolve(spec, 0, cudaAvailable: true, NoDeviceCount));
        Assert.StartsWith("--device: must be cpu, cuda, cuda:N", e.Message);
    }

    [Fact]
    public void The_flag_defaults_to_cpu_and_takes_both_spellings_and_the_config_file()
    {
        TrainingOptions Parse(params string[] args)
        {
            var command = new RootCommand();
            var bind = TrainingFlags.AddTo(command);
            var result = command.Parse(args);
            Assert.Empty(result.Errors);
            return bind(result);
        }
        Assert.Equal("cpu", Parse("--train_jsonl", "t", "--init_model_path", "m").Device);
        Assert.Equal("cuda:1", Parse("--train_jsonl", "t", "--init_model_path", "m", "--device", "cuda:1").Device);
        string dir = TestPaths.NewTempDir("device-flags");
        string config = Path.Combine(dir, "run.json");
        File.WriteAllText(config, """{"train_jsonl": "t", "init_model_path": "m", "device": "auto"}""");
        Assert.Equal("auto", Parse("--config", config).Device);
        Assert.Equal("cpu", Parse("--config", config, "--device", "cpu").Device);

        var bad = Parse("--train_jsonl", "t", "--init_model_path", "m", "--device", "gpu");
        Assert.StartsWith("--device: must be", Assert.Throws<ArgumentException>(bad.Validate).Message);
    }

    // ------------------------------------------------------------------------------------------------ --backend

    static WorldInfo TwoRanksUnderOpenMpi() => new(0, 2, 0, Launcher.OpenMpi, "OMPI_COMM_WORLD_RANK=0, OMPI_COMM_WORLD_SIZE=2");

    static string? NoProbe() => throw new InvalidOperationException("NCCL must not be probed for CPU tensors");

    [Fact]
    public void Auto_follows_the_device_mpi_for_the_cpu_nccl_for_cuda()
    {
        var cpu = Communicators.Choose(BackendChoice.Auto, TwoRanksUnderOpenMpi(), cudaAvailable: true, NoProbe, DeviceType.CPU);
        Assert.Equal("mpi", cpu.Backend);
        Assert.Contains("--device cpu", cpu.Reason);
        Assert.Equal("nccl", Communicators.Choose(BackendChoice.Auto, TwoRanksUnderOpenMpi(), cudaAvailable: true, () => null, DeviceType.CUDA).Backend);

        var noNccl = Communicators.Choose(BackendChoice.Auto, TwoRanksUnderOpenMpi(), cudaAvailable: true, () => "cannot load the NCCL library", DeviceType.CUDA);
        Assert.Equal("mpi", noNccl.Backend);
        Assert.Contains("staged through host memory", noNccl.Reason);

        var mpi = Communicators.Choose(BackendChoice.Mpi, TwoRanksUnderOpenMpi(), cudaAvailable: true, NoProbe, DeviceType.CUDA);
        Assert.Equal("mpi", mpi.Backend);
        Assert.Contains("staged through host memory", mpi.Reason);
        Assert.DoesNotContain("staged", Communicators.Choose(BackendChoice.Mpi, TwoRanksUnderOpenMpi(), cudaAvailable: true, NoProbe, DeviceType.CPU).Reason);

        // The default rank flags on this machine: --device cpu, --backend auto.
        Assert.Equal("mpi", Communicators.Choose(BackendChoice.Auto, TwoRanksUnderOpenMpi(), new Dictionary<string, string>(), DeviceType.CPU).Backend);
    }

    [Fact]
    public void Nccl_with_the_cpu_device_is_refused_with_the_fix_even_where_cuda_exists()
    {
        foreach (bool cudaAvailable in new[] { true, false })
        {
            var e = Assert.Throws<CommunicatorException>(() =>
                Communicators.Choose(BackendChoice.Nccl, TwoRanksUnderOpenMpi(), cudaAvailable, () => null, DeviceType.CPU));
            Assert.StartsWith("--backend nccl reduces CUDA tensors, but --device cpu", e.Message);
            Assert.Contains("--device cuda", e.Message);
            Assert.Contains("--backend mpi", e.Message);
        }
        var single = Assert.Throws<CommunicatorException>(() =>
            Communicators.Create(WorldInfo.Single, new Dictionary<string, string>(), BackendChoice.Nccl, TextWriter.Null, tensors: DeviceType.CPU));
        Assert.Contains("--device cpu", single.Message);
    }

    [Fact]
    public void The_trainer_stages_gpu_tensors_over_a_cpu_communicator_and_refuses_nccl_on_another_device()
    {
        FakeWorld.Run(2, comm =>
        {
            Assert.Same(comm, TrainingDevice.CommunicatorFor(CPU, comm));
            var staged = Assert.IsType<HostStagedCommunicator>(TrainingDevice.CommunicatorFor(Gpu0, comm));
            Assert.Same(comm, staged.Inner);
            Assert.Contains("staged through host memory", staged.Backend);
            Assert.Equal((comm.Rank, 2), (staged.Rank, staged.WorldSize));
        });
        using var single = new SingleProcessCommunicator();
        Assert.Same(single, TrainingDevice.CommunicatorFor(Gpu0, single)); // one rank: no collectives to stage

        Assert.Null(TrainingDevice.Mismatch(Gpu0, CPU, 0));
        Assert.Null(TrainingDevice.Mismatch(CPU, CPU, 0));
        Assert.Null(TrainingDevice.Mismatch(Gpu1, Gpu1, 1));
        Assert.Contains("--device cpu keeps", TrainingDevice.Mismatch(CPU, Gpu0, 0));
        var other = TrainingDevice.Mismatch(Gpu1, Gpu0, 0)!;
        Assert.Contains("--device cuda:1", other);
        Assert.Contains("NCCL communicator is on cuda:0", other);
    }

    [Fact]
    public void A_trainer_asked_for_cuda_on_this_build_stops_before_loading_anything()
    {
        string output = TestPaths.NewTempDir("device-trainer");
        var o = new TrainingOptions { TrainData = TrainingFixture.DemoData(2, tag: "device-data"), InitModelPath = TrainingFixture.TinyModel(5, "device-model"), OutputModelPath = output, Device = "cuda" };
        var e = Assert.Throws<ArgumentException>(() => new Trainer(o, TextWriter.Null).Run());
        Assert.Contains("TorchSharp-cuda-linux", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(output));
    }

    [Theory]
    [InlineData("cuda", "auto", "error: --device cuda: torch.cuda.is_available() is false")]
    [InlineData("cpu", "nccl", "error: --backend nccl reduces CUDA tensors, but --device cpu")]
    public void The_rank_process_refuses_a_device_and_backend_that_cannot_work_before_starting(string device, string backend, string expected)
    {
        Assert.True(File.Exists(TestPaths.RankDll), $"qwen3tts-rank is not built: {TestPaths.RankDll}");
        string output = TestPaths.NewTempDir("device-rank");
        // Run with a time limit that kills the process tree, and without any launcher variables of the test host.
        var r = Qwen3Tts.Tests.Entry.Executables.Run(TestPaths.RankDll, ["--train_jsonl", TrainingFixture.DemoData(2, tag: "device-rank-data"),
            "--init_model_path", output, "--output_model_path", output, "--device", device, "--backend", backend]);
        Assert.Equal(2, r.Exit);
        Assert.StartsWith(expected, r.Stderr);
        Assert.Equal("", r.Stdout); // nothing started: no training line
    }

    // ------------------------------------------------------------------------------------------------ placement

    static SftBatch Batch()
    {
        var ids = new List<int> { Config.ImStartTokenId, Config.AssistantTokenId, 198, 101, 102, Config.ImEndTokenId, 198, Config.ImStartTokenId, Config.AssistantTokenId, 198 };
        var codes = new long[3, 16];
        using var mel = ones(12, 128);
        return SftCollate.Collate([new SftSample(ids, codes, mel)], Config);
    }

    [Fact]
    public void A_batch_moves_every_tensor_to_the_device_keeping_dtypes_and_shapes()
    {
        using var batch = Batch();
        Assert.Equal(10, batch.Tensors.Count);
        Assert.All(batch.Tensors, t => Assert.Equal(DeviceType.CPU, t.device_type));
        using var moved = batch.To(Meta);
        for (int i = 0; i < batch.Tensors.Count; i++)
        {
            Assert.Equal(DeviceType.META, moved.Tensors[i].device_type);
            Assert.Equal(batch.Tensors[i].dtype, moved.Tensors[i].dtype);
            Assert.Equal(batch.Tensors[i].shape, moved.Tensors[i].shape);
        }
    }

    [Fact]
    public void A_batch_moved_to_its_own_device_is_a_new_batch_that_outlives_the_source()
    {
        var source = Batch();
        var expected = source.Tensors.Select(t => t.to(ScalarType.Float64).sum().item<double>()).ToArray();
        using var moved = source.To(CPU);
        Assert.All(moved.Tensors.Zip(source.Tensors), p => Assert.NotSame(p.First, p.Second));
        source.Dispose(); // what SftDataSource.Batch(indices, device) does with the CPU collation
        Assert.Equal(expected, moved.Tensors.Select(t => t.to(ScalarType.Float64).sum().item<double>()).ToArray());
    }

    [Theory]
    [InlineData(MixedPrecision.Fp32)]
    [InlineData(MixedPrecision.Bf16)]
    public void Masters_compute_copy_buckets_and_adamw_moments_live_on_the_parameters_device(MixedPrecision precision)
    {
        using var model = new Qwen3TtsModel(Config, Meta);
        using var trainable = new TrainableModel(model, precision);
        Assert.All(trainable.MasterParameters, p => Assert.Equal(DeviceType.META, p.Parameter.device_type));
        Assert.All(trainable.ComputeParameters, p => Assert.Equal(DeviceType.META, p.Parameter.device_type));
        Assert.All(model.SpeakerEncoder!.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));

        using var adam = new AdamW(trainable.MasterParameters);
        Assert.Equal(DeviceType.META, adam.Device.type);
        foreach (var (key, state) in adam.StateTensors())
        {
            // Moments beside their parameter; the step count stays a CPU scalar, as in torch's non-capturable AdamW.
            var expected = key.StartsWith("step.", StringComparison.Ordinal) ? DeviceType.CPU : DeviceType.META;
            Assert.Equal(expected, state.device_type);
        }

        FakeWorld.Run(2, comm =>
        {
            using var sync = new GradientSynchronizer(trainable.MasterParameters, comm, capBytes: 64 << 10,
                precision == MixedPrecision.Bf16 ? trainable.ComputeParameters : null);
            Assert.True(sync.BucketBuffers.Count > 1);
            Assert.Equal(DeviceType.META, sync.Device.type);
            Assert.All(sync.BucketBuffers, b => Assert.True(b.device_type == DeviceType.META && b.dtype == ScalarType.Float32));
            Assert.Equal(trainable.MasterParameters.Sum(p => p.Parameter.numel()), sync.BucketBuffers.Sum(b => b.numel()));
        });
    }

    [Fact]
    public void Parameters_on_two_devices_are_refused_by_the_optimizer_and_the_synchronizer()
    {
        using var a = new TorchSharp.Modules.Parameter(zeros(3));
        using var b = new TorchSharp.Modules.Parameter(zeros(new long[] { 2 }, device: Meta));
        (string, TorchSharp.Modules.Parameter)[] mixed = [("a", a), ("b", b)];
        Assert.Contains("'b' is on meta", Assert.Throws<ArgumentException>(() => new AdamW(mixed)).Message);
        FakeWorld.Run(2, comm => Assert.Contains("'b' is on meta", Assert.Throws<ArgumentException>(() => new GradientSynchronizer(mixed, comm)).Message));
    }

    // ------------------------------------------------------------------------------------------------ host staging

    [Fact]
    public void Staged_collectives_sum_and_broadcast_through_a_host_buffer_into_the_callers_tensor()
    {
        FakeWorld.Run(3, inner =>
        {
            var comm = new HostStagedCommunicator(inner) { StageCpuTensors = true };
            int r = comm.Rank;
            // A non-contiguous view: the host buffer is contiguous, the copy back writes through the view's strides.
            using var storage = arange(12, dtype: ScalarType.Float32).reshape(3, 4).add(100 * r);
            using var view = storage.t();
            comm.AllReduceSum(view);
            var sum = arange(12, dtype: ScalarType.Float32).reshape(3, 4).mul(3).add(300); // Σ_r (x + 100 r), r = 0..2
            Assert.Equal(sum.data<float>().ToArray(), storage.data<float>().ToArray());

            // Async: started inside a scope that closes before the result is awaited, as Launch's does; the host
            // buffer must outlive it. A failure of the inner reduce would fail the task.
            using var flat = full(5, (double)(r + 1), dtype: ScalarType.Float64);
            Task pending;
            using (NewDisposeScope()) pending = comm.AllReduceSumAsync(flat);
            pending.GetAwaiter().GetResult();
            Assert.Equal(Enumerable.Repeat(6.0, 5), flat.data<double>().ToArray());

            // Broadcast into a parameter that requires grad, from rank 1.
            using var p = new TorchSharp.Modules.Parameter(full(4, (float)r));
            comm.Broadcast(p, root: 1);
            Assert.Equal(Enumerable.Repeat(1f, 4), p.detach().data<float>().ToArray());

            // Host values (token counts, checksums) go to the communicator's tensor device: the CPU here.
            Assert.Equal(new[] { 21L, 3L }, comm.SumAcrossRanks([7L, r]));
            Assert.Equal(new[] { 0.5 * 3 + 3 }, comm.SumAcrossRanks([0.5 + r]));
        });
    }

    [Fact]
    public void The_trainer_over_staged_collectives_writes_the_same_bits_as_over_direct_ones()
    {
        string model = TrainingFixture.TinyModel(23, "staged-model");
        string data = TrainingFixture.DemoData(8, tag: "staged-data");
        TrainingOptions Options(string output) => new()
        {
            // fp32: in-process bf16 ranks on threads hit a TorchSharp scalar corruption (GradientSynchronizerTests' skipped case).
            TrainData = data, InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 1, BatchSize = 2,
            GradientAccumulationSteps = 2, Lr = 1e-3, LrScheduler = "constant", LoggingSteps = 1000, BucketSizeMb = 1, Coordinator = "off",
        };
        string direct = TestPaths.NewTempDir("direct"), staged = TestPaths.NewTempDir("staged");
        FakeWorld.Run(2, comm => new Trainer(Options(direct), TextWriter.Null, comm).Run());
        FakeWorld.Run(2, comm => new Trainer(Options(staged), TextWriter.Null, new HostStagedCommunicator(comm) { StageCpuTensors = true }).Run());

        // Overlapped bucket reduces, the loss sums, the broadcast and the checksums all went through host buffers.
        foreach (var file in new[] { "model.safetensors", Path.Combine(TrainingCheckpoint.StateFolder, TrainingCheckpoint.OptimizerFile) })
            Assert.Equal(File.ReadAllBytes(Path.Combine(direct, "last", file)), File.ReadAllBytes(Path.Combine(staged, "last", file)));
    }
}
