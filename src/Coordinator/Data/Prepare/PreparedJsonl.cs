using System.Collections;
using System.Text.Encodings.Web;
using System.Text.Json;
using Parquet;
using Parquet.Serialization;
using Qwen3Tts.Model.Audio;

namespace Qwen3Tts.Coordinator.Data.Prepare;

/// <summary>Writes prepared records as the training JSONL: each source record's fields in their order, with
/// <c>audio_codes</c> set (replaced in place when the source had it, else added after the last field) and <c>ref_audio</c>
/// added where the record had none. Relative paths (<c>audio</c>, <c>ref_audio</c>) are rewritten to stay relative to the
/// output's folder. JSONL cannot carry audio bytes, so clips a Parquet source holds inline (its audio struct) are written
/// as files into <c>OUTPUT-stem.audio/</c> beside the output and named by relative path; other Parquet columns become
/// JSON (structs as objects, lists as arrays, binary as base64).</summary>
static class PreparedJsonl
{
    static readonly JsonWriterOptions Compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static void Write(PrepareJob job, IReadOnlyList<PreparedItem> items, string tmp, string output)
    {
        var paths = new OutputPaths(output);
        using var stream = new FileStream(tmp, FileMode.Create, FileAccess.Write);
        switch (job.Format)
        {
            case RawSpeechFormat.Jsonl:
                WriteFromJsonl(job, items, stream, paths);
                break;
            case RawSpeechFormat.Parquet:
                WriteFromParquet(items, stream, paths);
                break;
            default:
                foreach (var x in items)
                    WriteLine(stream, json =>
                    {
                        json.WriteString("audio", paths.Relative(x.Record.Audio.Path!));
                        json.WriteString("text", x.Record.Text);
                        WriteAdded(json, x, paths, hadCodes: false);
                    });
                break;
        }
        stream.Flush(flushToDisk: true);
    }

    static void WriteLine(Stream stream, Action<Utf8JsonWriter> body)
    {
        using (var json = new Utf8JsonWriter(stream, Compact))
        {
            json.WriteStartObject();
            body(json);
            json.WriteEndObject();
        }
        stream.WriteByte((byte)'\n');
    }

    /// <summary>audio_codes (unless already written in place) and the added ref_audio.</summary>
    static void WriteAdded(Utf8JsonWriter json, PreparedItem x, OutputPaths paths, bool hadCodes)
    {
        if (!hadCodes) JsonlTrainingData.WriteCodes(json, x.Codes);
        if (x.AddedRef is { } clip) json.WriteString("ref_audio", paths.Clip(clip));
        if (x.RefCodes is { } refCodes) JsonlTrainingData.WriteCodes(json, refCodes, "ref_codes");
    }


    /// <summary>The source JSONL's lines of <paramref name="items"/> again, in order, each with its item (the reader gave every
    /// record its 1-based line). The element is valid until the next line is read.</summary>
    internal static IEnumerable<(PreparedItem Item, JsonElement Line)> SourceLines(PrepareJob job, IReadOnlyList<PreparedItem> items)
    {
        string source = job.Records[0].Source;
        int next = 0, line = 0;
        foreach (string text in File.ReadLines(source))
        {
            line++;
            if (next == items.Count) break;
            if (items[next].Record.Line != line) continue;
            var x = items[next++];
            using var doc = JsonDocument.Parse(text);
            yield return (x, doc.RootElement);
        }
        if (next != items.Count) throw new InvalidDataException($"{source}: changed while being prepared (line {items[next].Record.Line} is gone); run prepare again");
    }

    /// <summary>A clip path of the source (relative to <paramref name="sourceFolder"/>, or absolute) as the output names it.
    /// A reference clip, which training reads, is always named under the output's folder (<see cref="OutputPaths.Reference"/>).</summary>
    internal static string Rebase(string path, string sourceFolder, OutputPaths paths, bool reference = false)
    {
        string full = Path.GetFullPath(Path.IsPathRooted(path) ? path : Path.Combine(sourceFolder, path));
        if (reference && File.Exists(full)) return paths.Reference(full);
        return Path.IsPathRooted(path) ? path : paths.Relative(full);
    }

