using Qwen3Tts.Rank.Distributed;

namespace Qwen3Tts.Tests.Distributed;

public class WorldDiscoveryTests
{
    static Dictionary<string, string> Env(params (string Name, string Value)[] vars) =>
        vars.ToDictionary(v => v.Name, v => v.Value);

    static CommunicatorException Fails(Func<object> resolve) => Assert.Throws<CommunicatorException>(resolve);

    [Fact]
    public void No_launcher_and_no_flags_is_a_single_process()
    {
        var world = WorldDiscovery.Resolve(Env());
        Assert.Equal(WorldInfo.Single, world);
        Assert.False(world.IsMpiLaunch);
    }

    [Fact]
    public void Explicit_flags_alone_give_the_world()
    {
        var world = WorldDiscovery.Resolve(Env(), new ExplicitWorld(Rank: 2, WorldSize: 4, LocalRank: 1));
        Assert.Equal(new WorldInfo(2, 4, 1, Launcher.Explicit, "flags"), world);
    }

    [Fact]
    public void Explicit_world_size_without_rank_is_an_error_unless_it_is_one()
    {
        Assert.Equal(1, WorldDiscovery.Resolve(Env(), new ExplicitWorld(WorldSize: 1)).WorldSize);
        Assert.Contains("--rank", Fails(() => WorldDiscovery.Resolve(Env(), new ExplicitWorld(WorldSize: 4))).Message);
        Assert.Contains("--world-size", Fails(() => WorldDiscovery.Resolve(Env(), new ExplicitWorld(Rank: 1))).Message);
    }

    [Fact]
    public void Torchrun_variables()
    {
        var world = WorldDiscovery.Resolve(Env(("RANK", "3"), ("WORLD_SIZE", "8"), ("LOCAL_RANK", "1")));
        Assert.Equal((3, 8, 1, Launcher.Torchrun), (world.Rank, world.WorldSize, world.LocalRank, world.Launcher));
        Assert.False(world.IsMpiLaunch);
    }

    [Fact]
    public void Torchrun_rank_without_world_size_is_an_error()
    {
        Assert.Contains("WORLD_SIZE", Fails(() => WorldDiscovery.Resolve(Env(("RANK", "0")))).Message);
    }

