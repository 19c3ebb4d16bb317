using Parquet;
using Parquet.Schema;
using Qwen3Tts.Model.Config;

namespace Qwen3Tts.Coordinator.Data;

/// <summary>A row of a raw Hugging Face audio dataset (e.g. <c>audio</c> {bytes, path}, <c>text</c>, <c>speaker_id</c>):
/// audio not yet encoded to codec ids, for the prepare step.</summary>
/// <param name="Source">the Parquet file, as found by the reader.</param>
/// <param name="RowIndex">0-based row index within <paramref name="Source"/>, across its row groups.</param>
/// <param name="AudioBytes">the encoded audio file (WAV, FLAC, ...) when the dataset embeds it, else null.</param>
/// <param name="AudioPath">the audio struct's path (or the audio column's string), as written: with embedded bytes it
/// is only the original file name; without them, relative paths are taken from the Parquet file's folder.</param>
/// <param name="Extra">every other top-level string column, by name (null where the row has none).</param>
public sealed record RawAudioRecord(
    string Source,
    int RowIndex,
    byte[]? AudioBytes,
    string? AudioPath,
    string Text,
    string? Language = null,
    string? SpeakerId = null,
    string? Gender = null,
    string? AgeRange = null,
    IReadOnlyDictionary<string, string?>? Extra = null)
{
    /// <summary>RowIndex + 1, as <see cref="TrainingRecord.Line"/> counts Parquet rows.</summary>
    public int Line => RowIndex + 1;

    public string Where => DataLocation.Format(Source, Line);
}

/// <summary>What a Parquet training file holds.</summary>
public enum ParquetLayout
{
    /// <summary>Training records: <c>text</c>, <c>audio_codes</c>, <c>ref_audio</c>, ...</summary>
    Prepared,

    /// <summary>A raw audio dataset: <c>audio</c> and <c>text</c>, no <c>audio_codes</c> yet.</summary>
    RawAudio,
}

/// <summary>Reads Hugging Face <c>datasets</c> Parquet: one file, or a folder of shards named like
/// <c>train-00000-of-00004.parquet</c> (sorted by name; a split name picks <c>{split}-*.parquet</c>, looking in the
/// folder and then in its <c>data/</c>). Row groups are read one at a time.
/// <para>Prepared layout, the JSONL's fields as columns: <c>text</c> (string), <c>audio_codes</c> (list&lt;list&lt;int&gt;&gt;,
/// [frames][16], int32 or int64), <c>ref_audio</c> (a path relative to the Parquet file's folder or absolute, or the
/// audio struct {bytes, path}), optional <c>audio</c> (path or audio struct), <c>text_ids</c> (list&lt;int&gt;),
/// <c>ref_text</c>, <c>language</c>, <c>speaker_id</c>, <c>gender</c>, <c>age_range</c>. Other columns are ignored.</para>
/// <para>Every row is validated up front with the JSONL reader's rules; messages name file, row (the 0-based index within
/// the file) and column, e.g. <c>train-00001-of-00004.parquet: row 17: audio_codes[3]: expected 16 codebooks, found 15</c>.
/// A record's <see cref="TrainingRecord.Line"/> is that row index + 1.</para></summary>
public static class ParquetTrainingData
{
    /// <summary>The Parquet files <paramref name="path"/> names, in read order: the file itself, or the folder's shards
    /// sorted by name. Without <paramref name="split"/> a folder holding several splits reads <c>train</c>.</summary>
    public static IReadOnlyList<string> Files(string path, string? split = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (File.Exists(path))
            return split is null ? [path] : throw new ArgumentException($"{path}: a single Parquet file has no splits; --split {split} picks shards in a folder");
        if (!Directory.Exists(path)) throw new FileNotFoundException($"{path}: no such Parquet file or folder", path);
        foreach (string folder in new[] { path, Path.Combine(path, "data") })
        {
            if (!Directory.Exists(folder)) continue;
            var all = Directory.GetFiles(folder, "*.parquet").Order(StringComparer.Ordinal).ToList();
            if (all.Count == 0) continue;
            var splits = all.Select(f => SplitOf(Path.GetFileName(f))).Distinct().ToList();
            string? pick = split ?? (splits.Count == 1 ? null : splits.Contains("train") ? "train"
                : throw new ArgumentException($"{path}: holds the splits {string.Join(", ", splits)}; name one (--split)"));
            if (pick is null) return all;
            var chosen = all.Where(f => SplitOf(Path.GetFileName(f)) == pick).ToList();
            if (chosen.Count == 0)
                throw new ArgumentException($"{path}: no '{pick}-*.parquet' shards (splits found: {string.Join(", ", splits)})");
            return chosen;
        }
        if (ConvertedSplits(path, split) is { } converted) return converted;
        throw new FileNotFoundException($"{path}: a folder without any .parquet files (looked in it, in its data/ and in {{config}}/{{split}}/ folders)", path);
    }

