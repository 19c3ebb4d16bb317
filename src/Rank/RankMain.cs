using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Rank.Distributed;
using Qwen3Tts.Rank.Training;

namespace Qwen3Tts.Rank;

static class RankMain
{
    /// <summary>Binds the training flags (<paramref name="bindOptions"/>), finds the world, resolves --device for this
    /// rank, starts the communicator (<paramref name="backend"/>: see <see cref="Communicators.Choose(BackendChoice, WorldInfo, bool, Func{string?}, TorchSharp.DeviceType?)"/>,
    /// which depends on the device) and runs <paramref name="body"/>. Expected failures (bad flags,
    /// config, data, checkpoint) print one line naming what is wrong and exit 2. With several ranks any failure on
    /// any rank ends the whole job at once (MPI_Abort, or the TCP abort frame), naming the rank, so no rank waits forever in a collective.
    /// The TCP rendezvous flags default (null) to MASTER_ADDR / MASTER_PORT / 300 s.</summary>
    public static int Run(int? rank, int? worldSize, int? localRank, BackendChoice backend, string? masterAddr, int? masterPort,
        int? rendezvousTimeoutSeconds, Func<TrainingOptions> bindOptions, Func<ICommunicator, TrainingOptions, int> body)
    {
        ICommunicator comm;
        TrainingOptions options;
        string device;
        try
        {
            options = bindOptions();
            var env = EnvVars.Snapshot();
            var world = WorldDiscovery.Resolve(env, new ExplicitWorld(rank, worldSize, localRank));
            // Before any communicator: the backend depends on where the tensors live, and a GPU that is not there is
            // reported here, by every rank alike. The trainer resolves it again from the communicator's local rank.
            var resolved = TrainingDevice.Resolve(options.Device, world.LocalRank);
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
            try { return body(comm, options); }
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
