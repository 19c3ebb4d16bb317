using Qwen3Tts.Entry;
using Qwen3Tts.Rank.Distributed;
using Qwen3Tts.Rank.Training;

namespace Qwen3Tts.Rank;

static class RankMain
{
    static readonly TimeSpan OthersWaitForRank0 = TimeSpan.FromSeconds(2);

    /// <summary>The trainer's entry: binds the training flags (<paramref name="bindOptions"/>) and resolves --device for
    /// this rank before any communicator starts, since the backend depends on where the tensors live (see
    /// <see cref="Communicators.Choose(BackendChoice, WorldInfo, bool, Func{string?}, TorchSharp.DeviceType?)"/>) and a
    /// GPU that is not there is best reported by every rank alike, before MPI. The trainer resolves the device again
    /// from the communicator's local rank. Then as <see cref="Run(int?, int?, int?, BackendChoice, string?, int?, int?, Func{ICommunicator, int})"/>.</summary>
    public static int Run(int? rank, int? worldSize, int? localRank, BackendChoice backend, string? masterAddr, int? masterPort,
        int? rendezvousTimeoutSeconds, Func<TrainingOptions> bindOptions, Func<ICommunicator, TrainingOptions, int> body)
    {
        TrainingOptions? options = null;
        return Start(rank, worldSize, localRank, backend, masterAddr, masterPort, rendezvousTimeoutSeconds, world =>
        {
            options = bindOptions();
            return TrainingDevice.Resolve(options.Device, world.LocalRank);
        }, comm => body(comm, options!));
    }

    /// <summary>Finds the world, starts the communicator for CPU tensors (<paramref name="backend"/>) and runs
    /// <paramref name="body"/> (prepare: host-side work only). Expected failures (bad flags,
    /// config, data, checkpoint) print one line naming what is wrong and exit 2; a bug exits 70 with its trace (<see cref="ErrorReport"/>). With several ranks any failure on
    /// any rank ends the whole job at once (MPI_Abort, or the TCP abort frame), naming the rank, so no rank waits forever in a collective.
    /// The TCP rendezvous flags default (null) to MASTER_ADDR / MASTER_PORT / 300 s.</summary>
    public static int Run(int? rank, int? worldSize, int? localRank, BackendChoice backend, string? masterAddr, int? masterPort,
        int? rendezvousTimeoutSeconds, Func<ICommunicator, int> body) =>
        Start(rank, worldSize, localRank, backend, masterAddr, masterPort, rendezvousTimeoutSeconds, _ => TorchSharp.torch.CPU, body);

    static int Start(int? rank, int? worldSize, int? localRank, BackendChoice backend, string? masterAddr, int? masterPort,
        int? rendezvousTimeoutSeconds, Func<WorldInfo, TorchSharp.torch.Device> resolveDevice, Func<ICommunicator, int> body)
    {
        ICommunicator comm;
        string device;
        WorldInfo? world = null;
        try
        {
            var env = EnvVars.Snapshot();
            world = WorldDiscovery.Resolve(env, new ExplicitWorld(rank, worldSize, localRank));
            var resolved = resolveDevice(world);
            device = resolved.ToString();
            var tcp = TcpSettings.From(env, masterAddr, masterPort, rendezvousTimeoutSeconds is { } s ? TimeSpan.FromSeconds(s) : null);
            comm = Communicators.Create(world, env, backend, tcp: tcp, tensors: resolved.type);
        }
        catch (Exception e) when (ErrorReport.IsUserError(e) || e is InvalidOperationException)
        {
            // Every rank binds the same flags and finds the same fault: rank 0 alone reports it, the others just exit.
            if (world is null || world.Rank == 0) Console.Error.WriteLine($"error: {e.Message}");
            return ExitCodes.UserError;
        }

        using (comm)
        {
            // One line per rank, so a launcher that reports a dead process by PID (MPICH's hydra) names its rank too.
            if (comm.WorldSize > 1)
                Console.Error.WriteLine($"rank {comm.Rank} of {comm.WorldSize}: pid {Environment.ProcessId} on {Environment.MachineName} (local rank {comm.LocalRank}, {device}, {comm.Backend})");
            try { return body(comm); }
            catch (Exception e)
            {
                // Printed by the rank that found it, naming the rank; then every rank ends (MPI_Abort or the TCP abort frame).
                // A user error (bad data, a missing model) is usually met by every rank at once: the others give rank 0
                // a moment to report it and end the job, so it is printed once; one only they met is reported after it.
                if (comm.WorldSize > 1 && comm.Rank != 0 && ErrorReport.IsUserError(e)) Thread.Sleep(OthersWaitForRank0);
                int code = ErrorReport.Report(e, Console.Error, ErrorReport.DebugRequested(Environment.GetCommandLineArgs()),
                    comm.WorldSize > 1 ? $"rank {comm.Rank} of {comm.WorldSize}" : null);
                if (comm.WorldSize > 1) comm.Abort(code); // does not return
                return code;
            }
        }
    }
}