    /// <summary>The Hub's Parquet conversion of a dataset (the refs/convert/parquet branch): <c>{config}/{split}/0000.parquet</c>;
    /// the config "default" (or the only one), the split named or else train; null when the folder is not laid out so.</summary>
    static IReadOnlyList<string>? ConvertedSplits(string path, string? split)
    {
        static bool HasShards(string dir) => Directory.EnumerateFiles(dir, "*.parquet").Any();
        var configs = Directory.GetDirectories(path).Where(c => Directory.GetDirectories(c).Any(HasShards)).Order(StringComparer.Ordinal).ToList();
        if (configs.Count == 0) return null;
        string config = configs.FirstOrDefault(c => Path.GetFileName(c) == "default") ?? (configs.Count == 1 ? configs[0]
            : throw new ArgumentException($"{path}: holds the configs {string.Join(", ", configs.Select(Path.GetFileName))} and none is 'default'; give the config's folder"));
        var splits = Directory.GetDirectories(config).Where(HasShards).Select(d => Path.GetFileName(d)!).Order(StringComparer.Ordinal).ToList();
        string pick = split ?? (splits.Count == 1 ? splits[0] : splits.Contains("train") ? "train"
            : throw new ArgumentException($"{config}: holds the splits {string.Join(", ", splits)}; name one (--split)"));
        if (!splits.Contains(pick)) throw new ArgumentException($"{config}: no '{pick}' split (splits found: {string.Join(", ", splits)})");
        return Directory.GetFiles(Path.Combine(config, pick), "*.parquet").Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>"train" of "train-00000-of-00004.parquet"; the name without extension when it has no dash.</summary>
    static string SplitOf(string fileName)
    {
        string stem = Path.GetFileNameWithoutExtension(fileName);
        int dash = stem.IndexOf('-');
        return dash < 0 ? stem : stem[..dash];
    }

    /// <summary>Prepared when the file has <c>audio_codes</c> or <c>ref_audio</c>, raw audio when it has <c>audio</c> but neither.</summary>
    public static ParquetLayout Layout(string file)
    {
        var schema = ReadSchema(file);
        // A prepared file missing its audio_codes column still has ref_audio; raw datasets never do.
        if (Top(schema, "audio_codes") is not null || Top(schema, "ref_audio") is not null) return ParquetLayout.Prepared;
        if (Top(schema, "audio") is not null) return ParquetLayout.RawAudio;
        throw new InvalidDataException($"{file}: neither prepared training data (no audio_codes column) nor a raw audio dataset " +
            $"(no audio column); its columns are {string.Join(", ", schema.Fields.Select(f => f.Name))}");
    }

    /// <summary>Reads every prepared record. A malformed row throws <see cref="DataException"/> naming file, row and
    /// column, unless <paramref name="skipBad"/> is set: then it is left out and listed in <paramref name="skipped"/>.</summary>
    public static IReadOnlyList<TrainingRecord> Read(string path, bool skipBad, out IReadOnlyList<BadRecord> skipped,
        string? split = null, CodeBounds? bounds = null) =>
        Refusals.Collect(skipBad, refusals => Read(path, refusals, split, bounds), out skipped);

    /// <summary>Every prepared record; refused rows go to <paramref name="refusals"/>.</summary>
    public static IReadOnlyList<TrainingRecord> Read(string path, Refusals refusals, string? split = null, CodeBounds? bounds = null)
    {
        var files = Files(path, split);
        foreach (string file in files)
            if (Layout(file) == ParquetLayout.RawAudio)
                throw new InvalidDataException($"{file}: a raw audio dataset (audio and text, no audio_codes column); " +
                    "encode its audio to codec ids first (the prepare step reads it with RawSpeechData.Read; check it with qwen3tts preflight)");
        var clips = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        return ReadAll(files, refusals, (g, row) => PreparedRow(g, row, bounds ?? CodeBounds.SpeechTokenizer, clips));
    }

    /// <summary>Reads the rows of a raw audio dataset (audio and text), validated like <see cref="Read"/>.</summary>
    public static IReadOnlyList<RawAudioRecord> ReadRaw(string path, bool skipBad, out IReadOnlyList<BadRecord> skipped, string? split = null) =>
        Refusals.Collect(skipBad, refusals => ReadAll(Files(path, split), refusals, RawRow), out skipped);


    /// <summary>Reads the rows of any speech dataset in Parquet, raw or prepared, as <see cref="RawSpeechRecord"/>s (what
    /// <see cref="RawSpeechData"/> returns for Parquet): <c>audio</c> (audio struct or path) and <c>text</c> required,
    /// <c>ref_audio</c>, <c>speaker_id</c>, <c>language</c>, <c>id</c> and <c>audio_codes</c> (kept unvalidated) optional,
    /// every other string column in <see cref="RawSpeechRecord.Extra"/>. Relative paths are taken from the file's folder.</summary>
    public static IReadOnlyList<RawSpeechRecord> ReadSpeech(string path, bool skipBad, out IReadOnlyList<BadRecord> skipped, string? split = null) =>
        Refusals.Collect(skipBad, refusals => ReadSpeech(path, refusals, split), out skipped);

    /// <summary>As <see cref="ReadSpeech(string, bool, out IReadOnlyList{BadRecord}, string?)"/>; refused rows go to <paramref name="refusals"/>.</summary>
    public static IReadOnlyList<RawSpeechRecord> ReadSpeech(string path, Refusals refusals, string? split = null) =>
        ReadAll(Files(path, split), refusals, SpeechRow);

    static readonly string[] KnownStrings = ["text", "ref_text", "language", "speaker_id", "gender", "age_range"];

    static readonly string[] RawKnown = ["audio", "text", "language", "speaker_id", "gender", "age_range"];

    static IReadOnlyList<T> ReadAll<T>(IReadOnlyList<string> files, Refusals refusals, Func<RowGroup, int, T> parse)
    {
        var records = new List<T>();
        foreach (string file in files)
            Run(file, async () =>
            {
                await using var reader = await ParquetReader.CreateAsync(file);
                await using var pages = File.OpenRead(file); // page headers, walked before Parquet.Net reads the pages
                long length = pages.Length;
                int first = 0; // global index of the row group's first row
                for (int i = 0; i < reader.RowGroupCount; i++)
                {
                    if (reader.Metadata?.RowGroups is { } groups && i < groups.Count) CheckDeclaredSizes(file, length, groups[i], i, pages);
                    using var rg = reader.OpenRowGroupReader(i);
                    var group = await RowGroup.ReadAsync(file, reader.Schema, rg, first);
                    for (int row = 0; row < group.Rows; row++)
                    {
                        try { records.Add(parse(group, row)); }
                        catch (DataException e) { refusals.Add(e.Bad); }
                    }
                    first += group.Rows;
                }
                return 0;
            });
        return records;
    }

    /// <param name="clips">inline reference clips seen so far, by content hash: a speaker's clip repeated on every row (as
    /// prepare writes it) is kept in memory once, not once per row.</param>
    static TrainingRecord PreparedRow(RowGroup g, int row, CodeBounds bounds, Dictionary<string, byte[]> clips)
    {
        string text = g.RequiredString("text", row);
        if (text.Length == 0) throw g.Bad(row, "text", "is empty; a training sample needs text to speak");
        var codes = Codes(g, row, bounds);

        var refAudio = g.Audio("ref_audio", row) ?? throw g.Bad(row, "ref_audio", "missing required field");
        string refName;
        byte[]? refBytes = null;
        if (refAudio.Bytes is { Length: > 0 } bytes)
        {
            string key = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(bytes));
            if (!clips.TryGetValue(key, out refBytes)) clips[key] = refBytes = bytes;
            refName = string.IsNullOrEmpty(refAudio.Path) ? $"{g.File}#row{g.First + row}" : refAudio.Path;
        }
        else
        {
            if (string.IsNullOrEmpty(refAudio.Path)) throw g.Bad(row, "ref_audio", "is empty");
            refName = Path.GetFullPath(Path.IsPathRooted(refAudio.Path) ? refAudio.Path : Path.Combine(g.Folder, refAudio.Path));
            if (!File.Exists(refName)) throw g.Bad(row, "ref_audio", $"file '{refName}' does not exist");
        }

        return new TrainingRecord(g.File, g.First + row + 1, g.Audio("audio", row)?.Path ?? "", text, codes, refName,
            RefText: g.OptionalString("ref_text", row),
            Language: g.OptionalString("language", row),
            SpeakerId: g.OptionalString("speaker_id", row),
            Gender: g.OptionalString("gender", row),
            AgeRange: g.OptionalString("age_range", row),
            TextIds: TextIds(g, row),
            RefAudioBytes: refBytes,
            Extra: ExtraStrings(g, row),
            RefCodes: g.RefCodes(row) is { } refCodes ? Codes(g, row, bounds, "ref_codes", refCodes) : null);
    }

