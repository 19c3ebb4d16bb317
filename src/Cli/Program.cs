using System.CommandLine;

var root = new RootCommand("qwen3tts: Qwen3-TTS-12Hz model tools.");
root.Subcommands.Add(Qwen3Tts.Cli.Commands.TokenizeCommand.Create());
return root.Parse(args).Invoke();
