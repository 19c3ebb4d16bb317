namespace Qwen3Tts.Rank.Distributed;

public static class Communicators
{
    /// <summary>The communicator for <paramref name="world"/>: the identity for a plain single process; TCP (rendezvous at
    /// MASTER_ADDR:MASTER_PORT) for several processes that no MPI launcher started (torchrun-style RANK/WORLD_SIZE,
    /// Kubernetes Indexed Jobs, flags); else MPI, checked against what the launcher promised (a world-size mismatch,
    /// such as srun starting singletons, is an error here, before any training). <paramref name="env"/> defaults to this
    /// process's environment; <paramref name="tcp"/> to <see cref="TcpSettings.From"/> of it.</summary>
    public static ICommunicator Create(WorldInfo world, IReadOnlyDictionary<string, string>? env = null, TcpSettings? tcp = null)
    {
        if (world.WorldSize == 1 && !world.IsMpiLaunch) return new SingleProcessCommunicator();
        env ??= EnvVars.Snapshot();
        if (UsesTcp(world, env)) return TcpCommunicator.Start(world, tcp ?? TcpSettings.From(env));
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
