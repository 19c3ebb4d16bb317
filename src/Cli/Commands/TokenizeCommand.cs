using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Text;

namespace Qwen3Tts.Cli.Commands;

/// <summary><c>qwen3tts tokenize --model DIR [--chat] (TEXT | --input FILE)</c>: the text token ids the trainer
/// will see, one compact JSON array per text.</summary>
public static class TokenizeCommand
{
    public const int ExitOk = 0;
    /// <summary>The input or the model directory cannot be used; the message on stderr says where and why.</summary>
    public const int ExitBadInput = 2;

    public static Command Create()
    {
        var model = new Option<string>("--model")
        {
            Description = "Model directory holding vocab.json, merges.txt and tokenizer_config.json",
            HelpName = "DIR",
            Required = true,
        };
        var chat = new Option<bool>("--chat")
        {
            Description = "Wrap each text as Qwen3-TTS does: <|im_start|>assistant\\nTEXT<|im_end|>\\n<|im_start|>assistant\\n",
        };
        var input = new Option<string?>("--input")
        {
            Description = "JSONL file of {\"text\": ...} objects: prints one JSON array of ids per line, in order",
            HelpName = "FILE",
        };
        var text = new Argument<string?>("TEXT")
        {
            Description = "The text to tokenize (or use --input)",
            Arity = ArgumentArity.ZeroOrOne,
        };

        var command = new Command("tokenize", "Print the text token ids of the Qwen3-TTS text tokenizer as JSON arrays")
        {
            model, chat, input, text,
        };
        command.Validators.Add(result =>
        {
            if ((result.GetValue(text) is null) == (result.GetValue(input) is null))
                result.AddError("give the text to tokenize either as TEXT or as --input FILE (one of the two)");
        });
        command.SetAction(parse => Run(
            Qwen3Tts.Entry.Hub.HubPaths.Model(parse.GetRequiredValue(model)), parse.GetValue(text), parse.GetValue(input), parse.GetValue(chat),
            parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return command;
    }

    /// <summary>The command's work: exactly one of <paramref name="text"/> and <paramref name="inputFile"/> is given.
    /// Nothing is printed to <paramref name="output"/> unless every input line is valid.</summary>
    public static int Run(string modelDir, string? text, string? inputFile, bool chat, TextWriter output, TextWriter error)
    {
        IReadOnlyList<string> texts;
        Qwen3TextTokenizer tokenizer;
        try
        {
            texts = inputFile is null ? [text ?? throw new ArgumentNullException(nameof(text))] : ReadJsonlTexts(inputFile);
            tokenizer = Qwen3TextTokenizer.FromModelDirectory(modelDir);
        }
        catch (Exception e) when (e is InvalidInputException or IOException or ConfigException or UnauthorizedAccessException)
        {
            error.WriteLine($"error: {e.Message}");
            return ExitBadInput;
        }
        Write(tokenizer, texts, chat, output);
        return ExitOk;
    }

    /// <summary>Writes the ids of each text as one compact JSON array a line.</summary>
    public static void Write(Qwen3TextTokenizer tokenizer, IEnumerable<string> texts, bool chat, TextWriter output)
    {
        var line = new StringBuilder();
        foreach (string text in texts)
        {
            var ids = chat ? tokenizer.EncodeChat(text) : tokenizer.Encode(text);
            line.Clear().Append('[');
            for (int i = 0; i < ids.Count; i++)
            {
                if (i > 0) line.Append(',');
                line.Append(ids[i].ToString(CultureInfo.InvariantCulture));
            }
            output.WriteLine(line.Append(']'));
        }
    }

    /// <summary>The "text" of every line of a JSONL file; the first bad line is an error naming file, line and field.</summary>
    public static IReadOnlyList<string> ReadJsonlTexts(string path)
    {
        if (!File.Exists(path)) throw new InvalidInputException($"input file '{path}' does not exist");
        var texts = new List<string>();
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNumber++;
            string where = $"{path}, line {lineNumber}";
            JsonDocument document;
            try
            {
                document = JsonDocument.Parse(line);
            }
            catch (JsonException e)
            {
                throw new InvalidInputException($"{where}: expected a JSON object with a string field \"text\", but the line is not valid JSON ({e.Message})");
            }
            using (document)
            {
                var root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                    throw new InvalidInputException($"{where}: expected a JSON object with a string field \"text\", found {root.ValueKind.ToString().ToLowerInvariant()}");
                if (!root.TryGetProperty("text", out var value))
                    throw new InvalidInputException($"{where}: field \"text\" is missing");
                if (value.ValueKind != JsonValueKind.String)
                    throw new InvalidInputException($"{where}: field \"text\" must be a string, found {value.GetRawText()}");
                texts.Add(value.GetString()!);
            }
        }
        return texts;
    }

    /// <summary>The user's input cannot be used; the message says where and why.</summary>
    public sealed class InvalidInputException(string message) : Qwen3Tts.Model.UserInputException(message);
}
