using System.Text.Json.Nodes;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Rank.Training;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Data;

/// <summary>Hugging Face Parquet, written by an independent writer (Apache Arrow C++ through ParquetSharp), read back
/// to exactly the records written; JSONL and Parquet giving the same records and the same trained model; malformed
/// rows named by file, row and column; and the dataset summary behind <c>qwen3tts info</c>.</summary>
public class ParquetTrainingDataTests : CleansTempDirs
{
    readonly string dir = TestPaths.NewTempDir("parquet");
    static readonly string DemoDir = Path.Combine(TestPaths.RepoRoot, "assets", "demo");

    /// <summary>codes[f][g] = (7 f + g + seed) mod 2048.</summary>
    static long?[]?[] Codes(int frames, int seed = 0, int width = 16) =>
        Enumerable.Range(0, frames).Select(f => Enumerable.Range(0, width).Select(g => (long?)((7 * f + g + seed) % 2048)).ToArray()).ToArray<long?[]?>();

    static void AssertCodes(long?[]?[] expected, CodeGrid actual)
    {
        Assert.Equal(expected.Length, actual.Frames);
        Assert.Equal(16, actual.Codebooks);
        for (int f = 0; f < actual.Frames; f++)
            for (int g = 0; g < 16; g++)
                Assert.Equal(expected[f]![g], actual[f, g]);
    }

    /// <summary>Every field but Source (the JSONL and the Parquet file differ in name only).</summary>
    static void AssertSameRecord(TrainingRecord expected, TrainingRecord actual)
    {
        Assert.Equal(expected.Line, actual.Line);
        Assert.Equal(expected.Audio, actual.Audio);
        Assert.Equal(expected.Text, actual.Text);
        Assert.Equal(expected.AudioCodes.ToArray(), actual.AudioCodes.ToArray());
        Assert.Equal(expected.RefAudio, actual.RefAudio);
        Assert.Equal(expected.RefText, actual.RefText);
        Assert.Equal(expected.Language, actual.Language);
        Assert.Equal(expected.SpeakerId, actual.SpeakerId);
        Assert.Equal(expected.Gender, actual.Gender);
        Assert.Equal(expected.AgeRange, actual.AgeRange);
        Assert.Equal(expected.TextIds, actual.TextIds);
        Assert.Equal(expected.RefAudioBytes, actual.RefAudioBytes);
    }

    static AudioValue PathValue(string path) => new(null, path, AsStruct: false);

    string Touch(string relative)
    {
        string path = Path.Combine(dir, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, [0]);
        return path;
    }

    static ParquetRow Row(int i, string refAudio = "ref.wav") => new(
        Text: $"utterance {i}",
        Codes: Codes(2 + i, seed: i),
        RefAudio: PathValue(refAudio),
        Audio: PathValue($"wavs/{i}.wav"),
        Language: i % 2 == 0 ? "Hausa" : null,
        SpeakerId: $"spk{i % 3}",
        Gender: i % 2 == 0 ? "female" : "male",
        AgeRange: i == 1 ? null : "adult",
        RefText: i == 2 ? "reference words" : null,
        TextIds: i == 3 ? [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11] : null);

