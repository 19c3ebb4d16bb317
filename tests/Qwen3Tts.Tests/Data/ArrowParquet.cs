using Apache.Arrow;
using Apache.Arrow.Types;
using ArrowField = Apache.Arrow.Field;
using ArrowSchema = Apache.Arrow.Schema;

namespace Qwen3Tts.Tests.Data;

/// <summary>A row in the Hugging Face layouts, as the independent writer takes it. Audio columns are a path string
/// (<see cref="AudioPath"/> set, <see cref="AsStruct"/> false) or the audio struct {bytes, path}.</summary>
sealed record AudioValue(byte[]? Bytes, string? Path, bool AsStruct);

sealed record ParquetRow(
    string? Text = null,
    long?[]?[]? Codes = null,
    AudioValue? RefAudio = null,
    AudioValue? Audio = null,
    string? RefText = null,
    string? Language = null,
    string? SpeakerId = null,
    string? Gender = null,
    string? AgeRange = null,
    int[]? TextIds = null);

/// <summary>Writes Parquet with Apache Arrow's C++ writer (ParquetSharp), as Hugging Face <c>datasets</c> does with pyarrow:
/// audio_codes as list&lt;list&lt;int32 or int64&gt;&gt;, audio as struct {bytes: binary, path: string}, strings as utf8.
/// Independent of Parquet.Net, which the reader under test uses.</summary>
static class ArrowParquet
{
    static readonly StructType AudioStruct = new([new ArrowField("bytes", BinaryType.Default, true), new ArrowField("path", StringType.Default, true)]);

    /// <summary>Writes <paramref name="rows"/> in row groups of at most <paramref name="rowGroupSize"/>. Columns in
    /// <paramref name="omit"/> are left out; audio columns take their kind (string or struct) from the first row that has one.</summary>
    public static void Write(string path, IReadOnlyList<ParquetRow> rows, int rowGroupSize = 1024, bool int64Codes = false,
        IReadOnlySet<string>? omit = null)
    {
        omit ??= new HashSet<string>();
        var fields = new List<ArrowField>();
        var arrays = new List<IArrowArray>();
        void Add(string name, IArrowType type, IArrowArray array)
        {
            if (omit.Contains(name)) return;
            fields.Add(new ArrowField(name, type, true));
            arrays.Add(array);
        }

        Add("text", StringType.Default, Strings(rows.Select(r => r.Text)));
        var codeType = int64Codes ? (IArrowType)Int64Type.Default : Int32Type.Default;
        Add("audio_codes", new ListType(new ListType(codeType)), Codes(rows, codeType));
        AddAudio("ref_audio", rows.Select(r => r.RefAudio).ToList());
        AddAudio("audio", rows.Select(r => r.Audio).ToList());
        Add("ref_text", StringType.Default, Strings(rows.Select(r => r.RefText)));
        Add("language", StringType.Default, Strings(rows.Select(r => r.Language)));
        Add("speaker_id", StringType.Default, Strings(rows.Select(r => r.SpeakerId)));
        Add("gender", StringType.Default, Strings(rows.Select(r => r.Gender)));
        Add("age_range", StringType.Default, Strings(rows.Select(r => r.AgeRange)));
        if (rows.Any(r => r.TextIds is not null)) Add("text_ids", new ListType(Int32Type.Default), TextIds(rows));

        void AddAudio(string name, List<AudioValue?> values)
        {
            if (values.All(v => v is null)) return;
            if (values.First(v => v is not null)!.AsStruct) Add(name, AudioStruct, Audio(values));
            else Add(name, StringType.Default, Strings(values.Select(v => v?.Path)));
        }

        var schema = new ArrowSchema(fields, null);
        using var batch = new RecordBatch(schema, arrays, rows.Count);
        using var writer = new ParquetSharp.Arrow.FileWriter(path, schema);
        writer.WriteRecordBatch(batch, rowGroupSize);
        writer.Close();
    }

