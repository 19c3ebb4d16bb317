using Parquet;
using Parquet.Schema;

namespace Qwen3Tts.Coordinator.Data;

/// <summary>A column whose Parquet type does not fit what the reader expects; reported on every row that needs it.</summary>
sealed class ColumnTypeException(string message) : Exception(message);

/// <summary>Decodes one row group's columns into per-row cells from Parquet's raw form: packed non-null values plus
/// definition and repetition levels. Parquet.Net's raw read is used because its typed string read returns stale
/// values for null cells of a page that holds no values.
/// <para>Levels of <c>list&lt;list&lt;int&gt;&gt;</c> as Arrow writes it (every level optional): definition 0 = the list is
/// null, 1 = empty, 2 = a null frame, 3 = an empty frame, 4 = a null code, 5 = a code; repetition 0 = a new row,
/// 1 = a new frame, 2 = the next code of the frame. Thresholds are taken from the schema, so required levels work too.</para></summary>
static class ParquetColumns
{
    /// <summary>A leaf column: <see cref="Values"/> holds only the non-null values, in order; <see cref="Def"/> and
    /// <see cref="Rep"/> have one entry per slot.</summary>
    sealed record Leaf<T>(T[] Values, int[] Def, int[] Rep, int MaxDef, int Count);

    static async Task<Leaf<T>> ReadLeafAsync<T>(ParquetRowGroupReader rg, DataField field) where T : struct
    {
        if (!rg.ColumnExists(field)) throw new ColumnTypeException($"the row group has no data for {field.Path}");
        int count = checked((int)(rg.GetMetadata(field)?.MetaData?.NumValues ?? rg.RowCount));
        var values = new T[count];
        var def = new int[count];
        var rep = new int[count];
        // A level buffer only where the column has such levels; a bare null would convert to an empty Memory, not to no buffer.
        await rg.ReadRawAsync<T>(field, values,
            field.MaxDefinitionLevel > 0 ? new Memory<int>(def) : (Memory<int>?)null,
            field.MaxRepetitionLevel > 0 ? new Memory<int>(rep) : (Memory<int>?)null);
        return new Leaf<T>(values, def, rep, field.MaxDefinitionLevel, count);
    }

    public static bool IsString(DataField field) => field.ClrType == typeof(ReadOnlyMemory<char>) || field.ClrType == typeof(string);

    static bool IsBinary(DataField field) => field.ClrType == typeof(ReadOnlyMemory<byte>) || field.ClrType == typeof(byte[]);

    public static string Describe(Field field) => field switch
    {
        DataField d => $"{d.ClrType.Name}{(d.MaxRepetitionLevel > 0 ? " (repeated)" : "")}",
        ListField l => $"list<{Describe(l.Item)}>",
        StructField s => $"struct<{string.Join(", ", s.Fields.Select(f => $"{f.Name}: {Describe(f)}"))}>",
        _ => field.SchemaType.ToString(),
    };

    /// <summary>One string per row; null where the row has none.</summary>
    public static async Task<string?[]> StringsAsync(ParquetRowGroupReader rg, DataField field, int rows)
    {
        var leaf = await ReadLeafAsync<ReadOnlyMemory<char>>(rg, field);
        return Flat(leaf, rows, v => v.ToString(), field);
    }

    static T?[] Flat<TValue, T>(Leaf<TValue> leaf, int rows, Func<TValue, T> convert, Field field) where T : class
    {
        if (leaf.Count != rows) throw new ColumnTypeException($"{field.Path} has {leaf.Count} values for {rows} rows");
        var cells = new T?[rows];
        for (int i = 0, v = 0; i < rows; i++)
            if (leaf.Def[i] == leaf.MaxDef) cells[i] = convert(leaf.Values[v++]);
        return cells;
    }

    /// <summary>Audio cells of a plain path column or of the Hugging Face audio struct {bytes: binary, path: string};
    /// null where the struct (or string) is null.</summary>
    public static async Task<(byte[]? Bytes, string? Path, bool Present)[]> AudioPartsAsync(ParquetRowGroupReader rg, Field field, int rows)
    {
        var cells = new (byte[]? Bytes, string? Path, bool Present)[rows];
        switch (field)
        {
            case DataField { MaxRepetitionLevel: 0 } d when IsString(d):
            {
                var paths = await StringsAsync(rg, d, rows);
                for (int i = 0; i < rows; i++) cells[i] = (null, paths[i], paths[i] is not null);
                return cells;
            }
            case StructField s:
            {
                var bytesField = s.Fields.OfType<DataField>().FirstOrDefault(f => f.Name == "bytes" && f.MaxRepetitionLevel == 0 && IsBinary(f));
                var pathField = s.Fields.OfType<DataField>().FirstOrDefault(f => f.Name == "path" && f.MaxRepetitionLevel == 0 && IsString(f));
                if (bytesField is null && pathField is null)
                    throw new ColumnTypeException($"expected the audio struct {{bytes: binary, path: string}}, found {Describe(field)}");
                if (bytesField is not null)
                {
                    var leaf = await ReadLeafAsync<ReadOnlyMemory<byte>>(rg, bytesField);
                    var bytes = Flat(leaf, rows, v => v.ToArray(), bytesField);
                    for (int i = 0; i < rows; i++) cells[i] = (bytes[i], null, leaf.Def[i] >= s.MaxDefinitionLevel);
                }
                if (pathField is not null)
                {
                    var leaf = await ReadLeafAsync<ReadOnlyMemory<char>>(rg, pathField);
                    var paths = Flat(leaf, rows, v => v.ToString(), pathField);
                    for (int i = 0; i < rows; i++) cells[i] = (cells[i].Bytes, paths[i], leaf.Def[i] >= s.MaxDefinitionLevel);
                }
                return cells;
            }
            default:
                throw new ColumnTypeException($"expected a path string or the audio struct {{bytes: binary, path: string}}, found {Describe(field)}");
        }
    }

