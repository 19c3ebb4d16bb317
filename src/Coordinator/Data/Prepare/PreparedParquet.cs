using System.Reflection;
using System.Text.Json;
using Parquet;
using Parquet.Schema;

namespace Qwen3Tts.Coordinator.Data.Prepare;

/// <summary>Writes prepared records as Hugging Face style Parquet, readable by <see cref="ParquetTrainingData"/>.
/// <list type="bullet">
/// <item>From Parquet: every column is copied as stored (values with their definition and repetition levels, so any
/// type, struct or list passes through unchanged, the audio struct included), one output row group per source row group,
/// with bad rows left out; then <c>audio_codes</c> (list&lt;list&lt;int64&gt;&gt;, replacing a source column of that name)
/// and, when the source has no <c>ref_audio</c>, a <c>ref_audio</c> audio struct {bytes, path} (the clip's bytes when the
/// source holds it inline, else its path relative to the output).</item>
/// <item>From JSONL or a clip folder: one column per field in first-seen order (string, int64, double or bool when every
/// value has that type, else the value's JSON text), <c>audio</c>/<c>ref_audio</c> paths made relative to the output,
/// then <c>audio_codes</c>.</item>
/// </list></summary>
static class PreparedParquet
{
    const int RowsPerGroup = 512;

    public static void Write(PrepareJob job, IReadOnlyList<PreparedItem> items, string tmp, string output)
    {
        var paths = new OutputPaths(output);
        using (var stream = new FileStream(tmp, FileMode.Create, FileAccess.ReadWrite))
        {
            if (job.Format == RawSpeechFormat.Parquet) CopyParquet(items, stream, paths).GetAwaiter().GetResult();
            else WriteRows(job, items, stream, paths).GetAwaiter().GetResult();
            stream.Flush(flushToDisk: true);
        }
    }

    static ListField CodesField(string name = "audio_codes") => new(name, new ListField("element", new DataField<long>("element")));

    static StructField RefField() => new("ref_audio", new DataField<byte[]>("bytes"), new DataField<string>("path"));

    static async Task CopyParquet(IReadOnlyList<PreparedItem> items, Stream stream, OutputPaths paths)
    {
        bool addRef = items.Any(x => x.AddedRef is not null);
        bool addRefCodes = items.Any(x => x.RefCodes is not null); // replaces a source ref_codes column
        ParquetSchema? schema = null;
        ParquetWriter? writer = null;
        try
        {
            foreach (var fileItems in items.GroupBy(x => x.Record.Source))
            {
                string file = fileItems.Key;
                var byRow = fileItems.ToDictionary(x => x.Record.Line - 1);
                await using var reader = await ParquetReader.CreateAsync(file);
                var keptFields = reader.Schema.Fields.Where(f => f.Name != "audio_codes" && !(addRefCodes && f.Name == "ref_codes")).ToList();
                var sourceLeaves = keptFields.SelectMany(Leaves).ToList();
                if (schema is null)
                {
                    schema = new ParquetSchema([.. keptFields, CodesField(), .. addRef ? [RefField()] : Array.Empty<Field>(),
                        .. addRefCodes ? [CodesField("ref_codes")] : Array.Empty<Field>()]);
                    writer = await ParquetWriter.CreateAsync(schema, stream);
                }
                var outLeaves = schema.GetDataFields();
                if (sourceLeaves.Count + 1 + (addRef ? 2 : 0) + (addRefCodes ? 1 : 0) != outLeaves.Length
                    || sourceLeaves.Zip(outLeaves).Any(p => p.First.Path.ToString() != p.Second.Path.ToString() || p.First.ClrType != p.Second.ClrType
                        || p.First.MaxDefinitionLevel != p.Second.MaxDefinitionLevel || p.First.MaxRepetitionLevel != p.Second.MaxRepetitionLevel))
                    throw new InvalidDataException($"{file}: its columns differ from {items[0].Record.Source}'s; the shards of one dataset share one schema");

                int first = 0;
                for (int g = 0; g < reader.RowGroupCount; g++)
                {
                    using var rg = reader.OpenRowGroupReader(g);
                    int rows = checked((int)rg.RowCount);
                    var kept = Enumerable.Range(0, rows).Select(r => byRow.TryGetValue(first + r, out var x) ? x : null).ToArray();
                    first += rows;
                    if (kept.All(x => x is null)) continue;
                    using var wg = writer!.CreateRowGroup();
                    for (int k = 0; k < sourceLeaves.Count; k++)
                        await CopyLeaf(rg, wg, sourceLeaves[k], outLeaves[k], kept, Path.GetDirectoryName(Path.GetFullPath(file))!, paths);
                    var rowsOut = kept.OfType<PreparedItem>().ToList();
                    await WriteCodes(wg, outLeaves[sourceLeaves.Count], rowsOut.Select(x => x.Codes).ToList());
                    if (addRef) await WriteRefStruct(wg, outLeaves[sourceLeaves.Count + 1], outLeaves[sourceLeaves.Count + 2], rowsOut, paths);
                    if (addRefCodes) await WriteCodes(wg, outLeaves[^1], rowsOut.Select(x => x.RefCodes).ToList());
                    wg.CompleteValidate();
                }
            }
        }
        finally
        {
            if (writer is not null) await writer.DisposeAsync();
        }
    }