    static StringArray Strings(IEnumerable<string?> values)
    {
        var b = new StringArray.Builder();
        foreach (var v in values)
            if (v is null) b.AppendNull(); else b.Append(v);
        return b.Build();
    }

    static ListArray Codes(IReadOnlyList<ParquetRow> rows, IArrowType codeType)
    {
        var outer = new ListArray.Builder(new ListType(codeType));
        var inner = (ListArray.Builder)outer.ValueBuilder;
        var int32 = inner.ValueBuilder as Int32Array.Builder;
        var int64 = inner.ValueBuilder as Int64Array.Builder;
        foreach (var row in rows)
        {
            if (row.Codes is null) { outer.AppendNull(); continue; }
            outer.Append();
            foreach (var frame in row.Codes)
            {
                if (frame is null) { inner.AppendNull(); continue; }
                inner.Append();
                foreach (var code in frame)
                {
                    if (code is null) { if (int32 is not null) int32.AppendNull(); else int64!.AppendNull(); }
                    else if (int32 is not null) int32.Append((int)code.Value);
                    else int64!.Append(code.Value);
                }
            }
        }
        return outer.Build();
    }

    static ListArray TextIds(IReadOnlyList<ParquetRow> rows)
    {
        var list = new ListArray.Builder(Int32Type.Default);
        var ids = (Int32Array.Builder)list.ValueBuilder;
        foreach (var row in rows)
        {
            if (row.TextIds is null) { list.AppendNull(); continue; }
            list.Append();
            foreach (int id in row.TextIds) ids.Append(id);
        }
        return list.Build();
    }

    static StructArray Audio(List<AudioValue?> values)
    {
        var bytes = new BinaryArray.Builder();
        var paths = new StringArray.Builder();
        var valid = new ArrowBuffer.BitmapBuilder();
        foreach (var v in values)
        {
            valid.Append(v is not null);
            if (v?.Bytes is null) bytes.AppendNull(); else bytes.Append(v.Bytes.AsSpan());
            if (v?.Path is null) paths.AppendNull(); else paths.Append(v.Path);
        }
        int nulls = values.Count(v => v is null);
        return new StructArray(AudioStruct, values.Count, [bytes.Build(), paths.Build()], valid.Build(), nulls);
    }

    /// <summary>A raw audio dataset (e.g. vaghawan/hausa-tts-22k): audio struct, text, speaker_id, language, gender,
    /// age_range, plus any extra string columns.</summary>
    public static void WriteRaw(string path, IReadOnlyList<(AudioValue? Audio, string? Text, string? Speaker, string? Language, string? Gender, string? Age)> rows,
        int rowGroupSize = 1024, IReadOnlyDictionary<string, string?[]>? extra = null)
    {
        var fields = new List<ArrowField>
        {
            new("audio", AudioStruct, true), new("text", StringType.Default, true), new("speaker_id", StringType.Default, true),
            new("language", StringType.Default, true), new("gender", StringType.Default, true), new("age_range", StringType.Default, true),
        };
        var arrays = new List<IArrowArray>
        {
            Audio(rows.Select(r => r.Audio).ToList()), Strings(rows.Select(r => r.Text)), Strings(rows.Select(r => r.Speaker)),
            Strings(rows.Select(r => r.Language)), Strings(rows.Select(r => r.Gender)), Strings(rows.Select(r => r.Age)),
        };
        foreach (var (name, values) in extra ?? new Dictionary<string, string?[]>())
        {
            fields.Add(new ArrowField(name, StringType.Default, true));
            arrays.Add(Strings(values));
        }
        var schema = new ArrowSchema(fields, null);
        using var batch = new RecordBatch(schema, arrays, rows.Count);
        using var writer = new ParquetSharp.Arrow.FileWriter(path, schema);
        writer.WriteRecordBatch(batch, rowGroupSize);
        writer.Close();
    }
}
