using Qwen3Tts.Bench;
using Qwen3Tts.Entry;

// Benchmarks print measurements side by side with a baseline from the same run.
return EntryPoint.Guard(args, args => args.FirstOrDefault() switch
{
    "train-step" => TrainStepBench.Run(args[1..]),
    "icl-step" => TrainStepBench.RunIcl(args[1..]),
    "memory-0.6b" => TrainStepBench.PeakMemory06B(),
    "resample" => ResampleBench.Run(),
    "observability" => ObservabilityBench.Run(args[1..]),
    "allreduce" => AllReduceBench.Run(),
    "overlap" => OverlapBench.Run(args[1..]),
    "memory" => MemoryBench.Run(args[1..]),
    "coordinator" => CoordinatorBench.Run(args[1..]),
    "codec-encode" => CodecEncodeBench.Run(args[1..]),
    "prepare" => PrepareBench.Run(args[1..]),
    "codec-decode" => CodecDecodeBench.Run(args[1..]),
    "synthesize" => SynthesisBench.Run(args[1..]),
    _ => Usage(),
}, beforeRun: Qwen3Tts.Model.TorchRuntime.Configure); // NNPACK off: no "Could not initialize NNPACK" lines

static int Usage()
{
    Console.Error.WriteLine("usage: qwen3tts-bench train-step [--steps N] | icl-step [--steps N] [--ref_frames N] [--configs tiny,mid] [--precisions fp32,bf16] | memory-0.6b | resample | observability [--rounds N] [--logging_steps N]\n" +
                            "       qwen3tts-bench coordinator [--ranks N]\n" +
                            "       qwen3tts-bench memory [--text_hidden N] [--steps N] [--launcher openmpi|mpich]   (runs mpiexec -n 2 itself)\n" +
                            "       codec-encode [--seconds N] | codec-decode [--seconds N] | prepare [--clips N]\n" +
                            "       synthesize [--frames N] [--rounds N] [--configs tiny,mid] [--threads N]\n" +
                            "       mpiexec -n 2 qwen3tts-bench allreduce | overlap [--steps N] [--precision fp32|bf16] [--configs tiny,mid] [--threads N]");
    return 2;
}