    /// <summary>The row's other string columns (a dataset's own, e.g. a speaker column of another name); null when none.</summary>
    static Dictionary<string, string>? ExtraStrings(RowGroup g, int row)
    {
        Dictionary<string, string>? extra = null;
        foreach (string column in g.StringColumns)
            if (!KnownStrings.Contains(column) && column is not ("audio" or "ref_audio") && g.OptionalString(column, row) is { } value)
                (extra ??= new(StringComparer.Ordinal))[column] = value;
        return extra;
    }

    static CodeGrid Codes(RowGroup g, int row, CodeBounds bounds, string name = "audio_codes", long?[]?[]? cell = null)
    {
        int codebooks = bounds.Codebooks;
        var frames = cell ?? g.Codes(row) ?? throw g.Bad(row, name, "missing required field");
        if (frames.Length == 0) throw g.Bad(row, name, "is empty; a training sample needs at least one frame of codes");
        var codes = new long[frames.Length, codebooks];
        for (int f = 0; f < frames.Length; f++)
        {
            var frame = frames[f] ?? throw g.Bad(row, $"{name}[{f}]", $"expected an array of {codebooks} codes, found null");
            if (frame.Length != codebooks)
                throw g.Bad(row, frame.Length > codebooks ? $"{name}[{f}][{codebooks}]" : $"{name}[{f}]",
                    $"expected {codebooks} codebooks, found {frame.Length}");
            for (int k = 0; k < codebooks; k++)
            {
                long c = frame[k] ?? throw g.Bad(row, $"{name}[{f}][{k}]", "expected an integer code, found null");
                if (bounds.Problem(c, k) is { } problem) throw g.Bad(row, $"{name}[{f}][{k}]", problem);
                codes[f, k] = c;
            }
        }
        return new CodeGrid(codes);
    }

