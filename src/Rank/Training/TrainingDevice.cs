using System.Globalization;
using Qwen3Tts.Rank.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Training;

/// <summary>--device: where the model (fp32 masters, the bf16 compute copy, the frozen speaker encoder), the
/// batches, the gradient buckets, the AdamW state and the loss sums live. Batches are collated on the CPU and moved
/// once; checkpoints and exports copy to the CPU as they write.
/// <list type="bullet">
/// <item><c>cpu</c> (the default; the only choice the TorchSharp-cpu build can run)</item>
/// <item><c>cuda</c>: cuda:LOCAL_RANK, one rank per GPU (what mpiexec/srun/torchrun with one task per GPU expect)</item>
/// <item><c>cuda:N</c>: that GPU, whatever the local rank (one process per node, or a hand-made mapping)</item>
/// <item><c>auto</c>: cuda:LOCAL_RANK when torch.cuda.is_available(), else cpu</item>
/// </list></summary>
public static class TrainingDevice
{
    public const string Default = "cpu";

    public const string Help = "where the model, batches, gradients and optimizer state live: cpu (default), cuda (cuda:LOCAL_RANK, one rank per GPU), " +
        "cuda:N, or auto (cuda:LOCAL_RANK when CUDA is available, else cpu); CUDA needs the TorchSharp-cuda-linux build (README: GPU clusters)";

    /// <summary>What to say when CUDA is asked for but libtorch has none: the package to build with and the fallback.</summary>
    const string CudaMissing = "torch.cuda.is_available() is false: this build links TorchSharp-cpu (libtorch without CUDA), or the machine has no NVIDIA GPU and driver. " +
        "Build with the TorchSharp-cuda-linux package (its libtorch-cuda-12.x natives) instead of TorchSharp-cpu " +
        "(dotnet publish -p:TorchSharpPackage=TorchSharp-cuda-linux, or the Dockerfile's cuda target), run on a machine with an NVIDIA driver, or train with --device cpu";

    /// <summary>Null when <paramref name="spec"/> is one of cpu, cuda, cuda:N, auto; else why not (for --device validation).</summary>
    public static string? SyntaxError(string? spec) => spec switch
    {
        "cpu" or "cuda" or "auto" => null,
        _ when spec is not null && spec.StartsWith("cuda:", StringComparison.Ordinal)
               && int.TryParse(spec.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out _) => null,
        _ => $"must be cpu, cuda, cuda:N (N = 0, 1, ...) or auto, got '{spec}'",
    };

    /// <summary><see cref="Resolve(string, int, bool, Func{int})"/> with this process's libtorch.</summary>
    public static Device Resolve(string spec, int localRank) =>
        Resolve(spec, localRank, spec is "cpu" ? false : cuda.is_available(), cuda.device_count);

    /// <summary>The device for <paramref name="spec"/> on a rank with <paramref name="localRank"/>. A pure function:
    /// <paramref name="deviceCount"/> is asked only when CUDA is available and wanted. Every refusal names --device
    /// and the fix.</summary>
    public static Device Resolve(string spec, int localRank, bool cudaAvailable, Func<int> deviceCount)
    {
        if (SyntaxError(spec) is { } error) throw new ArgumentException($"--device: {error}");
        if (spec == "cpu" || (spec == "auto" && !cudaAvailable)) return CPU;
        if (!cudaAvailable) throw new ArgumentException($"--device {spec}: {CudaMissing}");
        int count = deviceCount();
        if (spec.StartsWith("cuda:", StringComparison.Ordinal))
        {
            int index = int.Parse(spec.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture);
            if (index >= count)
                throw new ArgumentException($"--device {spec}: this node has {count} visible CUDA device(s) (cuda:0..cuda:{count - 1}; CUDA_VISIBLE_DEVICES restricts them)");
            return new Device(DeviceType.CUDA, index);
        }
        if (localRank >= count)
            throw new ArgumentException($"--device {spec}: this rank's local rank is {localRank}, but this node has {count} visible CUDA device(s): " +
                $"start at most {count} ranks per node (mpiexec -npernode {count}, srun --ntasks-per-node={count}, torchrun --nproc_per_node={count}) " +
                "or keep CUDA_VISIBLE_DEVICES the same on every rank of a node");
        return new Device(DeviceType.CUDA, localRank);
    }

    /// <summary>Makes <paramref name="device"/> this thread's current CUDA device (torch.cuda.set_device, which TorchSharp
    /// lacks), so work libtorch does not pin to a tensor's device (its context, cuBLAS handles) lands on this rank's GPU
    /// rather than on GPU 0 of every rank. Nothing for the CPU.</summary>
    public static void MakeCurrent(Device device)
    {
        if (device.type != DeviceType.CUDA) return;
        _ = InitializeDevice(device);
        CudaDriver.Load().SetCurrentDevice(device.index);
    }

    /// <summary>The communicator the trainer uses for tensors on <paramref name="device"/>: <paramref name="comm"/> itself
    /// when its tensors live there (MPI/TCP and the CPU, NCCL and its GPU) or when there is one rank; MPI/TCP wrapped in
    /// <see cref="HostStagedCommunicator"/> for GPU tensors (each collective through a host copy: works, slower than NCCL).
    /// NCCL with the CPU, or with another GPU than its own, is refused with the fix (<see cref="Mismatch"/>).</summary>
    public static ICommunicator CommunicatorFor(Device device, ICommunicator comm)
    {
        var native = comm.TensorDevice;
        if (Mismatch(device, native, comm.LocalRank) is { } error) throw new ArgumentException(error);
        bool staged = device.type != DeviceType.CPU && native.type == DeviceType.CPU && comm.WorldSize > 1;
        return staged ? new HostStagedCommunicator(comm) : comm;
    }

    /// <summary>Why tensors on <paramref name="device"/> cannot go to a communicator whose tensors live on
    /// <paramref name="communicatorDevice"/>, or null when they can. Only a GPU communicator (NCCL) is particular: it
    /// takes tensors on its own GPU and nothing else. A CPU communicator takes anything (GPU tensors staged).</summary>
    public static string? Mismatch(Device device, Device communicatorDevice, int localRank)
    {
        if (communicatorDevice.type != DeviceType.CUDA) return null;
        if (device.type != DeviceType.CUDA)
            return $"--backend nccl reduces CUDA tensors, but --device {device} keeps the model and gradients on the CPU: " +
                "train with --device cuda (one rank per GPU) or use --backend mpi";
        if (device.index != communicatorDevice.index)
            return $"--device {device}, but this rank's NCCL communicator is on {communicatorDevice} (its local rank {localRank}): " +
                "with --backend nccl use --device cuda (cuda:LOCAL_RANK), or --backend mpi";
        return null;
    }
}
