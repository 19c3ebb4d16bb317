using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Distributed;

/// <summary>The <c>--backend</c> choice. Auto: NCCL when the tensors are on CUDA and libnccl loads, else MPI.</summary>
public enum BackendChoice { Auto, Nccl, Mpi }

/// <summary>Which communicator to build ("single", "mpi" or "nccl") and why, for the log line.</summary>
public sealed record BackendDecision(string Backend, string Reason);

public static class Communicators
{
    /// <summary>The communicator for <paramref name="world"/>: the identity for a plain single process; otherwise the
    /// ranks' transport — MPI when an MPI launcher started them, TCP (rendezvous at MASTER_ADDR:MASTER_PORT) when none did
    /// (torchrun-style RANK/WORLD_SIZE, Kubernetes Indexed Jobs, flags) — used directly for CPU tensors or as NCCL's
    /// bootstrap (see <see cref="Choose(BackendChoice, WorldInfo, bool, Func{string?})"/>). MPI worlds are checked against
    /// what the launcher promised (srun starting singletons is an error here, before any training). <paramref name="env"/>
    /// defaults to this process's environment, <paramref name="tcp"/> to <see cref="TcpSettings.From"/> of it; rank 0
    /// writes the decision to <paramref name="log"/> (default standard error). <paramref name="tensors"/> is where the
    /// trainer keeps its tensors (--device): null means "CUDA when it is available" (--device auto).</summary>
    public static ICommunicator Create(WorldInfo world, IReadOnlyDictionary<string, string>? env = null,
        BackendChoice backend = BackendChoice.Auto, TextWriter? log = null, TcpSettings? tcp = null, DeviceType? tensors = null)
    {
        env ??= EnvVars.Snapshot();
        var decision = Choose(backend, world, env, tensors);
        if (world.Rank == 0 && (decision.Backend != "single" || backend != BackendChoice.Auto))
            (log ?? Console.Error).WriteLine($"backend: {(decision.Backend == "mpi" && UsesTcp(world, env) ? "tcp" : decision.Backend)} ({decision.Reason})");
        if (decision.Backend == "single") return new SingleProcessCommunicator();

        ICommunicator transport = UsesTcp(world, env) ? TcpCommunicator.Start(world, tcp ?? TcpSettings.From(env)) : StartMpi(world, env);
        return decision.Backend == "nccl" ? NcclCommunicator.Start(transport, env) : transport;
    }

    /// <summary><see cref="Choose(BackendChoice, WorldInfo, bool, Func{string?}, DeviceType?)"/> with this process's CUDA
    /// (torch.cuda.is_available(), asked only when the tensors may be on CUDA) and an attempt to load libnccl.</summary>
    public static BackendDecision Choose(BackendChoice backend, WorldInfo world, IReadOnlyDictionary<string, string> env, DeviceType? tensors = null) =>
        Choose(backend, world, tensors == DeviceType.CPU ? false : cuda.is_available(), () =>
        {
            try
            {
                _ = Nccl.Load(env);
                return null;
            }
            catch (CommunicatorException e) { return e.Message; }
        }, tensors);