    static int[]? TextIds(RowGroup g, int row)
    {
        const string name = "text_ids";
        var ids = g.TextIds(row);
        if (ids is null) return null;
        var result = new int[ids.Length];
        for (int k = 0; k < ids.Length; k++)
        {
            if (ids[k] is not { } t || t < 0 || t > int.MaxValue)
                throw g.Bad(row, $"{name}[{k}]", $"expected a non-negative integer token id, found {(ids[k]?.ToString() ?? "null")}");
            result[k] = (int)t;
        }
        if (result.Length < Qwen3Tts.Model.Sft.SftCollate.MinTextIds)
            throw g.Bad(row, name, $"has {result.Length} ids; the full chat text needs at least {Qwen3Tts.Model.Sft.SftCollate.MinTextIds} " +
                "(\"<|im_start|>assistant\\n\", at least one text id, \"<|im_end|>\\n<|im_start|>assistant\\n\")");
        return result;
    }

    static RawAudioRecord RawRow(RowGroup g, int row)
    {
        var audio = g.Audio("audio", row) ?? throw g.Bad(row, "audio", "missing required field");
        if (audio.Bytes is not { Length: > 0 } && string.IsNullOrEmpty(audio.Path))
            throw g.Bad(row, "audio", "has neither bytes nor a path");
        string text = g.RequiredString("text", row);
        var extra = g.StringColumns.Where(c => !RawKnown.Contains(c)).ToDictionary(c => c, c => g.OptionalString(c, row));
        return new RawAudioRecord(g.File, g.First + row, audio.Bytes is { Length: > 0 } ? audio.Bytes : null, audio.Path, text,
            Language: g.OptionalString("language", row),
            SpeakerId: g.OptionalString("speaker_id", row),
            Gender: g.OptionalString("gender", row),
            AgeRange: g.OptionalString("age_range", row),
            Extra: extra);
    }

