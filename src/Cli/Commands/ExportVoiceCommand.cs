using System.CommandLine;
using Qwen3Tts.Entry;
using Qwen3Tts.Rank.Training;

namespace Qwen3Tts.Cli.Commands;

/// <summary>qwen3tts export-voice: any training checkpoint as a custom_voice model, the folder the trainer writes to
/// OUTPUT/custom_voice/ from best/ (or last/).</summary>
public static class ExportVoiceCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "a training checkpoint: OUTPUT/best, last, epoch-N or checkpoint-N", Required = true };
        var speaker = new Option<string?>("--speaker") { Description = "the one voice to export (default: every voice of the checkpoint, as a multi-speaker custom_voice model)" };
        var output = new Option<string>("--out") { Description = "the custom_voice model folder to write (replaced atomically)", Required = true }.ForFolder();
        var command = new Command("export-voice", "Write a custom_voice model (speaks by name, no speaker encoder) from a training checkpoint.")
        {
            checkpoint, speaker, output,
        };
        command.SetAction(parse =>
        {
            string from = parse.GetValue(checkpoint)!, to = parse.GetValue(output)!;
            VoiceExport.FromCheckpoint(from, to, parse.GetValue(speaker));
            Console.WriteLine($"exported {from} to {to}");
            return 0;
        });
        return command;
    }
}