    static void AssertRow(ParquetRow row, TrainingRecord r, string folder)
    {
        Assert.Equal(row.Text, r.Text);
        AssertCodes(row.Codes!, r.AudioCodes);
        Assert.Equal(Path.GetFullPath(Path.Combine(folder, row.RefAudio!.Path!)), r.RefAudio);
        Assert.Equal(row.Audio?.Path ?? "", r.Audio);
        Assert.Equal(row.Language, r.Language);
        Assert.Equal(row.SpeakerId, r.SpeakerId);
        Assert.Equal(row.Gender, r.Gender);
        Assert.Equal(row.AgeRange, r.AgeRange);
        Assert.Equal(row.RefText, r.RefText);
        Assert.Equal(row.TextIds, r.TextIds);
        Assert.Null(r.RefAudioBytes);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)] // Python ints become int64 in datasets' Arrow tables
    public void Prepared_records_in_several_row_groups_read_back_exactly(bool int64Codes)
    {
        Touch("ref.wav");
        var rows = Enumerable.Range(0, 7).Select(i => Row(i)).ToList();
        string path = Path.Combine(dir, "train-00000-of-00001.parquet");
        ArrowParquet.Write(path, rows, rowGroupSize: 3, int64Codes: int64Codes);
        using (var file = new ParquetSharp.ParquetFileReader(path)) Assert.Equal(3, file.FileMetaData.NumRowGroups);

        var records = ParquetTrainingData.Read(path, skipBad: false, out var skipped);

        Assert.Empty(skipped);
        Assert.Equal(rows.Count, records.Count);
        for (int i = 0; i < rows.Count; i++)
        {
            Assert.Equal(path, records[i].Source);
            Assert.Equal(i + 1, records[i].Line); // row index + 1, across row groups
            AssertRow(rows[i], records[i], dir);
        }
        Assert.Equal($"{path}: row 4", records[4].Where);
    }

    [Fact]
    public void A_folder_of_shards_reads_in_name_order_and_a_split_picks_its_shards()
    {
        Touch("ref.wav");
        var rows = Enumerable.Range(0, 5).Select(i => Row(i, "../../ref.wav")).ToList();
        string shards = Path.Combine(dir, "ds");
        Directory.CreateDirectory(Path.Combine(shards, "data"));
        // written out of order, to check the sort; HF puts shards under data/
        ArrowParquet.Write(Path.Combine(shards, "data", "train-00001-of-00002.parquet"), rows[3..], rowGroupSize: 1);
        ArrowParquet.Write(Path.Combine(shards, "data", "train-00000-of-00002.parquet"), rows[..3], rowGroupSize: 2);
        ArrowParquet.Write(Path.Combine(shards, "data", "test-00000-of-00001.parquet"), [Row(9, "../../ref.wav")]);

        var records = TrainingData.Read(shards, skipBad: false, out _); // several splits: train by default
        Assert.Equal(5, records.Count);
        for (int i = 0; i < 5; i++) AssertRow(rows[i], records[i], Path.Combine(shards, "data"));
        Assert.Equal([1, 2, 3, 1, 2], records.Select(r => r.Line));
        Assert.EndsWith("train-00001-of-00002.parquet", records[3].Source);

        var test = TrainingData.Read(shards, skipBad: false, out _, split: "test");
        Assert.Equal("utterance 9", Assert.Single(test).Text);
        var e = Assert.Throws<ArgumentException>(() => TrainingData.Read(shards, false, out _, split: "validation"));
        Assert.Contains("no 'validation-*.parquet' shards", e.Message);
    }

    [Fact]
    public void A_raw_hf_audio_dataset_reads_as_raw_audio_records()
    {
        byte[] wav = File.ReadAllBytes(Path.Combine(DemoDir, "ref_voice.wav"));
        string path = Path.Combine(dir, "train-00000-of-00001.parquet");
        ArrowParquet.WriteRaw(path,
        [
            (new AudioValue(wav, "hausa_0001.wav", true), "Sannu da zuwa.", "spk1", "hausa", "female", "18-25"),
            (new AudioValue(null, "clips/b.wav", true), "Ina kwana?", "spk2", "hausa", "male", null),
            (new AudioValue([1, 2, 3], null, true), "Na gode.", null, null, null, null),
        ], rowGroupSize: 2, extra: new Dictionary<string, string?[]> { ["domain"] = ["news", null, "chat"] });

        Assert.Equal(ParquetLayout.RawAudio, ParquetTrainingData.Layout(path));
        var rows = ParquetTrainingData.ReadRaw(path, skipBad: false, out var skipped);

        Assert.Empty(skipped);
        Assert.Equal(3, rows.Count);
        Assert.Equal(new RawAudioRecord(path, 0, rows[0].AudioBytes, "hausa_0001.wav", "Sannu da zuwa.", "hausa", "spk1", "female", "18-25", rows[0].Extra), rows[0]);
        Assert.Equal(wav, rows[0].AudioBytes);
        Assert.Equal("news", rows[0].Extra!["domain"]);
        Assert.Null(rows[1].AudioBytes);
        Assert.Equal("clips/b.wav", rows[1].AudioPath);
        Assert.Null(rows[1].AgeRange);
        Assert.Equal(2, rows[2].RowIndex);
        Assert.Equal([1, 2, 3], rows[2].AudioBytes);
        Assert.Null(rows[2].AudioPath);
        Assert.Null(rows[2].SpeakerId);
        Assert.Equal("chat", rows[2].Extra!["domain"]);

        // Training needs codec ids: the error says so instead of a missing-column message per row.
        var e = Assert.Throws<InvalidDataException>(() => TrainingData.Read(path, false, out _));
        Assert.Contains("raw audio dataset", e.Message);
    }

    static (string Jsonl, IReadOnlyList<TrainingRecord> Records) DemoJsonl(string folder)
    {
        File.Copy(Path.Combine(DemoDir, "ref_voice.wav"), Path.Combine(folder, "ref_voice.wav"));
        string jsonl = Path.Combine(folder, "train.jsonl");
        File.Copy(Path.Combine(DemoDir, "train.jsonl"), jsonl);
        return (jsonl, JsonlTrainingData.Read(jsonl));
    }

    /// <summary>The demo records as prepared Parquet; ref_audio the same relative path, or the clip's bytes inline.</summary>
    static void WriteDemoParquet(string path, IReadOnlyList<TrainingRecord> records, byte[]? inlineRef = null) =>
        ArrowParquet.Write(path, records.Select(r => new ParquetRow(
            Text: r.Text,
            Codes: Enumerable.Range(0, r.AudioCodes.Frames).Select(f => Enumerable.Range(0, 16).Select(g => (long?)r.AudioCodes[f, g]).ToArray()).ToArray<long?[]?>(),
            RefAudio: inlineRef is null ? PathValue(Path.GetFileName(r.RefAudio)) : new AudioValue(inlineRef, "ref_voice.wav", AsStruct: true),
            Audio: PathValue(r.Audio),
            RefText: r.RefText, Language: r.Language, SpeakerId: r.SpeakerId, Gender: r.Gender, AgeRange: r.AgeRange,
            TextIds: r.TextIds?.ToArray())).ToList(), rowGroupSize: 5);

    [Fact]
    public void The_same_records_in_jsonl_and_parquet_read_equal_and_train_the_identical_model()
    {
        var (jsonl, expected) = DemoJsonl(dir);
        string parquet = Path.Combine(dir, "train.parquet");
        WriteDemoParquet(parquet, expected);
        string inline = Path.Combine(TestPaths.NewTempDir("inline"), "train.parquet"); // no clip file beside it
        byte[] clip = File.ReadAllBytes(Path.Combine(dir, "ref_voice.wav"));
        WriteDemoParquet(inline, expected, inlineRef: clip);

        var fromJsonl = TrainingData.Read(jsonl, false, out _);
        var fromParquet = TrainingData.Read(parquet, false, out _);
        var fromInline = TrainingData.Read(inline, false, out _);
        Assert.Equal(16, fromParquet.Count);
        for (int i = 0; i < fromJsonl.Count; i++)
        {
            AssertSameRecord(fromJsonl[i], fromParquet[i]);
            Assert.Equal(clip, fromInline[i].RefAudioBytes);
            Assert.Equal("ref_voice.wav", fromInline[i].RefAudio);
            AssertSameRecord(fromJsonl[i] with { RefAudio = "ref_voice.wav", RefAudioBytes = clip }, fromInline[i]);
        }
        // The clip repeated on all 16 rows (4 row groups) is held once in memory, not once per row.
        Assert.All(fromInline, r => Assert.Same(fromInline[0].RefAudioBytes, r.RefAudioBytes));
        // the inline clip decodes to the file's samples
        Assert.Equal(Resampler.LoadMono24k(fromJsonl[0].RefAudio).Samples, SftSampleBuilder.LoadMono24k(fromInline[0]));

        string model = TestPaths.NewTempDir("model");
        ModelDirectory.CreateRandom(model, "tiny", 3, ScalarType.Float32);
        byte[] Train(string data)
        {
            string output = TestPaths.NewTempDir("out");
            var o = new TrainingOptions
            {
                TrainData = data, InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32", LoggingSteps = 1000,
                NumEpochs = 1, WarmupSteps = 0, LrScheduler = "constant", BatchSize = 2, GradientAccumulationSteps = 1, Lr = 1e-3,
            };
            new Trainer(o, TextWriter.Null) { StopAfterSteps = 3 }.Run();
            return File.ReadAllBytes(Path.Combine(output, "last", "model.safetensors"));
        }
        byte[] a = Train(jsonl);
        Assert.Equal(a, Train(parquet));
        Assert.Equal(a, Train(inline));
    }

    string WriteBad(out List<ParquetRow> rows, IReadOnlySet<string>? omit = null)
    {
        Touch("ref.wav");
        rows = Enumerable.Range(0, 6).Select(i => Row(i)).ToList();
        var wide = Codes(4);
        wide[3] = wide[3]![..15];
        var outOfRange = Codes(3);
        outOfRange[1]![5] = 2048;
        rows[1] = rows[1] with { Codes = outOfRange };
        rows[3] = rows[3] with { Codes = wide };
        rows[4] = rows[4] with { Text = null };
        string path = Path.Combine(dir, "train-00001-of-00004.parquet");
        ArrowParquet.Write(path, rows, rowGroupSize: 4, omit: omit);
        return path;
    }

    [Fact]
    public void Malformed_rows_name_file_row_and_column()
    {
        string path = WriteBad(out _);
        var e = Assert.Throws<DataException>(() => ParquetTrainingData.Read(path, skipBad: false, out _));
        Assert.Equal($"{path}: row 1: audio_codes[1][5]: is 2048, outside codebook 5's range [0, 2048)", e.Bad.ToString());
        Assert.Equal($"{path}: 3 records cannot be used; {Refusals.SkipHint}", e.Message);
        Assert.Equal(2, e.Bad.Line);
    }

    [Fact]
    public void Skip_bad_leaves_out_malformed_rows_and_lists_each()
    {
        string path = WriteBad(out var rows);
        var records = TrainingData.Read(path, skipBad: true, out var skipped);

        Assert.Equal([0, 2, 5], records.Select(r => r.Line - 1));
        Assert.Equal(
        [
            $"{path}: row 1: audio_codes[1][5]: is 2048, outside codebook 5's range [0, 2048)",
            $"{path}: row 3: audio_codes[3]: expected 16 codebooks, found 15",
            $"{path}: row 4: text: missing required field (null)",
        ], skipped.Select(b => b.ToString()));
        Assert.Equal([2, 4, 5], skipped.Select(b => b.Line));

        // the existing skip report takes Parquet rows as they are (line = row + 1)
        string report = Path.Combine(dir, "skipped.jsonl");
        JsonlTrainingData.WriteSkipReport(report, skipped);
        var first = JsonNode.Parse(File.ReadLines(report).First())!;
        Assert.Equal(2, (int)first["line"]!);
        Assert.Equal("audio_codes[1][5]", (string)first["field"]!);
    }

    [Fact]
    public void A_missing_required_column_is_named_on_every_row()
    {
        string path = WriteBad(out _, omit: new HashSet<string> { "audio_codes" });
        var e = Assert.Throws<DataException>(() => ParquetTrainingData.Read(path, skipBad: false, out _));
        Assert.Equal($"{path}: row 0: audio_codes: missing required field (the file has no such column)", e.Bad.ToString());

        path = WriteBad(out _, omit: new HashSet<string> { "ref_audio" });
        ParquetTrainingData.Read(path, skipBad: true, out var skipped);
        // each row reports its first problem, checked in column order text, audio_codes, ref_audio
        Assert.Equal(["ref_audio", "audio_codes[1][5]", "ref_audio", "audio_codes[3]", "text", "ref_audio"], skipped.Select(b => b.Field));
    }

    [Fact]
    public void Null_frames_codes_and_lists_are_reported_not_dropped()
    {
        Touch("ref.wav");
        var nullFrame = Codes(3);
        nullFrame[2] = null;
        var nullCode = Codes(2);
        nullCode[0]![7] = null;
        var rows = new List<ParquetRow>
        {
            Row(0) with { Codes = nullFrame },
            Row(1) with { Codes = nullCode },
            Row(2) with { Codes = null },
            Row(3) with { Codes = [] },
            Row(4),
        };
        string path = Path.Combine(dir, "nulls.parquet");
        ArrowParquet.Write(path, rows, rowGroupSize: 2);
        var records = ParquetTrainingData.Read(path, skipBad: true, out var skipped);
        AssertRow(rows[4], Assert.Single(records), dir);
        Assert.Equal(
        [
            "audio_codes[2]: expected an array of 16 codes, found null",
            "audio_codes[0][7]: expected an integer code, found null",
            "audio_codes: missing required field",
            "audio_codes: is empty; a training sample needs at least one frame of codes",
        ], skipped.Select(b => $"{b.Field}: {b.Reason}"));
    }

    [Fact]
    public void Training_data_is_jsonl_parquet_or_a_clear_error()
    {
        var (jsonl, _) = DemoJsonl(dir);
        string parquet = Path.Combine(dir, "data.bin");
        Touch("ref.wav");
        ArrowParquet.Write(parquet, [Row(0)]);
        string jsonNoExt = Path.Combine(dir, "records");
        File.Copy(jsonl, jsonNoExt);
        string other = Path.Combine(dir, "notes.txt");
        File.WriteAllText(other, "hello");

        Assert.Equal(DataFormat.Jsonl, TrainingData.Detect(jsonl));
        Assert.Equal(DataFormat.Parquet, TrainingData.Detect(parquet)); // by its PAR1 magic
        Assert.Equal(DataFormat.Jsonl, TrainingData.Detect(jsonNoExt));
        Assert.Equal(DataFormat.Parquet, TrainingData.Detect(dir));
        Assert.Single(TrainingData.Read(parquet, false, out _));
        Assert.Equal(16, TrainingData.Read(jsonNoExt, false, out _).Count);
        var e = Assert.Throws<InvalidDataException>(() => TrainingData.Read(other, false, out _));
        Assert.Contains("neither JSONL", e.Message);
        Assert.Throws<FileNotFoundException>(() => TrainingData.Read(Path.Combine(dir, "nope.parquet"), false, out _));
        Assert.Throws<FileNotFoundException>(() => TrainingData.Read(TestPaths.NewTempDir("empty"), false, out _));
        string corrupt = Path.Combine(dir, "corrupt.parquet");
        File.WriteAllBytes(corrupt, [.. "PAR1"u8, 1, 2, 3, 4, 5, 6, 7, 8, .. "PAR1"u8]);
        e = Assert.Throws<InvalidDataException>(() => TrainingData.Read(corrupt, false, out _));
        Assert.StartsWith($"{corrupt}: cannot read it as Parquet", e.Message);
        Assert.Throws<ArgumentException>(() => TrainingData.Read(parquet, false, out _, split: "train"));
        Assert.Throws<ArgumentException>(() => TrainingData.Read(jsonl, false, out _, split: "train"));
    }

    [Fact]
    public void Info_counts_languages_speakers_lengths_and_a_ten_bin_histogram()
    {
        Touch("ref.wav");
        // frames 10, 12, 19, 25, 59: range 10..59 is 50 frames, so 10 bins 5 wide
        int[] frames = [10, 12, 19, 25, 59];
        string?[] languages = ["hausa", "hausa", "english", null, "hausa"];
        var rows = frames.Select((n, i) => Row(i) with { Codes = Codes(n), Language = languages[i], SpeakerId = i < 3 ? "a" : "b" }).ToList();
        string path = Path.Combine(dir, "info.parquet");
        ArrowParquet.Write(path, rows, rowGroupSize: 2);

        var info = DatasetInfo.Compute(path);

        Assert.Equal(5, info.Count);
        Assert.Equal(0, info.Skipped);
        Assert.Equal([KeyValuePair.Create("hausa", 3), KeyValuePair.Create("(none)", 1), KeyValuePair.Create("english", 1)], info.Languages);
        Assert.Equal([KeyValuePair.Create("a", 3), KeyValuePair.Create("b", 2)], info.Speakers);
        Assert.Equal(125, info.TotalFrames);
        Assert.Equal(10.0, info.TotalSeconds); // 125 / 12.5
        Assert.Equal(0.8, info.MinSeconds);
        Assert.Equal(4.72, info.MaxSeconds, 10);
        Assert.Equal(25, info.MeanFrames);
        Assert.Equal(
        [
            new LengthBin(10, 14, 2), new LengthBin(15, 19, 1), new LengthBin(20, 24, 0), new LengthBin(25, 29, 1),
            new LengthBin(30, 34, 0), new LengthBin(35, 39, 0), new LengthBin(40, 44, 0), new LengthBin(45, 49, 0),
            new LengthBin(50, 54, 0), new LengthBin(55, 59, 1),
        ], info.Histogram);

        string text = info.ToText();
        Assert.Contains("records   5", text);
        Assert.Contains("10.0 total", text);
        Assert.Contains("10-14", text);
        var json = JsonNode.Parse(info.ToJson())!;
        Assert.Equal(125, (long)json["frames"]!["total"]!);
        Assert.Equal(10.0, (double)json["seconds"]!["total"]!);
        Assert.Equal(10, json["histogram"]!.AsArray().Count);
        Assert.Equal(3, (int)json["languages"]!["hausa"]!);
    }

    [Fact]
    public void Info_reads_jsonl_too_and_counts_skipped_lines()
    {
        var (jsonl, records) = DemoJsonl(dir);
        File.AppendAllLines(jsonl, ["{\"text\": \"bad\"}"]);
        var info = DatasetInfo.Compute(jsonl);
        Assert.Equal(DataFormat.Jsonl, info.Format);
        Assert.Equal(16, info.Count);
        Assert.Equal(1, info.Skipped);
        Assert.Equal(records.Sum(r => (long)r.AudioCodes.Frames), info.TotalFrames);
        Assert.Equal(16, info.Histogram.Sum(b => b.Count));
        Assert.True(info.Histogram.Count <= 10);
    }
}