    static RawSpeechRecord SpeechRow(RowGroup g, int row)
    {
        string file = Path.GetFileName(g.File);
        AudioSource? Source(string column)
        {
            var cell = g.Audio(column, row);
            if (cell is null) return null;
            if (cell.Bytes is { Length: > 0 } bytes)
                return AudioSource.Inline(bytes, string.IsNullOrEmpty(cell.Path) ? $"{file}: row {g.First + row}: {column}" : $"{file}: row {g.First + row}: {cell.Path}");
            if (string.IsNullOrEmpty(cell.Path)) throw g.Bad(row, column, "has neither bytes nor a path");
            return AudioSource.FromFile(Path.GetFullPath(Path.IsPathRooted(cell.Path) ? cell.Path : Path.Combine(g.Folder, cell.Path)));
        }
        var audio = Source("audio") ?? throw g.Bad(row, "audio", "missing required field");
        string text = g.RequiredString("text", row);
        var extra = g.StringColumns.Where(c => !RawSpeechData.KnownFields.Contains(c)).ToDictionary(c => c, c => g.OptionalString(c, row));
        // Pre-tokenized ids as the JSONL reader keeps them (JSON text), so preflight judges them as the trainer does.
        if (g.TextIds(row) is { } ids) extra["text_ids"] = "[" + string.Join(",", ids.Select(i => i?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "null")) + "]";
        return new RawSpeechRecord(g.File, g.First + row + 1, g.OptionalString("id", row) ?? $"{file}:row{g.First + row}", audio, text,
            RefAudio: Source("ref_audio"),
            SpeakerId: g.OptionalString("speaker_id", row),
            Language: g.OptionalString("language", row),
            Extra: extra,
            AudioCodes: g.CodesIfAny(row));
    }

