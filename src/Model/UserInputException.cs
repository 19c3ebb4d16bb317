namespace Qwen3Tts.Model;

/// <summary>Something the user gave is wrong: a flag, a config, a data file, a checkpoint. The message names the
/// file (and line, field) or flag and says what is wrong, so an executable prints it as one line and exits 2,
/// without a stack trace. Everything not of this kind (and not an IO or format error) is a bug in this program.</summary>
public abstract class UserInputException : Exception
{
    protected UserInputException(string message) : base(message) { }
    protected UserInputException(string message, Exception? inner) : base(message, inner) { }

    /// <summary>Lines printed under the message, one per item (e.g. every record a run refused); the message stays one line.</summary>
    public virtual IReadOnlyList<string> Details => [];
}
