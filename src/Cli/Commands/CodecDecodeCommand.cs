using Qwen3Tts.Entry;
using System.CommandLine;
using System.Text.Json;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Codec;
using Qwen3Tts.Model.Config;

namespace Qwen3Tts.Cli.Commands;

/// <summary><c>qwen3tts codec decode --model DIR --codes CODES.jsonl --out-dir D</c>: one 24 kHz WAV per line of
/// codes, through the 12 Hz speech tokenizer's decoder, chunked as the reference decodes.</summary>
public static class CodecDecodeCommand
{
    public const int ExitOk = 0;
    public const int ExitBadInput = 2;

    public static Command Create()
    {
        var model = new Option<string>("--model")
        {
            Description = "A speech tokenizer folder (config.json + model.safetensors) or a model folder holding speech_tokenizer/",
            HelpName = "DIR",
            Required = true,
        };
        var codes = new Option<string>("--codes")
        {
            Description = "JSONL, one clip a line: {\"audio_codes\": [[16 codes], ...], ...} (the training data's and `codec encode`'s field) or a bare [[16 codes], ...]",
            HelpName = "CODES.jsonl",
            Required = true,
        };
        var outDir = new Option<string>("--out-dir")
        {
            Description = "Folder for the WAV files: NNNNN.wav for line NNNNN of the codes file",
            HelpName = "D",
            Required = true,
        }.ForFolder();
        var float32 = new Option<bool>("--float32") { Description = "Write 32-bit float WAV instead of 16-bit PCM" };
        var chunk = new Option<int>("--chunk-size")
        {
            Description = "Frames decoded per chunk (bounds memory; the reference's value)",
            DefaultValueFactory = _ => SpeechTokenizerDecoder.DefaultChunkSize,
        };
        var context = new Option<int>("--left-context")
        {
            Description = "Frames of preceding codes each chunk is decoded with (the reference's value)",
            DefaultValueFactory = _ => SpeechTokenizerDecoder.DefaultLeftContext,
        };
        var command = new Command("decode", "Decode 12.5 Hz codes [frames][16] to 24 kHz WAV files, frames × 1920 samples each")
        {
            model, codes, outDir, float32, chunk, context,
        };
        command.SetAction(parse => Run(Qwen3Tts.Entry.Hub.HubPaths.Model(parse.GetRequiredValue(model)), parse.GetRequiredValue(codes), parse.GetRequiredValue(outDir),
            parse.GetValue(float32), parse.GetValue(chunk), parse.GetValue(context),
            parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error));
        return command;
    }

    /// <summary>Reads and checks every line against the decoder's config first, then loads the weights and decodes.</summary>
    public static int Run(string modelDir, string codesPath, string outDir, bool float32, int chunkSize, int leftContext, TextWriter output, TextWriter error)
    {
        if (chunkSize <= 0 || leftContext < 0)
        {
            error.WriteLine($"error: --chunk-size must be positive and --left-context not negative (got {chunkSize} and {leftContext})");
            return ExitBadInput;
        }
        try
        {
            string folder = SpeechTokenizer.ResolveFolder(modelDir);
            var config = SpeechTokenizerConfig.Load(Path.Combine(folder, Qwen3Tts.Model.ModelDirectory.ConfigFile));
            var clips = ReadCodes(codesPath, config.Decoder.NumQuantizers, config.Decoder.CodebookSize);
            var loaded = SpeechTokenizerDecoderFiles.Load(folder);
            using var decoder = loaded.Decoder;
            Directory.CreateDirectory(outDir);
            foreach (var (line, frames) in clips)
            {
                float[] wav = decoder.Decode(frames, chunkSize, leftContext);
                string path = Path.Combine(outDir, $"{line:D5}.wav");
                if (float32) WavWriter.WriteFloat32(path, wav, loaded.OutputSampleRate);
                else WavWriter.Write(path, wav, loaded.OutputSampleRate);
                output.WriteLine($"{path}: {frames.GetLength(0)} frames, {wav.Length} samples ({(double)wav.Length / loaded.OutputSampleRate:F2} s)");
            }
            return ExitOk;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ConfigException or CheckpointException or UnauthorizedAccessException)
        {
            error.WriteLine($"error: {e.Message}");
            return ExitBadInput;
        }
    }

    /// <summary>Every non-blank line's codes, with its 1-based line number. Errors name the file, the line and the
    /// position: <c>codes.jsonl:3: audio_codes[5][2]: code 4000 is outside [0, 2048)</c>.</summary>
    public static IReadOnlyList<(int Line, long[,] Codes)> ReadCodes(string path, int codebooks, int codebookSize)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such codes file");
        var result = new List<(int, long[,])>();
        int number = 0;
        foreach (string text in File.ReadLines(path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            InvalidDataException Bad(string where, string what) => new($"{path}:{number}: {where}{what}");
            JsonDocument doc;
            try { doc = JsonDocument.Parse(text); }
            catch (JsonException e) { throw Bad("", $"not valid JSON: {e.Message}"); }
            using (doc)
            {
                var root = doc.RootElement;
                // {"audio_codes": [...], ...} or the bare [[...], ...]
                string name = root.ValueKind == JsonValueKind.Array ? "codes" : "audio_codes";
                var frames = root;
                if (root.ValueKind == JsonValueKind.Object && !root.TryGetProperty(name, out frames))
                    throw Bad("", "has no \"audio_codes\" field");
                if (root.ValueKind is not (JsonValueKind.Object or JsonValueKind.Array))
                    throw Bad("", $"expected an object with \"audio_codes\" or an array of frames, found {root.ValueKind}");
                if (frames.ValueKind != JsonValueKind.Array) throw Bad($"{name}: ", $"expected an array of frames, found {frames.ValueKind}");
                int count = frames.GetArrayLength();
                if (count == 0) throw Bad($"{name}: ", "has no frames");
                var codes = new long[count, codebooks];
                int f = 0;
                foreach (var frame in frames.EnumerateArray())
                {
                    if (frame.ValueKind != JsonValueKind.Array || frame.GetArrayLength() != codebooks)
                        throw Bad($"{name}[{f}]: ", $"expected {codebooks} codes, found {(frame.ValueKind == JsonValueKind.Array ? frame.GetArrayLength() + " codes" : frame.ValueKind.ToString())}");
                    int k = 0;
                    foreach (var code in frame.EnumerateArray())
                    {
                        if (code.ValueKind != JsonValueKind.Number || !code.TryGetInt64(out long c))
                            throw Bad($"{name}[{f}][{k}]: ", $"expected an integer code, found {code.GetRawText()}");
                        if (c < 0 || c >= codebookSize) throw Bad($"{name}[{f}][{k}]: ", $"code {c} is outside [0, {codebookSize})");
                        codes[f, k++] = c;
                    }
                    f++;
                }
                result.Add((number, codes));
            }
        }
        if (result.Count == 0) throw new InvalidDataException($"{path}: no lines of codes");
        return result;
    }
}
