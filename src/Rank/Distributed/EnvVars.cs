using System.Collections;

namespace Qwen3Tts.Rank.Distributed;

/// <summary>Every environment variable the distributed layer reads, in one place, grouped by who sets it.</summary>
public static class EnvVars
{
    // Ours.
    /// <summary>Path or loader name of the MPI library to load, overriding launcher detection (e.g. /opt/mpi/lib/libmpi.so.40).</summary>
    public const string MpiLibrary = "QWEN3TTS_MPI_LIB";
    /// <summary>Path or loader name of the NCCL library to load instead of the default search (e.g. /opt/nccl/lib/libnccl.so.2).</summary>
    public const string NcclLibrary = "QWEN3TTS_NCCL_LIB";
    /// <summary>Shared secret of one job: TCP ranks refuse peers with another (only its hash is sent; never logged).</summary>
    public const string CoordinatorToken = Qwen3Tts.Coordinator.CoordinatorEnvVars.Token;
    /// <summary>Seconds a TCP collective waits for a peer before failing (default 1800: rank 0 may be writing a checkpoint).</summary>
    public const string TcpTimeoutSeconds = "QWEN3TTS_TCP_TIMEOUT_S";

    // torchrun / torch.distributed.launch style (also what Kubernetes operators usually set).
    public const string Rank = "RANK";
    public const string WorldSize = "WORLD_SIZE";
    public const string LocalRank = "LOCAL_RANK";
    /// <summary>Rank 0's host name or address: where the TCP communicator's rendezvous is (torchrun's name).</summary>
    public const string MasterAddr = "MASTER_ADDR";
    /// <summary>Rank 0's rendezvous port (torchrun's name; default 29500).</summary>
    public const string MasterPort = "MASTER_PORT";

    // Open MPI (mpirun / mpiexec / prterun).
    public const string OmpiRank = "OMPI_COMM_WORLD_RANK";
    public const string OmpiSize = "OMPI_COMM_WORLD_SIZE";
    public const string OmpiLocalRank = "OMPI_COMM_WORLD_LOCAL_RANK";

    // MPICH Hydra (and Slurm's --mpi=pmi2): PMI.
    public const string PmiRank = "PMI_RANK";
    public const string PmiSize = "PMI_SIZE";
    public const string MpichLocalRank = "MPI_LOCALRANKID";
    /// <summary>Prefix of the variables Hydra sets for its proxies (HYDRA_*, seen in some setups).</summary>
    public const string HydraPrefix = "HYDRA_";

    // PMIx (Open MPI 5 / prterun, Slurm's --mpi=pmix).
    public const string PmixRank = "PMIX_RANK";

    // Slurm.
    public const string SlurmProcId = "SLURM_PROCID";
    public const string SlurmNTasks = "SLURM_NTASKS";
    public const string SlurmStepNumTasks = "SLURM_STEP_NUM_TASKS";
    public const string SlurmLocalId = "SLURM_LOCALID";

    // Kubernetes Indexed Jobs.
    public const string JobCompletionIndex = "JOB_COMPLETION_INDEX";

    /// <summary>Open MPI's launcher refuses root unless both are set (containers often run as root).</summary>
    public const string OmpiAllowRunAsRoot = "OMPI_ALLOW_RUN_AS_ROOT";
    public const string OmpiAllowRunAsRootConfirm = "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM";

    /// <summary>This process's environment as a dictionary (the input of the pure functions here).</summary>
    public static IReadOnlyDictionary<string, string> Snapshot()
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (DictionaryEntry entry in Environment.GetEnvironmentVariables())
            if (entry.Key is string key && entry.Value is string value) result[key] = value;
        return result;
    }
}
