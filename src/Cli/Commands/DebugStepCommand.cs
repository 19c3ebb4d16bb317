using Qwen3Tts.Entry;
using System.CommandLine;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Rank.Training;

namespace Qwen3Tts.Cli.Commands;

public static class DebugStepCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "a Base model directory", Required = true };
        var data = new Option<string>("--data") { Description = "a JSONL file; all its records form one batch", Required = true };
        var output = new Option<string>("--out") { Description = "folder for step.json, batch/grads/updated.safetensors", Required = true }.ForFolder();
        var alignment = new Option<string>("--loss-alignment", "--loss_alignment") { Description = "fixed or upstream", DefaultValueFactory = _ => "fixed" };
        alignment.AcceptOnlyFromAmong("fixed", "upstream");
        var optimizerStep = new Option<bool>("--optimizer-step", "--optimizer_step") { Description = "also take one clipped AdamW step and write updated.safetensors" };
        var precision = new Option<string>("--mixed_precision", "--mixed-precision") { Description = "fp32 or bf16", DefaultValueFactory = _ => "fp32" };
        precision.AcceptOnlyFromAmong("fp32", "bf16");
        var lr = new Option<double>("--lr", "--learning_rate") { Description = "AdamW learning rate", DefaultValueFactory = _ => 2e-5 };
        var decay = new Option<double>("--weight_decay", "--weight-decay") { Description = "AdamW weight decay", DefaultValueFactory = _ => 0.01 };
        var beta1 = new Option<double>("--adam_beta1", "--adam-beta1") { Description = "AdamW beta1", DefaultValueFactory = _ => 0.9 };
        var beta2 = new Option<double>("--adam_beta2", "--adam-beta2") { Description = "AdamW beta2", DefaultValueFactory = _ => 0.999 };
        var eps = new Option<double>("--adam_epsilon", "--adam-epsilon") { Description = "AdamW epsilon", DefaultValueFactory = _ => 1e-8 };
        var clip = new Option<double>("--max_grad_norm", "--max-grad-norm") { Description = "gradient clipping max norm", DefaultValueFactory = _ => 1.0 };
        var subWeight = new Option<double>("--sub_talker_weight", "--sub-talker-weight") { Description = "code predictor loss weight", DefaultValueFactory = _ => 0.3 };

        var command = new Command("debug-step", "One forward/backward on all records of a JSONL file as one batch, with every intermediate written out.")
        {
            model, data, output, alignment, optimizerStep, precision, lr, decay, beta1, beta2, eps, clip, subWeight,
        };
        command.SetAction(parse =>
        {
            var settings = new DebugStep.Settings(
                parse.GetValue(alignment) == "upstream" ? LossAlignment.Upstream : LossAlignment.Fixed,
                parse.GetValue(optimizerStep),
                parse.GetValue(precision)!,
                new AdamWOptions(parse.GetValue(lr), parse.GetValue(beta1), parse.GetValue(beta2), parse.GetValue(eps), parse.GetValue(decay)),
                parse.GetValue(clip),
                parse.GetValue(subWeight));
            var step = DebugStep.Run(Qwen3Tts.Entry.Hub.HubPaths.Model(parse.GetValue(model)!), parse.GetValue(data)!, parse.GetValue(output)!, settings);
            Console.WriteLine(step.ToJsonString());
            return 0;
        });
        return command;
    }
}