/// <summary>A Parquet file damaged inside its pages (not only its footer) is refused naming the file, whatever
/// Parquet.Net throws for it.</summary>
public class ParquetDamageTests : CleansTempDirs
{
    [Fact]
    public void A_damaged_page_names_the_file()
    {
        string dir = TestPaths.NewTempDir("parquet-damage");
        string path = Path.Combine(dir, "train.parquet");
        var codes = Enumerable.Range(0, 40).Select(f => Enumerable.Range(0, 16).Select(g => (long?)((f * 7 + g) % 2048)).ToArray()).ToArray<long?[]?>();
        ArrowParquet.Write(path, Enumerable.Range(0, 12).Select(i => new ParquetRow(Text: $"sentence {i}", Codes: codes)).ToList(), rowGroupSize: 4);
        byte[] clean = File.ReadAllBytes(path);
        int refused = 0;
        foreach (double at in Enumerable.Range(1, 18).Select(i => i / 20.0))
        {
            byte[] damaged = (byte[])clean.Clone();
            int start = (int)(clean.Length * at);
            for (int i = start; i < start + 64; i++) damaged[i] = 0xFF;
            File.WriteAllBytes(path, damaged);
            try { TrainingData.Read(path, false, out _); }
            catch (Exception e) when (e is InvalidDataException or DataException)
            {
                Assert.StartsWith(path, e.Message);
                refused++;
            }
        }
        Assert.True(refused > 0, "no damage was detected at all");
    }