    static IEnumerable<DataField> Leaves(Field field) => field switch
    {
        DataField d => [d],
        StructField s => s.Fields.SelectMany(Leaves),
        ListField l => Leaves(l.Item),
        MapField m => Leaves(m.Key).Concat(Leaves(m.Value)),
        _ => throw new InvalidDataException($"column {field.Path}: unsupported Parquet field kind {field.SchemaType}"),
    };

    static readonly MethodInfo CopyLeafOf = typeof(PreparedParquet).GetMethod(nameof(CopyLeafTyped), BindingFlags.NonPublic | BindingFlags.Static)!;

    /// <summary>Copies one leaf column's kept rows as stored, whatever its type.</summary>
    static Task CopyLeaf(ParquetRowGroupReader rg, ParquetRowGroupWriter wg, DataField from, DataField to, PreparedItem?[] kept, string sourceFolder, OutputPaths paths) =>
        (Task)CopyLeafOf.MakeGenericMethod(from.ClrType).Invoke(null, [rg, wg, from, to, kept, sourceFolder, paths])!;

    static async Task CopyLeafTyped<T>(ParquetRowGroupReader rg, ParquetRowGroupWriter wg, DataField from, DataField to, PreparedItem?[] kept,
        string sourceFolder, OutputPaths paths) where T : struct
    {
        int slots = checked((int)(rg.GetMetadata(from)?.MetaData?.NumValues ?? rg.RowCount));
        var values = new T[slots];
        var def = new int[slots];
        var rep = new int[slots];
        bool hasDef = from.MaxDefinitionLevel > 0, hasRep = from.MaxRepetitionLevel > 0;
        await rg.ReadRawAsync<T>(from, values, hasDef ? new Memory<int>(def) : (Memory<int>?)null, hasRep ? new Memory<int>(rep) : (Memory<int>?)null);

        // Keep the slots of kept rows (a row starts at repetition level 0) and the values they hold.
        var outValues = new List<T>(slots);
        var outDef = new List<int>(slots);
        var outRep = new List<int>(slots);
        int row = -1, v = 0;
        for (int s = 0; s < slots; s++)
        {
            if (!hasRep || rep[s] == 0) row++;
            bool present = !hasDef || def[s] == from.MaxDefinitionLevel;
            if (kept[row] is not null)
            {
                if (present) outValues.Add(values[v]);
                outDef.Add(def[s]);
                outRep.Add(rep[s]);
            }
            if (present) v++;
        }
        if (row != kept.Length - 1) throw new InvalidDataException($"column {from.Path}: {row + 1} rows where the row group has {kept.Length}");

        // A path that names a file beside the source is made relative to the output (an audio struct's path with bytes is only a name).
        if (outValues is List<ReadOnlyMemory<char>> strings && IsClipPath(from))
            for (int k = 0; k < strings.Count; k++)
                if (strings[k].ToString() is { Length: > 0 } p && File.Exists(Path.Combine(sourceFolder, p)))
                {
                    string full = Path.GetFullPath(Path.Combine(sourceFolder, p));
                    // A reference clip (read by training) is named under the output's folder; other paths keep their form.
                    if (from.Path.ToString() is "ref_audio" or "ref_audio/path") strings[k] = paths.Reference(full).AsMemory();
                    else if (!Path.IsPathRooted(p)) strings[k] = paths.Relative(full).AsMemory();
                }

        await wg.WriteAllPartsAsync<T>(to, outValues.ToArray(), hasDef ? outDef.ToArray() : (ReadOnlyMemory<int>?)null,
            hasRep ? outRep.ToArray() : (ReadOnlyMemory<int>?)null, default);
    }

