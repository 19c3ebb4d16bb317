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