    internal static string SourceFolder(PrepareJob job) => Path.GetDirectoryName(Path.GetFullPath(job.Records[0].Source))!;

    /// <summary>The source lines again, in order, each rewritten.</summary>
    static void WriteFromJsonl(PrepareJob job, IReadOnlyList<PreparedItem> items, Stream stream, OutputPaths paths)
    {
        string folder = SourceFolder(job);
        foreach (var (x, line) in SourceLines(job, items))
            WriteLine(stream, json =>
            {
                bool hadCodes = false;
                foreach (var p in line.EnumerateObject())
                {
                    if (p.Name == "ref_codes" && x.RefCodes is not null) continue; // written anew
                    if (p.Name == "audio_codes")
                    {
                        JsonlTrainingData.WriteCodes(json, x.Codes);
                        hadCodes = true;
                    }
                    else if (p.Name is "audio" or "ref_audio" && p.Value.ValueKind == JsonValueKind.String && p.Value.GetString() is { Length: > 0 } path)
                        json.WriteString(p.Name, Rebase(path, folder, paths, reference: p.Name == "ref_audio"));
                    else p.WriteTo(json);
                }
                WriteAdded(json, x, paths, hadCodes);
            });
    }

    /// <summary>Each source file's rows through Parquet.Net's untyped reader, one row group at a time.</summary>
    static void WriteFromParquet(IReadOnlyList<PreparedItem> items, Stream stream, OutputPaths paths)
    {
        foreach (var fileItems in items.GroupBy(x => x.Record.Source))
        {
            string file = fileItems.Key;
            var byRow = fileItems.ToDictionary(x => x.Record.Line - 1);
            using var input = File.OpenRead(file);
            var reader = ParquetReader.CreateAsync(input, leaveStreamOpen: true).GetAwaiter().GetResult();
            int groups = reader.RowGroupCount;
            reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
            int first = 0;
            for (int g = 0; g < groups; g++)
            {
                input.Position = 0;
                var result = ParquetSerializer.DeserializeUntypedAsync(input, null, g).GetAwaiter().GetResult();
                var fields = result.Schema.Fields;
                for (int row = 0; row < result.Data.Count; row++)
                {
                    if (!byRow.TryGetValue(first + row, out var x)) continue;
                    var values = result.Data[row];
                    WriteLine(stream, json =>
                    {
                        bool hadCodes = false;
                        foreach (var field in fields)
                        {
                            values.TryGetValue(field.Name, out object? value);
                            if (field.Name == "ref_codes" && x.RefCodes is not null) continue; // written anew
                            if (field.Name == "audio_codes")
                            {
                                JsonlTrainingData.WriteCodes(json, x.Codes);
                                hadCodes = true;
                            }
                            else if (field.Name is "audio" or "ref_audio")
                                WriteClip(json, field.Name, value, field.Name == "audio" ? x.Record.Audio : x.Record.RefAudio, paths);
                            else
                            {
                                json.WritePropertyName(field.Name);
                                WriteValue(json, value);
                            }
                        }
                        WriteAdded(json, x, paths, hadCodes);
                    });
                }
                first += result.Data.Count;
            }
        }
    }

    /// <summary>An audio column as a path: the reader's clip (a file, or inline bytes written out), or null.</summary>
    static void WriteClip(Utf8JsonWriter json, string name, object? value, AudioSource? clip, OutputPaths paths)
    {
        if (value is null || clip is null) json.WriteNull(name);
        else json.WriteString(name, paths.Clip(clip, reference: name == "ref_audio"));
    }

