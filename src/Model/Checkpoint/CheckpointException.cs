namespace Qwen3Tts.Model.Checkpoint;

/// <summary>A checkpoint that cannot be read, written or loaded; the message names the file, the tensor
/// and what is wrong with it.</summary>
public sealed class CheckpointException : UserInputException
{
    public CheckpointException(string message) : base(message) { }
    public CheckpointException(string message, Exception inner) : base(message, inner) { }
}
