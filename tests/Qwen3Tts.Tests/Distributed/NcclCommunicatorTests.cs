using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Qwen3Tts.Rank.Distributed;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Distributed;

/// <summary>What of the NCCL backend a machine without a GPU can check: library loading, the dtype table, the
/// unique-id exchange, tensor validation before any NCCL call, and the backend decision. The collectives themselves
/// need GPUs (see the class remarks of NcclCommunicator).</summary>
public class NcclCommunicatorTests
{
    static Dictionary<string, string> Env(params (string Key, string Value)[] vars) => vars.ToDictionary(v => v.Key, v => v.Value);

    static WorldInfo TwoRanksUnderOpenMpi() => new(0, 2, 0, Launcher.OpenMpi, "OMPI_COMM_WORLD_RANK=0, OMPI_COMM_WORLD_SIZE=2");

    [Fact]
    public void A_missing_library_is_reported_with_every_path_tried_and_the_override_variable()
    {
        string[] tried = ["/nonexistent/a/libnccl.so.2", "/nonexistent/b/libnccl.so.2", "libnccl-qwen3tts-test-missing.so.2"];
        var e = Assert.Throws<CommunicatorException>(() => Nccl.Load(tried));
        foreach (var path in tried) Assert.Contains(path, e.Message);
        Assert.Contains("/nonexistent/a/libnccl.so.2: no such file", e.Message);
        Assert.Contains(EnvVars.NcclLibrary, e.Message);
        Assert.Equal("QWEN3TTS_NCCL_LIB", EnvVars.NcclLibrary);
    }

    [Fact]
    public void The_override_variable_is_the_only_candidate_when_set()
    {
        var env = Env((EnvVars.NcclLibrary, " /opt/nccl/lib/libnccl.so.2 "));
        Assert.Equal(["/opt/nccl/lib/libnccl.so.2"], Nccl.Candidates(env));
        var e = Assert.Throws<CommunicatorException>(() => Nccl.Load(Env((EnvVars.NcclLibrary, "/nonexistent/libnccl.so.2"))));
        Assert.Contains("/nonexistent/libnccl.so.2: no such file", e.Message);

        var defaults = Nccl.Candidates(Env());
        Assert.Equal("libnccl.so.2", defaults[0]);
        Assert.All(defaults, c => Assert.EndsWith("libnccl.so.2", c));
    }

    [Fact]
    public void Dtypes_map_to_the_ncclDataType_t_values_of_nccl_h()
    {
        Assert.Equal((7, 4), Nccl.DataTypeOf(ScalarType.Float32, "AllReduceSum"));
        Assert.Equal((8, 8), Nccl.DataTypeOf(ScalarType.Float64, "AllReduceSum"));
        Assert.Equal((4, 8), Nccl.DataTypeOf(ScalarType.Int64, "AllReduceSum"));
        Assert.Equal((9, 2), Nccl.DataTypeOf(ScalarType.BFloat16, "AllReduceSum"));
        Assert.Equal(0, Nccl.Sum);
        Assert.Equal(128, Nccl.UniqueIdBytes);
        Assert.Equal(128, Unsafe.SizeOf<NcclUniqueId>());
        foreach (var refused in new[] { ScalarType.Float16, ScalarType.Int32, ScalarType.Int8, ScalarType.Byte, ScalarType.Bool, ScalarType.ComplexFloat32 })
        {
            var e = Assert.Throws<CommunicatorException>(() => Nccl.DataTypeOf(refused, "Broadcast"));
            Assert.Contains(refused.ToString(), e.Message);
            Assert.StartsWith("Broadcast:", e.Message);
        }
    }