    [Fact]
    public void Open_mpi_variables()
    {
        var world = WorldDiscovery.Resolve(Env(("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
            ("PMIX_RANK", "1")));
        Assert.Equal((1, 2, 1, Launcher.OpenMpi), (world.Rank, world.WorldSize, world.LocalRank, world.Launcher));
        Assert.Contains("OMPI_COMM_WORLD_RANK=1", world.Source);
        Assert.True(world.IsMpiLaunch);
    }

    [Fact]
    public void Mpich_hydra_variables()
    {
        var world = WorldDiscovery.Resolve(Env(("PMI_RANK", "5"), ("PMI_SIZE", "6"), ("MPI_LOCALRANKID", "2")));
        Assert.Equal((5, 6, 2, Launcher.Mpich), (world.Rank, world.WorldSize, world.LocalRank, world.Launcher));
    }

    [Fact]
    public void Pmix_rank_takes_its_size_from_open_mpi_or_slurm()
    {
        var underSrun = WorldDiscovery.Resolve(Env(("PMIX_RANK", "3"), ("SLURM_NTASKS", "4"), ("SLURM_LOCALID", "1")));
        Assert.Equal((3, 4, 1, Launcher.Pmix), (underSrun.Rank, underSrun.WorldSize, underSrun.LocalRank, underSrun.Launcher));

        var withOmpiSize = WorldDiscovery.Resolve(Env(("PMIX_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")));
        Assert.Equal((0, 2, Launcher.Pmix), (withOmpiSize.Rank, withOmpiSize.WorldSize, withOmpiSize.Launcher));

        Assert.Contains("world size", Fails(() => WorldDiscovery.Resolve(Env(("PMIX_RANK", "0")))).Message);
    }

    [Fact]
    public void Slurm_variables_prefer_the_step_task_count()
    {
        var world = WorldDiscovery.Resolve(Env(("SLURM_PROCID", "2"), ("SLURM_NTASKS", "16"), ("SLURM_STEP_NUM_TASKS", "4"), ("SLURM_LOCALID", "2")));
        Assert.Equal((2, 4, 2, Launcher.Slurm), (world.Rank, world.WorldSize, world.LocalRank, world.Launcher));
        Assert.True(world.IsMpiLaunch);
    }

    [Fact]
    public void Kubernetes_indexed_job_takes_its_size_from_a_flag_or_world_size()
    {
        var fromEnv = WorldDiscovery.Resolve(Env(("JOB_COMPLETION_INDEX", "3"), ("WORLD_SIZE", "4")));
        Assert.Equal((3, 4, 0, Launcher.KubernetesIndexedJob), (fromEnv.Rank, fromEnv.WorldSize, fromEnv.LocalRank, fromEnv.Launcher));

        var fromFlag = WorldDiscovery.Resolve(Env(("JOB_COMPLETION_INDEX", "1")), new ExplicitWorld(WorldSize: 2));
        Assert.Equal((1, 2), (fromFlag.Rank, fromFlag.WorldSize));

        Assert.Contains("WORLD_SIZE", Fails(() => WorldDiscovery.Resolve(Env(("JOB_COMPLETION_INDEX", "1")))).Message);
    }

    [Fact]
    public void Environment_precedence_is_torchrun_then_open_mpi_then_pmi_then_pmix_then_slurm_then_kubernetes()
    {
        var all = Env(("RANK", "1"), ("WORLD_SIZE", "2"), ("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2"),
            ("PMI_RANK", "1"), ("PMI_SIZE", "2"), ("PMIX_RANK", "1"), ("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1"),
            ("JOB_COMPLETION_INDEX", "0"));
        var seen = new List<Launcher> { WorldDiscovery.Resolve(all).Launcher };
        foreach (var name in new[] { "RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID" })
        {
            all.Remove(name);
            seen.Add(WorldDiscovery.Resolve(all).Launcher);
        }
        Assert.Equal([Launcher.Torchrun, Launcher.OpenMpi, Launcher.Mpich, Launcher.Pmix, Launcher.Slurm, Launcher.KubernetesIndexedJob], seen);
        Assert.Equal(Launcher.OpenMpi, WorldDiscovery.Resolve(Env(("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2"),
            ("PMI_RANK", "0"), ("PMI_SIZE", "2"))).Launcher);
        Assert.Equal(Launcher.Mpich, WorldDiscovery.Resolve(Env(("PMI_RANK", "0"), ("PMI_SIZE", "2"), ("PMIX_RANK", "0"),
            ("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"))).Launcher);
    }

    [Fact]
    public void Flags_override_the_environment_where_they_agree_and_set_what_it_lacks()
    {
        var world = WorldDiscovery.Resolve(Env(("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2")), new ExplicitWorld(Rank: 1, LocalRank: 0));
        Assert.Equal((1, 2, 0, Launcher.OpenMpi), (world.Rank, world.WorldSize, world.LocalRank, world.Launcher));
        Assert.StartsWith("flags over", world.Source);
    }

    [Fact]
    public void Mpirun_inside_an_sbatch_allocation_is_not_a_conflict_with_the_inherited_slurm_variables()
    {
        var world = WorldDiscovery.Resolve(Env(("OMPI_COMM_WORLD_RANK", "3"), ("OMPI_COMM_WORLD_SIZE", "4"),
            ("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4"), ("SLURM_LOCALID", "0")));
        Assert.Equal((3, 4, Launcher.OpenMpi), (world.Rank, world.WorldSize, world.Launcher));
    }

    [Fact]
    public void Launchers_that_disagree_about_this_process_are_an_error_naming_both()
    {
        var stale = Fails(() => WorldDiscovery.Resolve(Env(("RANK", "0"), ("WORLD_SIZE", "2"), ("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2"))));
        Assert.Contains("RANK=0", stale.Message);
        Assert.Contains("OMPI_COMM_WORLD_RANK=1", stale.Message);

        var size = Fails(() => WorldDiscovery.Resolve(Env(("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2"), ("PMI_RANK", "0"), ("PMI_SIZE", "4"))));
        Assert.Contains("PMI_SIZE=4", size.Message);

        var flag = Fails(() => WorldDiscovery.Resolve(Env(("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "2")), new ExplicitWorld(Rank: 1)));
        Assert.Contains("flags over", flag.Message);
        Assert.Contains("OMPI_COMM_WORLD_RANK=0", flag.Message);
    }

    [Theory]
    [InlineData("4", "4", "outside the world")]
    [InlineData("-1", "4", "outside the world")]
    [InlineData("0", "0", "at least 1")]
    [InlineData("one", "4", "'one' is not an integer")]
    public void Impossible_values_are_errors(string rank, string size, string message)
    {
        Assert.Contains(message, Fails(() => WorldDiscovery.Resolve(Env(("OMPI_COMM_WORLD_RANK", rank), ("OMPI_COMM_WORLD_SIZE", size)))).Message);
    }

    [Theory]
    [InlineData("SLURM_NTASKS")]
    [InlineData("SLURM_STEP_NUM_TASKS")]
    public void Srun_without_an_mpi_plugin_starts_singletons_and_says_how_to_fix_it(string tasksVar)
    {
        var env = Env(("SLURM_PROCID", "2"), (tasksVar, "4"));
        var expected = WorldDiscovery.Resolve(env);
        var error = Assert.Throws<CommunicatorException>(() => WorldDiscovery.CheckMpiWorld(expected, mpiRank: 0, mpiSize: 1, env));
        Assert.Contains($"{tasksVar}=4", error.Message);
        Assert.Contains("srun started 4 singleton processes (each rank 0 of 1)", error.Message);
        Assert.Contains("srun --mpi=pmix", error.Message);
        Assert.Contains("mpiexec", error.Message);
    }

    [Fact]
    public void Mpirun_with_one_process_inside_a_larger_allocation_is_not_the_srun_singleton_case()
    {
        var env = Env(("OMPI_COMM_WORLD_RANK", "0"), ("OMPI_COMM_WORLD_SIZE", "1"), ("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4"));
        var expected = WorldDiscovery.Resolve(env);
        Assert.Equal(expected, WorldDiscovery.CheckMpiWorld(expected, 0, 1, env));
    }

    [Fact]
    public void Mpi_world_that_differs_from_the_launcher_is_an_error()
    {
        var env = Env(("RANK", "1"), ("WORLD_SIZE", "2"));
        var expected = WorldDiscovery.Resolve(env);
        Assert.Contains("singleton", Assert.Throws<CommunicatorException>(() => WorldDiscovery.CheckMpiWorld(expected, 0, 1, env)).Message);
        Assert.Contains("MPI reports 3", Assert.Throws<CommunicatorException>(() => WorldDiscovery.CheckMpiWorld(expected, 1, 3, env)).Message);
        Assert.Contains("MPI reports rank 0", Assert.Throws<CommunicatorException>(() => WorldDiscovery.CheckMpiWorld(expected, 0, 2, env)).Message);
    }

    [Fact]
    public void Single_process_without_a_launcher_gets_the_identity_communicator()
    {
        using var comm = Communicators.Create(WorldInfo.Single, Env());
        Assert.IsType<SingleProcessCommunicator>(comm);
        Assert.Equal("single", comm.Backend);
    }

    [Fact]
    public void Local_rank_comes_from_whichever_launcher_set_it()
    {
        Assert.Equal(3, MpiCommunicator.LocalRankFrom(Env(("OMPI_COMM_WORLD_LOCAL_RANK", "3"), ("SLURM_LOCALID", "0"))));
        Assert.Equal(2, MpiCommunicator.LocalRankFrom(Env(("MPI_LOCALRANKID", "2"))));
        Assert.Equal(1, MpiCommunicator.LocalRankFrom(Env(("SLURM_LOCALID", "1"))));
        Assert.Equal(5, MpiCommunicator.LocalRankFrom(Env(("LOCAL_RANK", "5"))));
        Assert.Equal(0, MpiCommunicator.LocalRankFrom(Env()));
    }

    [Fact]
    public void Mpi_library_search_follows_the_launcher_and_the_override()
    {
        Assert.Equal(["/opt/x/libmpi.so"], Mpi.Candidates(Env(("QWEN3TTS_MPI_LIB", "/opt/x/libmpi.so"), ("PMI_RANK", "0"))));
        Assert.Contains("libmpi.so.40", Mpi.Candidates(Env(("OMPI_COMM_WORLD_SIZE", "2")))[0]);
        Assert.Contains("libmpich.so.12", Mpi.Candidates(Env(("PMI_RANK", "0"), ("PMI_SIZE", "2")))[0]);
        // OMPI_ALLOW_RUN_AS_ROOT exported in the shell reaches MPICH's ranks too; it does not make them Open MPI.
        Assert.Contains("libmpich.so.12", Mpi.Candidates(Env(("PMI_RANK", "0"), ("OMPI_ALLOW_RUN_AS_ROOT", "1")))[0]);
        var neither = Mpi.Candidates(Env());
        Assert.Contains(neither, c => c.EndsWith("libmpi.so.40"));
        Assert.Contains(neither, c => c.EndsWith("libmpich.so.12"));
    }

    [Fact]
    public void Mpich_handles_are_the_constants_of_its_mpi_h()
    {
        var abi = MpiAbi.Mpich;
        Assert.Equal((0x44000000, 0x4c00040a, 0x4c00080b, 0x4c00083a, 0x4c00010d, 0x58000003, 0x54000001, -1),
            ((int)abi.CommWorld, (int)abi.Float, (int)abi.Double, (int)abi.Int64, (int)abi.Byte, (int)abi.OpSum, (int)abi.ErrorsReturn, (int)abi.InPlace));
    }

    [Fact]
    public void Srun_without_an_MPI_plugin_is_refused_before_MPI_starts()
    {
        var env = Env(("SLURM_PROCID", "1"), ("SLURM_NTASKS", "4"), ("SLURM_LOCALID", "1"));
        var world = WorldDiscovery.Resolve(env);
        Assert.Equal((1, 4), (world.Rank, world.WorldSize));
        // No PMIX_RANK / PMI_RANK / OMPI_*: refused without loading or initializing any MPI library.
        var e = Assert.Throws<CommunicatorException>(() => Communicators.Create(world, env));
        Assert.Contains("srun --mpi=pmix", e.Message);
        Assert.Contains("4 singleton processes", e.Message);
    }
}