    /// <summary>A value of Parquet.Net's untyped reader as JSON.</summary>
    static void WriteValue(Utf8JsonWriter json, object? value)
    {
        switch (value)
        {
            case null: json.WriteNullValue(); break;
            case string s: json.WriteStringValue(s); break;
            case ReadOnlyMemory<char> m: json.WriteStringValue(m.Span); break;
            case byte[] b: json.WriteBase64StringValue(b); break;
            case ReadOnlyMemory<byte> b: json.WriteBase64StringValue(b.Span); break;
            case bool b: json.WriteBooleanValue(b); break;
            case float f: json.WriteNumberValue(f); break;
            case double d: json.WriteNumberValue(d); break;
            case decimal d: json.WriteNumberValue(d); break;
            case sbyte or byte or short or ushort or int: json.WriteNumberValue(Convert.ToInt32(value)); break;
            case uint or long: json.WriteNumberValue(Convert.ToInt64(value)); break;
            case ulong u: json.WriteNumberValue(u); break;
            case DateTime t: json.WriteStringValue(t.ToString("O")); break;
            case DateTimeOffset t: json.WriteStringValue(t.ToString("O")); break;
            case DateOnly t: json.WriteStringValue(t.ToString("O")); break;
            case TimeSpan t: json.WriteStringValue(t.ToString("c")); break;
            case IDictionary d:
                json.WriteStartObject();
                foreach (DictionaryEntry kv in d)
                {
                    json.WritePropertyName(kv.Key.ToString()!);
                    WriteValue(json, kv.Value);
                }
                json.WriteEndObject();
                break;
            case IEnumerable e:
                json.WriteStartArray();
                foreach (object? v in e) WriteValue(json, v);
                json.WriteEndArray();
                break;
            default: json.WriteStringValue(value.ToString()); break;
        }
    }
}

/// <summary>Where an output's clips go: paths relative to the output's folder, and inline clips written once each
/// (by content) into <c>OUTPUT-stem.audio/</c>.</summary>
sealed class OutputPaths(string output)
{
    readonly string folder = Path.GetDirectoryName(Path.GetFullPath(output))!;
    readonly string clipFolder = Path.ChangeExtension(Path.GetFullPath(output), null) + ".audio";
    readonly Dictionary<string, string> written = new(StringComparer.Ordinal); // clip key -> relative path
    readonly HashSet<string> names = new(StringComparer.Ordinal);

    /// <summary>A full path as the output names it: relative to its folder, with forward slashes.</summary>
    public string Relative(string fullPath) => Path.GetRelativePath(folder, fullPath).Replace('\\', '/');

    /// <summary>A reference clip as the output names it: relative to its folder when it lies under it; else a link in
    /// <c>OUTPUT-stem.audio/</c> to it (made once per clip), so that the prepared data names no file outside its folder
    /// and trains without --allow_absolute_paths.</summary>
    public string Reference(string fullPath)
    {
        if (DataPaths.Outside(fullPath, Path.Combine(folder, "x")) is null) return Relative(fullPath);
        string key = "file:" + fullPath;
        if (written.TryGetValue(key, out var known)) return known;
        string full = Path.Combine(clipFolder, UniqueName(Path.GetFileNameWithoutExtension(fullPath), Path.GetExtension(fullPath)));
        Directory.CreateDirectory(clipFolder);
        if (new FileInfo(full) is { Exists: true } or { LinkTarget: not null }) File.Delete(full); // from an earlier, interrupted run (dangling or not)
        File.CreateSymbolicLink(full, fullPath);
        return written[key] = Relative(full);
    }

    string UniqueName(string stem, string ext)
    {
        stem = string.Concat(stem.Select(c => char.IsLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_'));
        if (stem.Length == 0) stem = "clip";
        string name = stem + ext;
        for (int k = 1; !names.Add(name); k++) name = $"{stem}-{k}{ext}";
        return name;
    }

    /// <summary>A file clip relative to the output's folder (a reference clip as <see cref="Reference"/> names it), or an
    /// inline clip written out (once) and its relative path.</summary>
    public string Clip(AudioSource clip, bool reference = true)
    {
        if (clip.Bytes is null) return reference ? Reference(clip.Path!) : Relative(clip.Path!);
        if (written.TryGetValue(clip.Key, out var known)) return known;
        string ext = AudioFile.Detect(clip.Bytes, clip.Name) switch { AudioFormat.Flac => ".flac", AudioFormat.Mp3 => ".mp3", _ => ".wav" };
        // Name: the struct's path or the row, made a safe file name, unique in the folder.
        string name = UniqueName(Path.GetFileNameWithoutExtension(clip.Name.Split(": ").Last()), ext);
        Directory.CreateDirectory(clipFolder);
        string full = Path.Combine(clipFolder, name);
        File.WriteAllBytes(full, clip.Bytes);
        return written[clip.Key] = Relative(full);
    }
}
