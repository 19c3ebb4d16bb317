namespace Qwen3Tts.Rank.Distributed;

public static class Communicators
{
    /// <summary>The communicator for <paramref name="world"/>: the identity for a plain single process, else MPI,
    /// checked against what the launcher promised (a world-size mismatch, such as srun starting singletons, is an
    /// error here, before any training). <paramref name="env"/> defaults to this process's environment.</summary>
    public static ICommunicator Create(WorldInfo world, IReadOnlyDictionary<string, string>? env = null)
    {
        if (world.WorldSize == 1 && !world.IsMpiLaunch) return new SingleProcessCommunicator();
        env ??= EnvVars.Snapshot();
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
}