    /// <summary>The file's schema; a file that is not Parquet (or is cut short) is an InvalidDataException naming it.</summary>
    public static ParquetSchema ReadSchema(string file) => Run(file, async () =>
    {
        await using var reader = await ParquetReader.CreateAsync(file);
        return reader.Schema;
    });

    static Field? Top(ParquetSchema schema, string name) => schema.Fields.FirstOrDefault(f => f.Name == name);

    /// <summary>Most bytes one column chunk of a row group may declare uncompressed: .NET holds no larger array, and a
    /// writer that needs more should write smaller row groups.</summary>
    public const long MaxChunkBytes = int.MaxValue;

    /// <summary>Refuses a row group whose footer declares sizes the file cannot hold (chunks past its end, negative or
    /// beyond <see cref="MaxChunkBytes"/> uncompressed), or one of whose pages (<paramref name="pages"/>: the file, to walk
    /// their headers) lies outside its chunk or declares more than the chunk, before anything is allocated for it: damage
    /// must not make the reader ask for gigabytes.</summary>
    public static void CheckDeclaredSizes(string file, long fileLength, Parquet.Meta.RowGroup group, int index, Stream? pages = null)
    {
        ArgumentNullException.ThrowIfNull(group);
        if (group.NumRows < 0 || group.NumRows > int.MaxValue)
            throw new InvalidDataException($"{file}: row group {index} declares {group.NumRows} rows; the file is damaged");
        foreach (var chunk in group.Columns)
        {
            if (chunk.MetaData is not { } m) continue;
            string column = string.Join('.', m.PathInSchema);
            long start = m.DictionaryPageOffset is long d && d > 0 ? Math.Min(d, m.DataPageOffset) : m.DataPageOffset;
            if (start < 0 || m.TotalCompressedSize < 0 || start + m.TotalCompressedSize > fileLength)
                throw new InvalidDataException($"{file}: row group {index}, column {column}: declares {m.TotalCompressedSize} bytes at offset {start}, " +
                    $"past the end of the {fileLength}-byte file; the file is damaged or truncated");
            if (m.TotalUncompressedSize < 0 || m.TotalUncompressedSize > MaxChunkBytes)
                throw new InvalidDataException($"{file}: row group {index}, column {column}: declares {m.TotalUncompressedSize} bytes uncompressed, " +
                    $"more than the {MaxChunkBytes >> 20} MB a column chunk may hold; the file is damaged, or its row groups are too large (write smaller ones)");
            if (pages is not null && ParquetPages.Problem(pages, start, m.TotalCompressedSize, m.TotalUncompressedSize) is { } problem)
                throw new InvalidDataException($"{file}: row group {index}, column {column}: {problem}; the file is damaged");
        }
    }