    static bool IsClipPath(DataField field) => field.Path.ToString() is "audio" or "ref_audio" or "audio/path" or "ref_audio/path";

    /// <summary>audio_codes of each row: every frame and code present (levels at their maximum), repetition 0 at a row's
    /// first code, 1 at a frame's first code, 2 otherwise.</summary>
    /// <summary>A list&lt;list&lt;long&gt;&gt; column of [frames][codebooks] grids; a null grid is a null cell.</summary>
    static Task WriteCodes(ParquetRowGroupWriter wg, DataField leaf, IReadOnlyList<long[,]?> grids)
    {
        var values = new List<long>();
        var rep = new List<int>();
        var def = new List<int>();
        foreach (var codes in grids)
        {
            if (codes is null) { rep.Add(0); def.Add(0); continue; }
            for (int f = 0; f < codes.GetLength(0); f++)
                for (int q = 0; q < codes.GetLength(1); q++)
                {
                    values.Add(codes[f, q]);
                    rep.Add(f == 0 && q == 0 ? 0 : q == 0 ? 1 : 2);
                    def.Add(leaf.MaxDefinitionLevel);
                }
        }
        return wg.WriteAllPartsAsync<long>(leaf, values.ToArray(), def.ToArray(), rep.ToArray(), default);
    }

    /// <summary>The added ref_audio struct: bytes for an inline clip (path: its name), else path only.</summary>
    static async Task WriteRefStruct(ParquetRowGroupWriter wg, DataField bytesLeaf, DataField pathLeaf, IReadOnlyList<PreparedItem> rows, OutputPaths paths)
    {
        var clips = rows.Select(x => x.AddedRef!).ToList();
        var bytes = clips.Where(c => c.Bytes is not null).Select(c => (ReadOnlyMemory<byte>)c.Bytes!).ToArray();
        var bytesDef = clips.Select(c => c.Bytes is not null ? bytesLeaf.MaxDefinitionLevel : bytesLeaf.MaxDefinitionLevel - 1).ToArray();
        await wg.WriteAllPartsAsync<ReadOnlyMemory<byte>>(bytesLeaf, bytes, bytesDef, null, default);
        var names = clips.Select(c => c.Bytes is not null ? c.Name.Split(": ").Last() : paths.Relative(c.Path!)).ToList();
        await wg.WriteAllPartsAsync<ReadOnlyMemory<char>>(pathLeaf, names.Select(n => n.AsMemory()).ToArray(),
            Enumerable.Repeat(pathLeaf.MaxDefinitionLevel, names.Count).ToArray(), null, default);
    }

    enum Kind { None, String, Long, Double, Bool, Json }