    /// <summary>The one place the backend is decided. <paramref name="ncclLoadError"/> tries to load libnccl and returns
    /// null on success or the loader's message; it is called only when the answer matters (CUDA tensors, NCCL wanted).
    /// <paramref name="tensors"/> is the trainer's --device type; null means CUDA exactly when it is available (auto).
    /// An explicit <c>--backend nccl</c> that cannot work is an error (also for a single process: the flag says the
    /// job expects GPUs), as is nccl with CPU tensors; auto picks NCCL for CUDA tensors when libnccl loads and MPI
    /// otherwise, saying why. MPI with CUDA tensors works by staging each collective through host memory
    /// (<see cref="HostStagedCommunicator"/>); the reason says so.</summary>
    public static BackendDecision Choose(BackendChoice backend, WorldInfo world, bool cudaAvailable, Func<string?> ncclLoadError, DeviceType? tensors = null)
    {
        bool cudaTensors = tensors is { } type ? type == DeviceType.CUDA : cudaAvailable;
        const string Staged = "; CUDA tensors are staged through host memory for each collective (slower than nccl)";
        if (backend == BackendChoice.Nccl)
        {
            if (tensors is { } t && t != DeviceType.CUDA)
                throw new CommunicatorException(
                    $"--backend nccl reduces CUDA tensors, but --device {t.ToString().ToLowerInvariant()} keeps the model and gradients on the CPU: " +
                    "train with --device cuda (one rank per GPU), or use --backend mpi (or auto) for CPU training");
            if (!cudaAvailable)
                throw new CommunicatorException(
                    "--backend nccl needs CUDA, but torch.cuda.is_available() is false on this machine (no NVIDIA GPU or driver, or the CPU-only TorchSharp package): " +
                    "use --backend mpi (or auto), or run on a GPU machine with the TorchSharp CUDA package");
            if (ncclLoadError() is { } error)
                throw new CommunicatorException($"--backend nccl: {error}");
        }
        bool single = world.WorldSize == 1 && !world.IsMpiLaunch;
        if (single) return new("single", "one process: no collectives to run");
        return backend switch
        {
            BackendChoice.Mpi => new("mpi", "--backend mpi" + (cudaTensors ? Staged : "")),
            BackendChoice.Nccl => new("nccl", "--backend nccl"),
            _ when tensors == DeviceType.CPU => new("mpi", "auto: --device cpu keeps the tensors on the CPU"),
            _ when !cudaAvailable => new("mpi", "auto: torch.cuda.is_available() is false, so the tensors are on the CPU"),
            _ when ncclLoadError() is { } error => new("mpi", $"auto: CUDA is available but NCCL is not: {error.Split('\n')[0]} (set {EnvVars.NcclLibrary}){Staged}"),
            _ => new("nccl", "auto: the tensors are on CUDA and libnccl loaded"),
        };
    }

    static MpiCommunicator StartMpi(WorldInfo world, IReadOnlyDictionary<string, string> env)
    {
        // srun without an MPI plugin sets no PMI/PMIx variables; Open MPI would abort inside MPI_Init with a
        // build-configuration message, MPICH would start singletons. Say what is wrong before either happens.
        if (world.Launcher == Launcher.Slurm && world.WorldSize > 1
            && !new[] { EnvVars.PmixRank, EnvVars.PmiRank, EnvVars.OmpiRank }.Any(env.ContainsKey))
            throw new CommunicatorException(
                $"{world.Source} describes {world.WorldSize} tasks but no MPI process-management interface is set up (no {EnvVars.PmixRank}, {EnvVars.PmiRank} or {EnvVars.OmpiRank}): " +
                $"srun started {world.WorldSize} singleton processes (each rank 0 of 1). Launch with `srun --mpi=pmix` (or pmi2) so MPI sees one world of {world.WorldSize}, or use mpiexec");
        var mpi = MpiCommunicator.Start(env);
        try
        {
            WorldDiscovery.CheckMpiWorld(world, mpi.Rank, mpi.WorldSize, env);
            return mpi;
        }
        catch
        {
            mpi.Dispose();
            throw;
        }
    }

    /// <summary>No MPI launcher started this process (no Open MPI, PMI or PMIx rank variable), so MPI_Init would make a
    /// singleton: the ranks meet over TCP instead.</summary>
    public static bool UsesTcp(WorldInfo world, IReadOnlyDictionary<string, string> env) =>
        world.Launcher is Launcher.Torchrun or Launcher.KubernetesIndexedJob or Launcher.Explicit
        && !new[] { EnvVars.OmpiRank, EnvVars.PmiRank, EnvVars.PmixRank }.Any(env.ContainsKey);
}
