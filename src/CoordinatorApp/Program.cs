using Qwen3Tts.CoordinatorApp;

return await CoordinatorCommand.Create().Parse(args).InvokeAsync();
