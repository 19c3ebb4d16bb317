using Qwen3Tts.Entry;
using System.CommandLine;
using System.Text;
using System.Text.Json;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Codec;
using Qwen3Tts.Model.Config;

namespace Qwen3Tts.Cli.Commands;

/// <summary><c>qwen3tts codec encode --model DIR [--out OUT.jsonl] WAV...</c>: the 12 Hz speech tokenizer's codes of
/// each WAV file, one JSON line per file ({"audio": path, "audio_codes": [[16 codes], ...]}, the training data's
/// field names).</summary>
public static class CodecCommand
{
    public const int ExitOk = 0;
    public const int ExitBadInput = 2;

    public static Command Create()
    {
        var command = new Command("codec", "The 12 Hz speech tokenizer (Mimi encoder + code2wav decoder)");
        command.Subcommands.Add(Encode());
        command.Subcommands.Add(CodecDecodeCommand.Create());
        return command;
    }

    static Command Encode()
    {
        var model = new Option<string>("--model")
        {
            Description = "A speech tokenizer folder (config.json + model.safetensors) or a model folder holding speech_tokenizer/",
            HelpName = "DIR",
            Required = true,
        };
        var output = new Option<string?>("--out")
        {
            Description = "Write the JSON lines to this file (written whole, atomically) instead of standard output",
            HelpName = "OUT.jsonl",
        }.ForFile();
        var wavs = new Argument<string[]>("WAV")
        {
            Description = "WAV files (PCM 8/16/24/32 or float, any rate and channel count: mixed to mono, resampled to 24 kHz)",
            Arity = ArgumentArity.OneOrMore,
        };
        var command = new Command("encode", "Encode WAV files to 12.5 Hz codes [frames][16], frames = ceil(samples at 24 kHz / 1920)")
        {
            model, output, wavs,
        };
        command.SetAction(parse => Run(Qwen3Tts.Entry.Hub.HubPaths.Model(parse.GetRequiredValue(model)), parse.GetValue(output), parse.GetRequiredValue(wavs),
            parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return command;
    }

    /// <summary>Checks every input first, then encodes the files one at a time (exact: no padded batches).</summary>
    public static int Run(string modelDir, string? outFile, IReadOnlyList<string> wavs, TextWriter output, TextWriter error)
    {
        try
        {
            foreach (string wav in wavs)
                if (!File.Exists(wav)) throw new FileNotFoundException($"WAV file '{wav}' does not exist");
            using var tokenizer = SpeechTokenizer.Load(modelDir);
            var lines = new StringBuilder();
            foreach (string wav in wavs)
            {
                string line = ToJsonLine(wav, tokenizer.EncodeFile(wav));
                if (outFile is null) output.WriteLine(line);
                else lines.Append(line).Append('\n');
            }
            if (outFile is not null)
            {
                string? parent = Path.GetDirectoryName(Path.GetFullPath(outFile));
                if (parent is not null) Directory.CreateDirectory(parent);
                AtomicFile.WriteAllText(outFile, lines.ToString());
                output.WriteLine($"wrote {wavs.Count} line(s) to {outFile}");
            }
            return ExitOk;
        }
        catch (Exception e) when (e is IOException or AudioException or ConfigException or CheckpointException or UnauthorizedAccessException)
        {
            error.WriteLine($"error: {e.Message}");
            return ExitBadInput;
        }
    }

    /// <summary>{"audio": path, "audio_codes": [[...], ...]}, compact.</summary>
    public static string ToJsonLine(string audio, long[,] codes)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteString("audio", audio);
            Qwen3Tts.Coordinator.Data.JsonlTrainingData.WriteCodes(json, codes);
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
