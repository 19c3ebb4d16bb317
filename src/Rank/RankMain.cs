using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Rank.Distributed;
using Qwen3Tts.Rank.Training;

namespace Qwen3Tts.Rank;

static class RankMain
{
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
    /// config, data, checkpoint) print one line naming what is wrong and exit 2. With several ranks any failure on
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
        try
        {
            var env = EnvVars.Snapshot();
            var world = WorldDiscovery.Resolve(env, new ExplicitWorld(rank, worldSize, localRank));
            var resolved = resolveDevice(world);
            device = resolved.ToString();
            var tcp = TcpSettings.From(env, masterAddr, masterPort, rendezvousTimeoutSeconds is { } s ? TimeSpan.FromSeconds(s) : null);
            comm = Communicators.Create(world, env, backend, tcp: tcp, tensors: resolved.type);
        }
        catch (Exception e) when (e is ArgumentException or CommunicatorException or InvalidOperationException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }

        using (comm)
        {
            // One line per rank, so a launcher that reports a dead process by PID (MPICH's hydra) names its rank too.
            if (comm.WorldSize > 1)
                Console.Error.WriteLine($"rank {comm.Rank} of {comm.WorldSize}: pid {Environment.ProcessId} on {Environment.MachineName} (local rank {comm.LocalRank}, {device}, {comm.Backend})");
            try { return body(comm); }
            catch (Exception e)
            {
                bool expected = e is ArgumentException or ConfigException or CheckpointException or DataException or AudioException
                    or TrainingCheckpointException or FileNotFoundException or DirectoryNotFoundException;
                string what = expected ? e.Message : e.ToString();
                string who = comm.WorldSize > 1 ? $"rank {comm.Rank} of {comm.WorldSize}: " : "";
                Console.Error.WriteLine($"error: {who}{what}");
                Console.Error.Flush();
                if (comm.WorldSize > 1) comm.Abort(expected ? 2 : 1); // ends every rank; does not return
                return expected ? 2 : 1;
            }
        }
    }
}
