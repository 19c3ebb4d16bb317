using System.CommandLine;

var root = new RootCommand("qwen3tts: Qwen3-TTS-12Hz model tools.");
return root.Parse(args).Invoke();
