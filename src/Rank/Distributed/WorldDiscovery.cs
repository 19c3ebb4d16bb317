using System.Globalization;

namespace Qwen3Tts.Rank.Distributed;

/// <summary>Who started this process (decides the communicator and how MPI sees the world).</summary>
public enum Launcher
{
    /// <summary>Nothing: a plain single process.</summary>
    None,
    /// <summary>Only the values passed in (flags).</summary>
    Explicit,
    Torchrun,
    OpenMpi,
    /// <summary>MPICH's Hydra, or anything else speaking PMI (PMI_RANK/PMI_SIZE).</summary>
    Mpich,
    Pmix,
    Slurm,
    KubernetesIndexedJob,
}

/// <summary>This process's place in the job. <paramref name="Source"/> names the variables the values came from.</summary>
public sealed record WorldInfo(int Rank, int WorldSize, int LocalRank, Launcher Launcher, string Source)
{
    public static WorldInfo Single { get; } = new(0, 1, 0, Launcher.None, "no launcher");

    /// <summary>Launched by something that starts an MPI world (so MPI_Init will see the other ranks).</summary>
    public bool IsMpiLaunch => Launcher is Launcher.OpenMpi or Launcher.Mpich or Launcher.Pmix or Launcher.Slurm;
}

/// <summary>Values given on the command line; each one overrides the environment's.</summary>
public sealed record ExplicitWorld(int? Rank = null, int? WorldSize = null, int? LocalRank = null);

/// <summary>Resolves (rank, world size, local rank, launcher) from explicit values and the launchers' environment
/// variables. A pure function of its inputs, so every launcher is unit-tested without starting one.</summary>
public static class WorldDiscovery
{
    /// <summary>One launcher's view of this process; <see cref="Vars"/> says which variables it read.</summary>
    sealed record Source(Launcher Launcher, int Rank, int? Size, int? LocalRank, string Vars);

    /// <summary>Precedence: explicit values, then the first environment source present among torchrun
    /// (RANK/WORLD_SIZE), Open MPI, MPICH/PMI, PMIx, Slurm, Kubernetes Indexed Job. Launchers that
    /// describe the same process (torchrun, Open MPI, PMI, PMIx) must agree with the result; Slurm and
    /// Kubernetes are not compared because an inner launcher legitimately differs from them (mpirun inside
    /// an sbatch script inherits SLURM_PROCID=0; JOB_COMPLETION_INDEX is the pod, not the rank).</summary>
    public static WorldInfo Resolve(IReadOnlyDictionary<string, string> env, ExplicitWorld? explicitWorld = null)
    {
        var flags = explicitWorld ?? new ExplicitWorld();
        var sources = Sources(env, flags);
        var chosen = sources.FirstOrDefault();

        if (chosen is null)
        {
            if (flags.Rank is null && flags.WorldSize is null)
                return flags.LocalRank is { } lr ? Validate(WorldInfo.Single with { LocalRank = lr, Launcher = Launcher.Explicit, Source = "flags" }) : WorldInfo.Single;
            if (flags.WorldSize is null)
                throw new CommunicatorException($"--rank {flags.Rank} was given without --world-size and no launcher variables are set: pass --world-size too, or launch with mpiexec/srun/torchrun");
            if (flags.Rank is null && flags.WorldSize != 1)
                throw new CommunicatorException($"--world-size {flags.WorldSize} was given without --rank and no launcher variables are set ({EnvVars.Rank}, {EnvVars.OmpiRank}, {EnvVars.PmiRank}, {EnvVars.PmixRank}, {EnvVars.SlurmProcId}, {EnvVars.JobCompletionIndex}): pass --rank, or launch with mpiexec/srun/torchrun");
            return Validate(new WorldInfo(flags.Rank ?? 0, flags.WorldSize.Value, flags.LocalRank ?? 0, Launcher.Explicit, "flags"));
        }

        int size = flags.WorldSize ?? chosen.Size ?? throw new CommunicatorException(
            $"{chosen.Vars} gives this process's rank but not the world size: " + chosen.Launcher switch
            {
                Launcher.KubernetesIndexedJob => $"set {EnvVars.WorldSize} (the Job's completions) or pass --world-size",
                Launcher.Pmix => $"set {EnvVars.OmpiSize} or run under Slurm ({EnvVars.SlurmNTasks}), or pass --world-size",
                _ => "pass --world-size",
            });
        var origin = flags == new ExplicitWorld() ? chosen.Vars : $"flags over {chosen.Vars}";
        var world = Validate(new WorldInfo(
            flags.Rank ?? chosen.Rank, size, flags.LocalRank ?? chosen.LocalRank ?? 0, chosen.Launcher, origin));

        foreach (var other in sources.Where(s => s.Launcher is Launcher.Torchrun or Launcher.OpenMpi or Launcher.Mpich or Launcher.Pmix))
        {
            if (other.Rank != world.Rank || (other.Size is { } s && s != world.WorldSize))
                throw new CommunicatorException(
                    $"conflicting world: {Describe(world)} but {other.Vars} says rank {other.Rank} of {other.Size?.ToString(CultureInfo.InvariantCulture) ?? "?"}. " +
                    "Two launchers (or a stale exported variable) disagree about this process: unset the stale variables or the conflicting flag");
        }
        return world;
    }

