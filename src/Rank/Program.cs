using System.CommandLine;
using Qwen3Tts.Rank;
using Qwen3Tts.Rank.Training;

// qwen3tts-rank: one training process. Run alone it is the single-process trainer.
var root = new RootCommand("qwen3tts-rank: fine-tune a Qwen3-TTS-12Hz Base model on one speaker's data.");
var bind = TrainingFlags.AddTo(root);
var stopAfter = new Option<long?>("--stop_after_steps", "--stop-after-steps")
{
    Description = "stop after N optimizer steps in this process, saving last/ (the schedule still spans every epoch)",
};
root.Options.Add(stopAfter);
root.SetAction(parse => RankMain.Run(() =>
{
    var options = bind(parse);
    var result = new Trainer(options, Console.Out) { StopAfterSteps = parse.GetValue(stopAfter) }.Run();
    Console.WriteLine($"done: {result.GlobalStep} steps, output in {result.OutputDir}");
    return 0;
}));
return root.Parse(args).Invoke();
