using System.CommandLine;
using Qwen3Tts.Rank;
using Qwen3Tts.Rank.Distributed;
using Qwen3Tts.Rank.Training;

// qwen3tts-rank: one process of a fine-tuning job. Alone it is the single-process trainer; under mpiexec or
// srun --mpi=pmix it is one rank of a data-parallel job.
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
    // The trainer keeps its tensors on the CPU in this build, so the default is mpi; nccl is for CUDA tensors
    // (see README: GPU clusters for what has and has not been verified).
    Description = "collectives backend: mpi (CPU tensors, default), nccl (CUDA tensors, bootstrapped over MPI; not yet used by the trainer), or auto (nccl when CUDA is available and libnccl loads, else mpi)",
    DefaultValueFactory = _ => BackendChoice.Mpi,
};
foreach (var o in new Option[] { stopAfter, rank, worldSize, localRank, backend }) root.Options.Add(o);

root.SetAction(parse => RankMain.Run(parse.GetValue(rank), parse.GetValue(worldSize), parse.GetValue(localRank), parse.GetValue(backend), comm =>
{
    var options = bind(parse);
    var result = new Trainer(options, Console.Out, comm) { StopAfterSteps = parse.GetValue(stopAfter) }.Run();
    if (comm.Rank == 0) Console.WriteLine($"done: {result.GlobalStep} steps, output in {result.OutputDir}");
    return 0;
}));
return root.Parse(args).Invoke();
