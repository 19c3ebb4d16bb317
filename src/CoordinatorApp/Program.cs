using Qwen3Tts.CoordinatorApp;
using Qwen3Tts.Entry;

return await EntryPoint.InvokeAsync(CoordinatorCommand.Create(), args, cancelOnSignal: true);
