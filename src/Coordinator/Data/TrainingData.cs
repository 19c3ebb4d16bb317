using Qwen3Tts.Model.Config;
namespace Qwen3Tts.Coordinator.Data;

/// <summary>The one way training reads its data: a JSONL file (<see cref="JsonlTrainingData"/>), a Parquet file, or a
/// folder of Parquet shards (<see cref="ParquetTrainingData"/>).</summary>
public static class TrainingData
{
    /// <summary>What <paramref name="path"/> holds: a folder is Parquet shards; a file is judged by its extension
    /// (<c>.jsonl</c>/<c>.json</c>, <c>.parquet</c>), else by its first bytes (<c>PAR1</c>, or <c>{</c>).</summary>
    public static DataFormat Detect(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path)) return DataFormat.Parquet;
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such training data file or folder", path);
        string ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext is ".jsonl" or ".json" or ".ndjson") return DataFormat.Jsonl;
        if (ext == ".parquet") return DataFormat.Parquet;

        Span<byte> head = stackalloc byte[64];
        int n;
        using (var stream = File.OpenRead(path)) n = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        head = head[..n];
        if (head.StartsWith("PAR1"u8)) return DataFormat.Parquet;
        if (head.StartsWith("\uFEFF"u8)) head = head[3..]; // a UTF-8 byte order mark
        int first = head.IndexOfAnyExcept(" \t\r\n"u8);
        if (first >= 0 && head[first] == (byte)'{') return DataFormat.Jsonl;
        throw new InvalidDataException($"{path}: neither JSONL (one JSON object per line) nor Parquet (no PAR1 magic); " +
            "training data is a .jsonl file, a .parquet file, or a folder of .parquet shards");
    }

    /// <summary>Reads every record of a JSONL file, a Parquet file, or a folder of Parquet shards (<paramref name="split"/>
    /// picks <c>{split}-*.parquet</c> in a folder; it must be null for JSONL). A malformed record throws
    /// <see cref="DataException"/> naming file, line or row, and field; with <paramref name="skipBad"/> it is listed in
    /// <paramref name="skipped"/> instead. Codes are checked against <paramref name="bounds"/>, the model's when one is
    /// known (<see cref="CodeBounds.Of"/>), else the speech tokenizer's.</summary>
    public static IReadOnlyList<TrainingRecord> Read(string path, bool skipBad, out IReadOnlyList<BadRecord> skipped, string? split = null,
        CodeBounds? bounds = null) =>
        Refusals.Collect(skipBad, refusals => Read(path, refusals, split, bounds), out skipped);

    /// <summary>Every record <see cref="Read(string, bool, out IReadOnlyList{BadRecord}, string?, CodeBounds?)"/> reads;
    /// the refused ones (and blank lines, as warnings) go to <paramref name="refusals"/>, for the caller to add its own
    /// checks to before it stops or skips.</summary>
    public static IReadOnlyList<TrainingRecord> Read(string path, Refusals refusals, string? split = null, CodeBounds? bounds = null,
        int maxLineBytes = JsonlTrainingData.MaxLineBytes)
    {
        switch (Detect(path))
        {
            case DataFormat.Jsonl:
                if (split is not null) throw new ArgumentException($"{path}: a JSONL file has no splits; --split {split} applies to a folder of Parquet shards");
                return JsonlTrainingData.Read(path, refusals, bounds, maxLineBytes);
            default:
                return ParquetTrainingData.Read(path, refusals, split, bounds);
        }
    }
}

public enum DataFormat
{
    Jsonl,
    Parquet,
}