    /// <summary>Runs the async Parquet.Net calls off any synchronization context, so blocking on them cannot deadlock.
    /// Parquet.Net's own failures (not a Parquet file, a corrupt page) become <see cref="InvalidDataException"/> naming the file.</summary>
    static T Run<T>(string file, Func<Task<T>> work)
    {
        try { return Task.Run(work).GetAwaiter().GetResult(); }
        // Parquet.Net's own failures (a corrupt page reads as InvalidDataException or anything else) get the file's name;
        // ours already carry it.
        catch (Exception e) when (e is not (DataException or FileNotFoundException) && !e.Message.StartsWith(file, StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{file}: cannot read it as Parquet ({e.GetType().Name}: {e.Message})", e);
        }
    }

    /// <summary>An audio cell: the Hugging Face audio struct {bytes, path}, or a plain path string (Bytes null).</summary>
    sealed record AudioCell(byte[]? Bytes, string? Path);

    /// <summary>One row group's columns, decoded into per-row cells. A column the file lacks, or whose type does not
    /// fit, is recorded once and reported on every row that needs it.</summary>
    sealed class RowGroup
    {
        public required string File { get; init; }
        public required string Folder { get; init; }
        public required int First { get; init; }
        public required int Rows { get; init; }
        readonly Dictionary<string, string?[]> strings = new(StringComparer.Ordinal);
        readonly Dictionary<string, AudioCell?[]> audio = new(StringComparer.Ordinal);
        readonly Dictionary<string, string> problems = new(StringComparer.Ordinal); // column -> why it cannot be read
        long?[]?[]?[]? codes; // [row][frame][codebook]
        long?[]?[]?[]? refCodes; // the same, of the reference clip
        long?[]?[]? textIds;  // [row][id]

        public IEnumerable<string> StringColumns => strings.Keys;

        public DataException Bad(int row, string field, string reason) => new(File, First + row + 1, field, reason);

        public static async Task<RowGroup> ReadAsync(string file, ParquetSchema schema, ParquetRowGroupReader rg, int first)
        {
            var g = new RowGroup
            {
                File = file,
                Folder = Path.GetDirectoryName(Path.GetFullPath(file))!,
                First = first,
                Rows = checked((int)rg.RowCount),
            };
            foreach (var field in schema.Fields)
            {
                string name = field.Name;
                try
                {
                    switch (name)
                    {
                        case "audio_codes":
                            g.codes = await ParquetColumns.ListOfListsAsync(rg, field, g.Rows);
                            break;
                        case "ref_codes":
                            g.refCodes = await ParquetColumns.ListOfListsAsync(rg, field, g.Rows);
                            break;
                        case "text_ids":
                            g.textIds = await ParquetColumns.ListAsync(rg, field, g.Rows);
                            break;
                        case "audio" or "ref_audio":
                            var parts = await ParquetColumns.AudioPartsAsync(rg, field, g.Rows);
                            g.audio[name] = Array.ConvertAll(parts, p => p.Present ? new AudioCell(p.Bytes, p.Path) : null);
                            break;
                        default:
                            if (field is DataField { MaxRepetitionLevel: 0 } d && ParquetColumns.IsString(d))
                                g.strings[name] = await ParquetColumns.StringsAsync(rg, d, g.Rows);
                            else if (KnownStrings.Contains(name))
                                g.problems[name] = $"expected a string column, found {ParquetColumns.Describe(field)}";
                            break;
                    }
                }
                catch (ColumnTypeException e)
                {
                    g.problems[name] = e.Message;
                }
            }
            return g;
        }

        void Check(string column, int row)
        {
            if (problems.TryGetValue(column, out var problem)) throw Bad(row, column, problem);
        }

        public string RequiredString(string column, int row)
        {
            Check(column, row);
            if (!strings.TryGetValue(column, out var cells)) throw Bad(row, column, "missing required field (the file has no such column)");
            return cells[row] ?? throw Bad(row, column, "missing required field (null)");
        }

        public string? OptionalString(string column, int row)
        {
            Check(column, row);
            return strings.TryGetValue(column, out var cells) ? cells[row] : null;
        }

        public AudioCell? Audio(string column, int row)
        {
            Check(column, row);
            if (audio.TryGetValue(column, out var cells)) return cells[row];
            return null;
        }

        public long?[]?[]? Codes(int row)
        {
            Check("audio_codes", row);
            if (codes is null) throw Bad(row, "audio_codes", "missing required field (the file has no such column)");
            return codes[row];
        }

        /// <summary>The row's codes, or null when the file has no audio_codes column or the row's cell is null.</summary>
        public long?[]?[]? CodesIfAny(int row)
        {
            Check("audio_codes", row);
            return codes?[row];
        }

        /// <summary>The row's reference codes, or null (no ref_codes column, or a null cell).</summary>
        public long?[]?[]? RefCodes(int row)
        {
            Check("ref_codes", row);
            return refCodes?[row];
        }

        public long?[]? TextIds(int row)
        {
            Check("text_ids", row);
            return textIds?[row];
        }
    }
}
