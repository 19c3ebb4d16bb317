using System.CommandLine;
using Qwen3Tts.Coordinator.Observability;
using Qwen3Tts.Entry;
using Qwen3Tts.Rank;
using Qwen3Tts.Rank.Distributed;
using Qwen3Tts.Rank.Prepare;
using Qwen3Tts.Rank.Training;

// qwen3tts-rank: one process of a fine-tuning job. Alone it is the single-process trainer; under mpiexec or
// srun --mpi=pmix (MPI), or with RANK/WORLD_SIZE/MASTER_ADDR
// (torchrun style, Kubernetes Indexed Jobs: TCP), it is one rank of a data-parallel job.
var root = new RootCommand("qwen3tts-rank: fine-tune a Qwen3-TTS-12Hz Base model on one speaker's data (one rank of a data-parallel job).");
var bind = TrainingFlags.AddTo(root);
var stopAfter = new Option<long?>("--stop_after_steps", "--stop-after-steps")
{
    Description = "stop after N optimizer steps in this process, saving last/ (the schedule still spans every epoch)",
};
var rank = new Option<int?>("--rank") { Description = "this process's rank (default: from the launcher's environment)" };
var worldSize = new Option<int?>("--world_size", "--world-size") { Description = "number of ranks (default: from the launcher's environment)" };
var localRank = new Option<int?>("--local_rank", "--local-rank") { Description = "rank on this node (default: from the launcher's environment)" };
var backend = new Option<BackendChoice>("--backend")
{
    // auto follows --device: mpi for the CPU (the default device), nccl for CUDA when libnccl loads
    // (see README: GPU clusters for what has and has not been verified on GPUs).
    Description = "collectives backend: auto (default: mpi for --device cpu, nccl for --device cuda when libnccl loads, else mpi), " +
        "mpi (over TCP when no MPI launcher started the ranks; CUDA tensors are staged through host memory, slower), or nccl (CUDA tensors only, bootstrapped over MPI or TCP)",
    DefaultValueFactory = _ => BackendChoice.Auto,
};
var masterAddr = new Option<string?>("--master_addr", "--master-addr") { Description = "rank 0's host for the TCP rendezvous when no MPI launcher started the ranks (default: $MASTER_ADDR)" };
var masterPort = new Option<int?>("--master_port", "--master-port") { Description = "rank 0's TCP rendezvous port (default: $MASTER_PORT, else 29500)" };
var rendezvousTimeout = new Option<int?>("--rendezvous_timeout", "--rendezvous-timeout") { Description = "seconds to wait for every rank at the TCP rendezvous (default: 300)" };
var coordinatorToken = new Option<string?>("--coordinator_token", "--coordinator-token")
{
    Description = "bearer token of a standalone coordinator (default: $QWEN3TTS_COORDINATOR_TOKEN; prefer the variable: flags show in process lists)",
};
var prepareOnly = new Option<bool>("--prepare_only", "--prepare-only")
{
    Description = "when the training data is raw speech (no audio_codes), prepare it into OUTPUT/prepared/ and stop",
};
var skipPrepare = new Option<bool>("--skip_prepare", "--skip-prepare")
{
    Description = "never prepare raw speech before training (by default raw --train_jsonl/--validation_jsonl data is prepared first)",
};
var refAudio = new Option<string?>("--ref_audio", "--ref-audio")
{
    Description = "when preparing: the reference clip for records that name none (default: each speaker's first clip)",
};
var skipPreflight = new Option<bool>("--skip_preflight", "--skip-preflight")
{
    Description = "when preparing raw speech: skip the preflight that runs first (its NO-GO verdict otherwise stops the job before encoding)",
};
foreach (var o in new Option[] { stopAfter, coordinatorToken, rank, worldSize, localRank, backend, masterAddr, masterPort, rendezvousTimeout, prepareOnly, skipPrepare, skipPreflight, refAudio })
    root.Options.Add(o);
root.Subcommands.Add(PrepareCommand.Create());

root.SetAction(parse => bind(parse) is { DryRunMemory: true } dryRun
    ? MemoryDryRun.Run(dryRun, parse.GetValue(worldSize) ?? LauncherWorldSize(), Console.Out)
    : RankMain.Run(parse.GetValue(rank), parse.GetValue(worldSize), parse.GetValue(localRank), parse.GetValue(backend),
    parse.GetValue(masterAddr), parse.GetValue(masterPort), parse.GetValue(rendezvousTimeout), () => bind(parse), (comm, bound) =>
{
    var options = PrepareBeforeTraining.Apply(bound, comm, parse.GetValue(skipPrepare), parse.GetValue(refAudio), Console.Out, parse.GetValue(skipPreflight));
    if (parse.GetValue(prepareOnly)) return 0;
    // Every rank reports its own metrics and spans (resource attribute qwen3tts.rank); exported only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    var env = EnvVars.Snapshot();
    using var telemetry = TelemetrySetup.Start("qwen3tts-rank", comm.Rank, comm.WorldSize,
        TelemetrySetup.RunId(env, Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(options.OutputModelPath)))), env);
    var result = new Trainer(options, Console.Out, comm)
    {
        StopAfterSteps = parse.GetValue(stopAfter),
        CoordinatorToken = parse.GetValue(coordinatorToken) ?? NonEmpty(env.GetValueOrDefault(Qwen3Tts.Coordinator.CoordinatorEnvVars.Token)),
        HubToken = TrainingFlags.HubToken(parse),
        CommandLine = args,
        Progress = ConsoleProgress.Suits(comm.Rank) ? new ConsoleProgress() : null,
    }.Run();
    if (comm.Rank == 0) Console.WriteLine($"done: {result.GlobalStep} steps, output in {result.OutputDir}");
    return 0;
}));
// Every rank parses the same flags: under a launcher only rank 0 prints a flag error (the others exit 2 quietly).
EntryPoint.PrintsSharedErrors = () =>
{
    try { return WorldDiscovery.Resolve(EnvVars.Snapshot(), new ExplicitWorld(null, null, null)).Rank == 0; }
    catch (ArgumentException) { return true; }
};
return EntryPoint.Invoke(root, args, beforeRun: Qwen3Tts.Model.TorchRuntime.Configure); // NNPACK off: no "Could not initialize NNPACK" lines

// The dry run's world: --world_size, else the launcher's (a dry run under mpiexec plans for its ranks), else one.
static int LauncherWorldSize()
{
    try { return WorldDiscovery.Resolve(EnvVars.Snapshot(), new ExplicitWorld(null, null, null)).WorldSize; }
    catch (ArgumentException) { return 1; }
}

static string? NonEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;
