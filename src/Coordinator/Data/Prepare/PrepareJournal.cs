using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Qwen3Tts.Coordinator.Data.Prepare;

/// <summary>One finished record of a prepare job: its codes, or why it could not be used (only kept with
/// --skip_bad_samples). <see cref="Fingerprint"/> ties it to the record's audio and text, so an edited record is
/// prepared again rather than taken from an older run.</summary>
public sealed record JournalEntry(int Index, string Fingerprint, double Seconds, long[,]? Codes, string? BadField = null, string? BadReason = null)
{
    public bool Ok => Codes is not null;
}

/// <summary>The progress of a prepare job: the folder <c>OUTPUT.partial/</c> holding <c>job.json</c> (what the job is:
/// input, split, sample limit, record count, codec) and one append-only <c>codes-rank-R.jsonl</c> per rank, one line per
/// finished record, flushed to disk before the next record starts. A killed job leaves at most one torn last line per
/// file, which the reader ignores and the writer cuts off before appending; a restarted job (with any number of ranks)
/// reads every rank's file and skips what is there. The folder is deleted once the output is complete.</summary>
public static class PrepareJournal
{
    public const string JobFile = "job.json";
    const string Prefix = "codes-rank-";

    /// <summary>Records <paramref name="identity"/> in a new folder, or checks that an existing folder belongs to the same
    /// job (a different input or codec would mix codes of two jobs). Safe when every rank calls it at once.</summary>
    public static void Begin(string partialDir, JsonObject identity, int rank)
    {
        Directory.CreateDirectory(partialDir);
        string path = Path.Combine(partialDir, JobFile);
        string text = identity.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        if (File.Exists(path))
        {
            var existing = JsonNode.Parse(File.ReadAllText(path)) as JsonObject;
            var differences = identity.Where(kv => !JsonNode.DeepEquals(kv.Value, existing?[kv.Key]))
                .Select(kv => $"{kv.Key}: {existing?[kv.Key]?.ToJsonString() ?? "null"} then, {kv.Value?.ToJsonString() ?? "null"} now").ToList();
            if (differences.Count > 0)
                throw new ArgumentException($"--output: {partialDir} holds an unfinished prepare of another job ({string.Join("; ", differences)}); " +
                    "rerun with the same input and model to finish it, or delete the folder to start over");
            return;
        }
        // Every rank writes the same text; each through its own temporary name, so the renames never collide.
        string tmp = $"{path}.tmp-{Environment.ProcessId}-{rank}";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Every complete entry of every rank's file (the first one wins if an index appears twice).</summary>
    public static Dictionary<int, JournalEntry> ReadAll(string partialDir)
    {
        var entries = new Dictionary<int, JournalEntry>();
        if (!Directory.Exists(partialDir)) return entries;
        foreach (string file in Directory.GetFiles(partialDir, Prefix + "*.jsonl").Order(StringComparer.Ordinal))
        {
            string text = File.ReadAllText(file);
            int end = text.LastIndexOf('\n'); // anything after the last newline is a torn line of a killed job
            int lineNumber = 0;
            foreach (string line in text[..(end + 1)].Split('\n'))
            {
                lineNumber++;
                if (line.Length == 0) continue;
                var entry = Parse(line, file, lineNumber);
                entries.TryAdd(entry.Index, entry);
            }
        }
        return entries;
    }

    static JournalEntry Parse(string line, string file, int lineNumber)
    {
        try
        {
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            int index = root.GetProperty("i").GetInt32();
            string fp = root.GetProperty("fp").GetString()!;
            double seconds = root.GetProperty("seconds").GetDouble();
            if (root.TryGetProperty("bad", out var bad))
                return new JournalEntry(index, fp, seconds, null, bad.GetProperty("field").GetString(), bad.GetProperty("reason").GetString());
            var frames = root.GetProperty("codes");
            int n = frames.GetArrayLength(), width = n == 0 ? 0 : frames[0].GetArrayLength();
            var codes = new long[n, width];
            int f = 0;
            foreach (var frame in frames.EnumerateArray())
            {
                int q = 0;
                foreach (var code in frame.EnumerateArray()) codes[f, q++] = code.GetInt64();
                f++;
            }
            return new JournalEntry(index, fp, seconds, codes);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or IndexOutOfRangeException)
        {
            throw new InvalidDataException($"{file}:{lineNumber}: not a prepare journal entry ({e.Message}); delete the folder to start over");
        }
    }

    /// <summary>Appends entries to this rank's file.</summary>
    public sealed class Writer : IDisposable
    {
        readonly FileStream stream;

        public Writer(string partialDir, int rank)
        {
            Path = System.IO.Path.Combine(partialDir, $"{Prefix}{rank:D5}.jsonl");
            stream = new FileStream(Path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
            // Cut a torn last line (a killed run) so the next entry starts on a line of its own.
            long keep = stream.Length;
            while (keep > 0)
            {
                stream.Position = keep - 1;
                if (stream.ReadByte() == '\n') break;
                keep--;
            }
            stream.SetLength(keep);
            stream.Position = keep;
        }

        public string Path { get; }

        /// <summary>Writes one entry and flushes it to disk: once this returns the record counts as done.</summary>
        public void Append(JournalEntry entry)
        {
            var buffer = new MemoryStream();
            using (var json = new Utf8JsonWriter(buffer))
            {
                json.WriteStartObject();
                json.WriteNumber("i", entry.Index);
                json.WriteString("fp", entry.Fingerprint);
                json.WriteNumber("seconds", entry.Seconds);
                if (entry.Codes is { } codes)
                {
                    json.WriteStartArray("codes");
                    for (int f = 0; f < codes.GetLength(0); f++)
                    {
                        json.WriteStartArray();
                        for (int q = 0; q < codes.GetLength(1); q++) json.WriteNumberValue(codes[f, q]);
                        json.WriteEndArray();
                    }
                    json.WriteEndArray();
                }
                else
                {
                    json.WriteStartObject("bad");
                    json.WriteString("field", entry.BadField);
                    json.WriteString("reason", entry.BadReason);
                    json.WriteEndObject();
                }
                json.WriteEndObject();
            }
            buffer.WriteByte((byte)'\n');
            stream.Write(buffer.GetBuffer(), 0, (int)buffer.Length);
            stream.Flush(flushToDisk: true);
        }

        public void Dispose() => stream.Dispose();
    }

    /// <summary>A short hash of what a record's codes depend on: its audio (path, size and time for a file, the bytes
    /// for an inline clip) and its text (a record whose text changed is a different record).</summary>
    public static string Fingerprint(RawSpeechRecord record)
    {
        var text = new StringBuilder(record.Audio.Key);
        if (record.Audio.Path is { } path && File.Exists(path))
        {
            var info = new FileInfo(path);
            text.Append('\n').Append(info.Length).Append('\n').Append(info.LastWriteTimeUtc.Ticks);
        }
        text.Append('\n').Append(record.Text);
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())), 0, 8).ToLowerInvariant();
    }
}
