using System.CommandLine;
using Qwen3Tts.Cli.Commands;
using Qwen3Tts.Entry;

var root = new RootCommand("qwen3tts: Qwen3-TTS-12Hz model tools.");
root.Subcommands.Add(InitModelCommand.Create());
root.Subcommands.Add(InspectCommand.Create());
root.Subcommands.Add(TokenizeCommand.Create());
root.Subcommands.Add(DebugStepCommand.Create());
root.Subcommands.Add(InfoCommand.Create());
root.Subcommands.Add(PreflightCommand.Create());
root.Subcommands.Add(WandbSyncCommand.Create());
root.Subcommands.Add(CodecCommand.Create());
root.Subcommands.Add(PrepareCommand.Create());
root.Subcommands.Add(SynthesizeCommand.Create());
root.Subcommands.Add(SpeakerEmbeddingCommand.Create());
root.Subcommands.Add(ExportVoiceCommand.Create());
root.Subcommands.Add(HubUploadCommand.Create());
return EntryPoint.Invoke(root, args, beforeRun: Qwen3Tts.Model.TorchRuntime.Configure); // NNPACK off: no "Could not initialize NNPACK" lines