    /// <summary>Integer leaves of any width, widened to long.</summary>
    static async Task<Leaf<long>> IntsAsync(ParquetRowGroupReader rg, DataField field)
    {
        static Leaf<long> Widen<T>(Leaf<T> l, Func<T, long> f) => new(Array.ConvertAll(l.Values, v => f(v)), l.Def, l.Rep, l.MaxDef, l.Count);
        var t = field.ClrType;
        if (t == typeof(int)) return Widen(await ReadLeafAsync<int>(rg, field), v => v);
        if (t == typeof(long)) return await ReadLeafAsync<long>(rg, field);
        if (t == typeof(short)) return Widen(await ReadLeafAsync<short>(rg, field), v => v);
        if (t == typeof(sbyte)) return Widen(await ReadLeafAsync<sbyte>(rg, field), v => v);
        if (t == typeof(byte)) return Widen(await ReadLeafAsync<byte>(rg, field), v => v);
        if (t == typeof(ushort)) return Widen(await ReadLeafAsync<ushort>(rg, field), v => v);
        if (t == typeof(uint)) return Widen(await ReadLeafAsync<uint>(rg, field), v => v);
        throw new ColumnTypeException($"expected integers, found {t.Name}");
    }

    /// <summary>list&lt;int&gt; per row; null where the list is null.</summary>
    public static async Task<long?[]?[]> ListAsync(ParquetRowGroupReader rg, Field field, int rows)
    {
        if (field is not ListField { Item: DataField item } list)
            throw new ColumnTypeException($"expected list<int>, found {Describe(field)}");
        var leaf = await IntsAsync(rg, item);
        var cells = new long?[]?[rows];
        List<long?>? current = null;
        int row = -1, v = 0;
        void Close() { if (current is not null) cells[row] = [.. current]; }
        for (int i = 0; i < leaf.Count; i++)
        {
            int d = leaf.Def[i];
            if (leaf.Rep[i] == 0)
            {
                Close();
                row++;
                current = null;
                if (d < list.MaxDefinitionLevel)
                {
                    cells[row] = list.IsNullable && d < list.MaxDefinitionLevel - 1 ? null : [];
                    continue;
                }
                current = [];
            }
            current!.Add(d == leaf.MaxDef ? leaf.Values[v++] : null);
        }
        Close();
        if (row != rows - 1) throw new ColumnTypeException($"{field.Path} has {row + 1} rows, the row group {rows}");
        return cells;
    }

    /// <summary>list&lt;list&lt;int&gt;&gt; per row ([frame][code]); null where a list is null.</summary>
    public static async Task<long?[]?[]?[]> ListOfListsAsync(ParquetRowGroupReader rg, Field field, int rows)
    {
        if (field is not ListField { Item: ListField { Item: DataField item } inner } outer)
            throw new ColumnTypeException($"expected list<list<int>> ([frames][codebooks]), found {Describe(field)}");
        var leaf = await IntsAsync(rg, item);
        var cells = new long?[]?[]?[rows];
        List<long?[]?>? frames = null;
        List<long?>? frame = null;
        int row = -1, v = 0;
        void CloseFrame() { if (frame is not null) frames![^1] = [.. frame]; frame = null; }
        void CloseRow() { CloseFrame(); if (frames is not null) cells[row] = [.. frames]; frames = null; }
        for (int i = 0; i < leaf.Count; i++)
        {
            int d = leaf.Def[i], r = leaf.Rep[i];
            if (r == 0)
            {
                CloseRow();
                row++;
                if (d < outer.MaxDefinitionLevel)
                {
                    cells[row] = outer.IsNullable && d < outer.MaxDefinitionLevel - 1 ? null : [];
                    continue;
                }
                frames = [];
            }
            if (r <= 1)
            {
                CloseFrame();
                if (d < inner.MaxDefinitionLevel)
                {
                    frames!.Add(inner.IsNullable && d < inner.MaxDefinitionLevel - 1 ? null : []);
                    continue;
                }
                frames!.Add(null); // filled by CloseFrame
                frame = [];
            }
            frame!.Add(d == leaf.MaxDef ? leaf.Values[v++] : null);
        }
        CloseRow();
        if (row != rows - 1) throw new ColumnTypeException($"{field.Path} has {row + 1} rows, the row group {rows}");
        return cells;
    }
}