    /// <summary>JSONL or clip-folder records as flat columns plus audio_codes, in row groups of <see cref="RowsPerGroup"/>.</summary>
    static async Task WriteRows(PrepareJob job, IReadOnlyList<PreparedItem> items, Stream stream, OutputPaths paths)
    {
        var rows = new List<List<(string Name, JsonElement Value)>>(items.Count);
        bool addRefCodes = items.Any(x => x.RefCodes is not null); // replaces a source ref_codes field
        if (job.Format == RawSpeechFormat.Jsonl)
        {
            string folder = PreparedJsonl.SourceFolder(job);
            foreach (var (_, line) in PreparedJsonl.SourceLines(job, items))
                rows.Add(line.EnumerateObject().Where(p => p.Name != "audio_codes" && !(p.Name == "ref_codes" && addRefCodes)).Select(p =>
                    (p.Name, p.Name is "audio" or "ref_audio" && p.Value.GetString() is { Length: > 0 } path && !Path.IsPathRooted(path)
                        ? Json(PreparedJsonl.Rebase(path, folder, paths))
                        : p.Value.Clone())).ToList());
        }
        else
            rows.AddRange(items.Select(x => new List<(string, JsonElement)> { ("audio", Json(paths.Relative(x.Record.Audio.Path!))), ("text", Json(x.Record.Text)) }));
        for (int r = 0; r < rows.Count; r++)
            if (items[r].AddedRef is { } clip) rows[r].Add(("ref_audio", Json(paths.Clip(clip))));

        var columns = new List<(string Name, Kind Kind)>();
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var row in rows)
            foreach (var (name, value) in row)
            {
                if (!index.TryGetValue(name, out int c)) { index[name] = c = columns.Count; columns.Add((name, Kind.None)); }
                columns[c] = (name, Merge(columns[c].Kind, KindOf(value)));
            }
        var fields = columns.Select(c => c.Kind switch
        {
            Kind.Long => (Field)new DataField<long?>(c.Name),
            Kind.Double => new DataField<double?>(c.Name),
            Kind.Bool => new DataField<bool?>(c.Name),
            _ => new DataField<string>(c.Name),
        }).ToList();
        var schema = new ParquetSchema([.. fields, CodesField(), .. addRefCodes ? [CodesField("ref_codes")] : Array.Empty<Field>()]);
        var leaves = schema.GetDataFields();

        await using var writer = await ParquetWriter.CreateAsync(schema, stream);
        for (int start = 0; start < rows.Count; start += RowsPerGroup)
        {
            var chunk = Enumerable.Range(start, Math.Min(RowsPerGroup, rows.Count - start)).ToList();
            using var wg = writer.CreateRowGroup();
            for (int c = 0; c < columns.Count; c++)
            {
                var cells = chunk.Select(r => rows[r].Where(p => p.Name == columns[c].Name).Select(p => (JsonElement?)p.Value).FirstOrDefault())
                    .Select(v => v is { ValueKind: not JsonValueKind.Null } e ? e : (JsonElement?)null).ToList();
                var def = cells.Select(v => v is null ? 0 : 1).ToArray();
                var leaf = leaves[c];
                switch (columns[c].Kind)
                {
                    case Kind.Long:
                        await wg.WriteAllPartsAsync<long>(leaf, cells.OfType<JsonElement>().Select(e => e.GetInt64()).ToArray(), def, null, default);
                        break;
                    case Kind.Double:
                        await wg.WriteAllPartsAsync<double>(leaf, cells.OfType<JsonElement>().Select(e => e.GetDouble()).ToArray(), def, null, default);
                        break;
                    case Kind.Bool:
                        await wg.WriteAllPartsAsync<bool>(leaf, cells.OfType<JsonElement>().Select(e => e.GetBoolean()).ToArray(), def, null, default);
                        break;
                    default:
                        bool text = columns[c].Kind == Kind.String;
                        await wg.WriteAllPartsAsync<ReadOnlyMemory<char>>(leaf,
                            cells.OfType<JsonElement>().Select(e => (text ? e.GetString()! : e.GetRawText()).AsMemory()).ToArray(), def, null, default);
                        break;
                }
            }
            await WriteCodes(wg, leaves[columns.Count], chunk.Select(r => items[r].Codes).ToList());
            if (addRefCodes) await WriteCodes(wg, leaves[^1], chunk.Select(r => items[r].RefCodes).ToList());
            wg.CompleteValidate();
        }
    }

    static JsonElement Json(string s) => JsonSerializer.SerializeToElement(s);

    static Kind KindOf(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Null => Kind.None,
        JsonValueKind.String => Kind.String,
        JsonValueKind.Number => e.TryGetInt64(out _) ? Kind.Long : Kind.Double,
        JsonValueKind.True or JsonValueKind.False => Kind.Bool,
        _ => Kind.Json,
    };

    static Kind Merge(Kind a, Kind b) => (a, b) switch
    {
        _ when a == b => a,
        (Kind.None, _) => b,
        (_, Kind.None) => a,
        (Kind.Long, Kind.Double) or (Kind.Double, Kind.Long) => Kind.Double,
        _ => Kind.Json,
    };
}