    /// <summary>Checks what MPI reports after MPI_Init against what the environment promised, and names the usual
    /// misconfiguration: srun without an MPI plugin starts N independent singletons, each rank 0 of 1.</summary>
    public static WorldInfo CheckMpiWorld(WorldInfo expected, int mpiRank, int mpiSize, IReadOnlyDictionary<string, string> env)
    {
        var (slurmVar, slurmTasks) = SlurmTasks(env);
        if (mpiSize == 1 && slurmTasks is > 1 && expected.WorldSize == slurmTasks)
            throw new CommunicatorException(
                $"Slurm says {slurmVar}={slurmTasks} but MPI reports a world of 1: srun started {slurmTasks} singleton processes (each rank 0 of 1). " +
                "Launch with `srun --mpi=pmix` (or pmi2) so MPI sees one world of " + slurmTasks + ", or use mpiexec");
        if (mpiSize != expected.WorldSize)
            throw new CommunicatorException(
                $"the launcher's environment ({expected.Source}) says world size {expected.WorldSize} but MPI reports {mpiSize}" +
                (mpiSize == 1 ? ": MPI did not find its launcher (started outside mpiexec/srun --mpi=pmix?), so each process is a singleton" : ": check the launch command and the MPI library (" + EnvVars.MpiLibrary + ")"));
        if (mpiRank != expected.Rank)
            throw new CommunicatorException(
                $"the launcher's environment ({expected.Source}) says rank {expected.Rank} but MPI reports rank {mpiRank}: unset stale rank variables or flags");
        return expected;
    }

    static List<Source> Sources(IReadOnlyDictionary<string, string> env, ExplicitWorld flags)
    {
        var list = new List<Source>();
        if (Int(env, EnvVars.Rank) is { } rank)
        {
            var size = Int(env, EnvVars.WorldSize) ?? throw new CommunicatorException(
                $"{EnvVars.Rank}={rank} is set but {EnvVars.WorldSize} is not: torchrun-style launches set both (or unset {EnvVars.Rank})");
            list.Add(new(Launcher.Torchrun, rank, size, Int(env, EnvVars.LocalRank), Vars(env, EnvVars.Rank, EnvVars.WorldSize)));
        }
        if (Int(env, EnvVars.OmpiRank) is { } ompiRank)
            list.Add(new(Launcher.OpenMpi, ompiRank, Int(env, EnvVars.OmpiSize), Int(env, EnvVars.OmpiLocalRank), Vars(env, EnvVars.OmpiRank, EnvVars.OmpiSize)));
        if (Int(env, EnvVars.PmiRank) is { } pmiRank)
            list.Add(new(Launcher.Mpich, pmiRank, Int(env, EnvVars.PmiSize), Int(env, EnvVars.MpichLocalRank), Vars(env, EnvVars.PmiRank, EnvVars.PmiSize)));
        if (Int(env, EnvVars.PmixRank) is { } pmixRank)
        {
            var (slurmVar, slurmTasks) = SlurmTasks(env);
            var ompiSize = Int(env, EnvVars.OmpiSize);
            list.Add(new(Launcher.Pmix, pmixRank, ompiSize ?? slurmTasks,
                Int(env, EnvVars.OmpiLocalRank) ?? Int(env, EnvVars.SlurmLocalId),
                ompiSize is not null ? Vars(env, EnvVars.PmixRank, EnvVars.OmpiSize) : Vars(env, EnvVars.PmixRank, slurmVar)));
        }
        if (Int(env, EnvVars.SlurmProcId) is { } procId)
        {
            var (slurmVar, slurmTasks) = SlurmTasks(env);
            list.Add(new(Launcher.Slurm, procId, slurmTasks, Int(env, EnvVars.SlurmLocalId), Vars(env, EnvVars.SlurmProcId, slurmVar)));
        }
        if (Int(env, EnvVars.JobCompletionIndex) is { } index)
        {
            // One process per pod: the index is the rank, and the Job's size comes from a flag or WORLD_SIZE.
            list.Add(new(Launcher.KubernetesIndexedJob, index, flags.WorldSize ?? Int(env, EnvVars.WorldSize), Int(env, EnvVars.LocalRank),
                Vars(env, EnvVars.JobCompletionIndex, EnvVars.WorldSize)));
        }
        return list;
    }

    static (string Var, int? Tasks) SlurmTasks(IReadOnlyDictionary<string, string> env) =>
        Int(env, EnvVars.SlurmStepNumTasks) is { } step ? (EnvVars.SlurmStepNumTasks, step) : (EnvVars.SlurmNTasks, Int(env, EnvVars.SlurmNTasks));

    static WorldInfo Validate(WorldInfo w)
    {
        if (w.WorldSize < 1)
            throw new CommunicatorException($"world size {w.WorldSize} (from {w.Source}) must be at least 1");
        if (w.Rank < 0 || w.Rank >= w.WorldSize)
            throw new CommunicatorException($"rank {w.Rank} (from {w.Source}) is outside the world of {w.WorldSize} (ranks 0..{w.WorldSize - 1})");
        if (w.LocalRank < 0 || w.LocalRank >= w.WorldSize)
            throw new CommunicatorException($"local rank {w.LocalRank} (from {w.Source}) is outside the world of {w.WorldSize}");
        return w;
    }

    static string Describe(WorldInfo w) => $"{w.Source} gives rank {w.Rank} of {w.WorldSize}";

    static string Vars(IReadOnlyDictionary<string, string> env, params string[] names) =>
        string.Join(", ", names.Where(env.ContainsKey).Select(n => $"{n}={env[n]}"));

    static int? Int(IReadOnlyDictionary<string, string> env, string name)
    {
        if (!env.TryGetValue(name, out var text) || string.IsNullOrWhiteSpace(text)) return null;
        return int.TryParse(text.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new CommunicatorException($"{name}='{text}' is not an integer");
    }
}