    [Fact]
    public void Declared_sizes_the_file_cannot_hold_are_refused_before_reading()
    {
        static Parquet.Meta.RowGroup Group(long rows, long offset, long compressed, long uncompressed) => new()
        {
            NumRows = rows,
            Columns = [new Parquet.Meta.ColumnChunk { MetaData = new Parquet.Meta.ColumnMetaData
            {
                PathInSchema = ["audio_codes", "list", "element"], DataPageOffset = offset, TotalCompressedSize = compressed, TotalUncompressedSize = uncompressed,
            } }],
        };
        ParquetTrainingData.CheckDeclaredSizes("t.parquet", 10_000, Group(4, 4, 9_000, 40_000), 0); // fits
        Assert.Equal("t.parquet: row group 1, column audio_codes.list.element: declares 9000 bytes at offset 4000, past the end of the 10000-byte file; the file is damaged or truncated",
            Assert.Throws<InvalidDataException>(() => ParquetTrainingData.CheckDeclaredSizes("t.parquet", 10_000, Group(4, 4000, 9_000, 40_000), 1)).Message);
        Assert.Contains("declares 4294967296 bytes uncompressed",
            Assert.Throws<InvalidDataException>(() => ParquetTrainingData.CheckDeclaredSizes("t.parquet", 10_000, Group(4, 4, 9_000, 1L << 32), 0)).Message);
        Assert.Contains("declares -1 rows", Assert.Throws<InvalidDataException>(() => ParquetTrainingData.CheckDeclaredSizes("t.parquet", 10_000, Group(-1, 4, 9, 9), 0)).Message);

        // A real file's footer passes, and is checked on every read.
        string path = Path.Combine(TestPaths.NewTempDir("parquet-sizes"), "train.parquet");
        var codes = Enumerable.Range(0, 8).Select(f => Enumerable.Range(0, 16).Select(g => (long?)g).ToArray()).ToArray<long?[]?>();
        ArrowParquet.Write(path, Enumerable.Range(0, 6).Select(i => new ParquetRow(Text: $"sentence {i}", Codes: codes)).ToList(), rowGroupSize: 2);
        var refusals = new Refusals(skip: true);
        Assert.Equal(6, ParquetTrainingData.Read(path, refusals).Count + refusals.Count); // every row read (these lack a reference clip)
    }