    [Fact]
    public void Version_codes_decode_in_both_encodings()
    {
        Assert.Equal("2.21.5", Nccl.VersionText(22105));
        Assert.Equal("2.10.3", Nccl.VersionText(21003));
        Assert.Equal("2.8.4", Nccl.VersionText(2804));
        Assert.Equal(21000, Nccl.BFloat16MinVersion);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void Every_rank_ends_with_rank_0s_unique_id(int size)
    {
        var rank0Id = new byte[Nccl.UniqueIdBytes];
        new Random(1234).NextBytes(rank0Id);
        var received = new ConcurrentDictionary<int, byte[]>();
        int creations = 0;
        FakeWorld.Run(size, comm =>
        {
            received[comm.Rank] = NcclCommunicator.ShareUniqueId(comm, () =>
            {
                Interlocked.Increment(ref creations);
                Assert.Equal(0, comm.Rank);
                return (byte[])rank0Id.Clone();
            });
        });
        Assert.Equal(1, creations);
        Assert.Equal(size, received.Count);
        foreach (var (_, id) in received) Assert.Equal(rank0Id, id);
    }

    [Fact]
    public void A_failure_to_make_the_id_on_rank_0_fails_every_rank_instead_of_hanging()
    {
        var errors = Assert.Throws<AggregateException>(() => FakeWorld.Run(3, comm =>
            NcclCommunicator.ShareUniqueId(comm, () => throw new CommunicatorException("ncclGetUniqueId failed: unhandled system error"))));
        Assert.Equal(3, errors.InnerExceptions.Count);
        Assert.Single(errors.InnerExceptions, e => e.Message.Contains("ncclGetUniqueId failed"));
        Assert.Equal(2, errors.InnerExceptions.Count(e => e.Message.Contains("rank 0 could not create the NCCL unique id")));

        var wrongLength = Assert.Throws<AggregateException>(() => FakeWorld.Run(2, comm => NcclCommunicator.ShareUniqueId(comm, () => new byte[64])));
        Assert.Contains(wrongLength.InnerExceptions, e => e.Message.Contains("produced 64 bytes"));
    }

    [Fact]
    public void Unique_id_bytes_round_trip_through_the_native_struct()
    {
        var bytes = Enumerable.Range(0, Nccl.UniqueIdBytes).Select(i => (byte)(i * 7 + 3)).ToArray();
        Assert.Equal(bytes, NcclUniqueId.From(bytes).ToArray());
        Assert.Throws<CommunicatorException>(() => NcclUniqueId.From(new byte[127]));
    }

    [Fact]
    public void Cpu_tensors_are_refused_before_any_NCCL_call_naming_the_device_and_dtype()
    {
        var gpu0 = new Device(TorchSharp.DeviceType.CUDA, 0);
        // No NCCL library is loaded in this process (this machine has none): Describe is all that runs before a submit.
        using var cpuTensor = zeros(4, dtype: ScalarType.Float32);
        var e = Assert.Throws<CommunicatorException>(() => NcclCommunicator.Describe(cpuTensor, "AllReduceSum", gpu0, 22105));
        Assert.Contains("AllReduceSum", e.Message);
        Assert.Contains("cpu", e.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("Float32", e.Message);
        Assert.Contains("cuda:0", e.Message);

        using var bf16 = ones(3, dtype: ScalarType.BFloat16);
        var b = Assert.Throws<CommunicatorException>(() => NcclCommunicator.Describe(bf16, "Broadcast", gpu0, 22105));
        Assert.Contains("BFloat16", b.Message);
        Assert.Contains("CPU", b.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void The_device_pointer_comes_from_the_first_element_storage_offset_included()
    {
        // Checked on the CPU, where the memory can be read back: THSTensor_data points at the view's first element.
        using var storage = arange(10, dtype: ScalarType.Float32);
        using var view = storage.narrow(0, 3, 5);
        var read = new float[5];
        Marshal.Copy(NcclCommunicator.DataPointer(view), read, 0, 5);
        Assert.Equal([3f, 4f, 5f, 6f, 7f], read);
        Assert.Equal(NcclCommunicator.DataPointer(storage) + 3 * sizeof(float), NcclCommunicator.DataPointer(view));
    }

    [Fact]
    public void TorchSharp_exposes_no_CUDA_stream_so_the_default_stream_is_the_only_one()
    {
        // NcclCommunicator's ordering argument rests on this. If it fails, TorchSharp can now run work on other streams:
        // enqueue the collectives on TorchSharp's current stream instead of stream 0.
        var streamTypes = typeof(TorchSharp.torch).Assembly.GetTypes()
            .Where(t => t.Name.Contains("Stream", StringComparison.Ordinal) && (t.Namespace ?? "").StartsWith("TorchSharp", StringComparison.Ordinal)
                        && t.Name is not "StreamUtils" && !typeof(Stream).IsAssignableFrom(t))
            .Select(t => t.FullName).ToList();
        Assert.Empty(streamTypes);
        Assert.DoesNotContain(typeof(cuda).GetMethods(), m => m.Name.Contains("stream", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public void Auto_on_a_cpu_only_machine_picks_mpi_and_says_why_without_probing_nccl()
    {
        var decision = Communicators.Choose(BackendChoice.Auto, TwoRanksUnderOpenMpi(), cudaAvailable: false,
            () => throw new InvalidOperationException("NCCL must not be probed without CUDA"));
        Assert.Equal("mpi", decision.Backend);
        Assert.Contains("torch.cuda.is_available() is false", decision.Reason);

        // This process: the CPU TorchSharp package, no GPU.
        Assert.False(cuda.is_available());
        Assert.Equal("mpi", Communicators.Choose(BackendChoice.Auto, TwoRanksUnderOpenMpi(), Env()).Backend);

        var single = Communicators.Choose(BackendChoice.Auto, WorldInfo.Single, cudaAvailable: false, () => null);
        Assert.Equal("single", single.Backend);
    }

    [Fact]
    public void Auto_with_cuda_picks_nccl_when_it_loads_and_mpi_with_the_reason_when_not()
    {
        Assert.Equal("nccl", Communicators.Choose(BackendChoice.Auto, TwoRanksUnderOpenMpi(), cudaAvailable: true, () => null).Backend);
        var fallback = Communicators.Choose(BackendChoice.Auto, TwoRanksUnderOpenMpi(), cudaAvailable: true,
            () => "cannot load the NCCL library; tried:\n  libnccl.so.2: not found");
        Assert.Equal("mpi", fallback.Backend);
        Assert.Contains("cannot load the NCCL library", fallback.Reason);
        Assert.Contains(EnvVars.NcclLibrary, fallback.Reason);
        Assert.Equal("mpi", Communicators.Choose(BackendChoice.Mpi, TwoRanksUnderOpenMpi(), cudaAvailable: true, () => null).Backend);
    }

    [Fact]
    public void Explicit_nccl_without_cuda_fails_clearly_before_MPI_starts()
    {
        var e = Assert.Throws<CommunicatorException>(() =>
            Communicators.Create(TwoRanksUnderOpenMpi(), Env(("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")), BackendChoice.Nccl, TextWriter.Null));
        Assert.Contains("--backend nccl needs CUDA", e.Message);
        Assert.Contains("torch.cuda.is_available() is false", e.Message);
        Assert.Contains("--backend mpi", e.Message);

        Assert.Throws<CommunicatorException>(() => Communicators.Create(WorldInfo.Single, Env(), BackendChoice.Nccl, TextWriter.Null));

        var missing = Assert.Throws<CommunicatorException>(() => Communicators.Choose(BackendChoice.Nccl, TwoRanksUnderOpenMpi(), cudaAvailable: true,
            () => "cannot load the NCCL library; tried: ..."));
        Assert.StartsWith("--backend nccl: cannot load the NCCL library", missing.Message);
    }

    [Fact]
    public void The_chosen_backend_is_logged_by_rank_0()
    {
        var log = new StringWriter();
        using var comm = Communicators.Create(WorldInfo.Single, Env(), BackendChoice.Mpi, log);
        Assert.IsType<SingleProcessCommunicator>(comm);
        Assert.Contains("backend: single (one process", log.ToString());

        var quiet = new StringWriter();
        using var auto = Communicators.Create(WorldInfo.Single, Env(), BackendChoice.Auto, quiet);
        Assert.Equal("", quiet.ToString());
    }
}
