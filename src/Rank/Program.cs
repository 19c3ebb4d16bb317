using System.CommandLine;

// qwen3tts-rank: one training process. The fine-tuning loop lands with the fine-tuning issue;
// until then this entry point exists so launch scripts and packaging have a stable target.
var root = new RootCommand("qwen3tts-rank: one process of a Qwen3-TTS fine-tuning job (single process or under mpiexec/srun).");
root.SetAction(_ =>
{
    Console.Error.WriteLine("qwen3tts-rank: training is not available in this build yet (see README: Status).");
    return 2;
});
return root.Parse(args).Invoke();