    [Fact]
    public void A_page_header_is_read_as_parquet_format_encodes_it()
    {
        // PageHeader{type DATA_PAGE, uncompressed 100, compressed 40, data_page_header{num_values 10}}, Thrift compact.
        byte[] header = [0x15, 0x00, 0x15, 0xC8, 0x01, 0x15, 0x50, 0x2C, 0x15, 0x14, 0x00, 0x00];
        Assert.True(ParquetPages.TryReadHeader(header, out int length, out int uncompressed, out int compressed));
        Assert.Equal((12, 100, 40), (length, uncompressed, compressed));
        Assert.False(ParquetPages.TryReadHeader(header[..9], out _, out _, out _)); // cut short
        Assert.False(ParquetPages.TryReadHeader([0x15, 0x00, 0x00], out _, out _, out _)); // no sizes
    }

    [Fact]
    public async Task A_damaged_page_header_is_refused_before_the_page_is_read()
    {
        string path = Path.Combine(TestPaths.NewTempDir("parquet-page"), "train.parquet");
        var codes = Enumerable.Range(0, 8).Select(f => Enumerable.Range(0, 16).Select(g => (long?)(f + g)).ToArray()).ToArray<long?[]?>();
        ArrowParquet.Write(path, Enumerable.Range(0, 6).Select(i => new ParquetRow(Text: $"sentence {i}", Codes: codes)).ToList());
        // The text column's first page: its header's compressed size (field 3) grows past the chunk, in as many bytes.
        long offset;
        await using (var reader = await Parquet.ParquetReader.CreateAsync(path))
        {
            var chunk = reader.Metadata!.RowGroups[0].Columns.Single(c => c.MetaData!.PathInSchema[0] == "text").MetaData!;
            offset = chunk.DictionaryPageOffset is long d && d > 0 ? Math.Min(d, chunk.DataPageOffset) : chunk.DataPageOffset;
        }
        byte[] bytes = File.ReadAllBytes(path);
        int at = (int)offset;
        int SkipVarint(int p) { while ((bytes[p] & 0x80) != 0) p++; return p + 1; }
        Assert.Equal(0x15, bytes[at]);
        at = SkipVarint(at + 1);        // field 1: type
        Assert.Equal(0x15, bytes[at]);
        at = SkipVarint(at + 1);        // field 2: uncompressed size
        Assert.Equal(0x15, bytes[at]);
        int start = at + 1, end = SkipVarint(start);
        for (int k = start; k < end - 1; k++) bytes[k] = 0xFF;
        bytes[start] = 0xFE;            // an even zigzag: a large positive size
        bytes[end - 1] = 0x7F;
        if (end - start == 1) bytes[start] = 0x7E;
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<InvalidDataException>(() => ParquetTrainingData.Read(path, new Refusals(skip: true)));
        Assert.StartsWith($"{path}: row group 0, column text: page 0 at offset {offset}: declares ", e.Message);
        Assert.Contains("past the end of its column chunk", e.Message);
    }
}
