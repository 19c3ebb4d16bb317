using System.Globalization;
using System.Text.Json.Nodes;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Tests.Entry;
using Qwen3Tts.Tests.Training;
using static Qwen3Tts.Tests.Entry.Executables;

namespace Qwen3Tts.Tests.Data;

/// <summary>A generated corpus of bad input (<see cref="BadCorpus"/>: 44 bad records across JSONL and Parquet, plus bad
/// files and flags) through the trainer, <c>info</c> and <c>preflight</c> as a user runs them: every case is refused
/// before the first step, naming file, line (or row) and field, with exit 2 and no stack trace; with --skip_bad_samples
/// training goes on with the good records and the skipped report lists every bad one. Every run is under a memory
/// watchdog: the runaway cases (40k text ids, 40k frames) are refused before any large allocation.</summary>
public class BadCorpusTests : CleansTempDirs
{
    /// <summary>The watchdog's limit: far above a tiny model's run (~0.5 GB), far below a runaway causal mask (tens of GB).</summary>
    const long Watchdog = 4L << 30;

    readonly string model = TrainingFixture.TinyModel(11, "bad-corpus-model");

    string[] TrainArgs(BadCorpus corpus, string output) =>
        ["--train_jsonl", corpus.Path, "--init_model_path", model, "--output_model_path", output, "--num_epochs", "1", "--batch_size", "2",
         "--gradient_accumulation_steps", "1", "--mixed_precision", "fp32", "--coordinator", "off", "--max_frames", BadCorpus.MaxFrames.ToString(CultureInfo.InvariantCulture)];

    static string Where(BadCorpus corpus, int line) => DataLocation.Format(corpus.Path, line);

    public static TheoryData<string> Formats => new() { "jsonl", "parquet" };

    static BadCorpus Corpus(string format) => format == "jsonl" ? BadCorpus.Jsonl() : BadCorpus.Parquet();

    [Theory]
    [MemberData(nameof(Formats))]
    public void The_trainer_refuses_every_bad_record_at_once_before_training_and_skips_exactly_them_when_asked(string format)
    {
        var corpus = Corpus(format);
        string output = TestPaths.NewTempDir("bad-corpus-out");

        var refused = Run(TestPaths.RankDll, TrainArgs(corpus, output), timeout: TimeSpan.FromMinutes(2), maxResidentBytes: Watchdog);
        Assert.True(refused.Exit == 2, $"exit {refused.Exit}:\n{refused.Stderr}\n{refused.Stdout}");
        AssertNoStackTrace(refused);
        int n = corpus.Cases.Count;
        var lines = refused.ErrorLines;
        Assert.Equal($"error: {corpus.Path}: {n} records cannot be used{(n > Refusals.Listed ? $" (the first {Refusals.Listed} listed)" : "")}; {Refusals.SkipHint}", lines[0]);
        // The first 20 (or all) by line, each naming file, line and the field, then the count of the rest.
        var listed = corpus.Cases.Take(Refusals.Listed).ToList();
        for (int i = 0; i < listed.Count; i++)
            Assert.StartsWith($"  {Where(corpus, listed[i].Line)}: {listed[i].Field}", lines[1 + i]);
        if (n > Refusals.Listed) Assert.Equal($"  ... and {n - Refusals.Listed} more", lines[1 + Refusals.Listed]);
        Assert.False(Directory.Exists(Path.Combine(output, "last")));
        Assert.DoesNotContain("memory plan", refused.Stdout); // stopped before anything was planned or allocated

        var skipped = Run(TestPaths.RankDll, [.. TrainArgs(corpus, output), "--skip_bad_samples"], timeout: TimeSpan.FromMinutes(3), maxResidentBytes: Watchdog);
        Assert.True(skipped.Exit == 0, $"exit {skipped.Exit}:\n{skipped.Stderr}\n{skipped.Stdout}");
        Assert.Contains($"skipped {n} malformed train records", skipped.Stdout);
        Assert.Contains($"training {corpus.GoodRecords} samples", skipped.Stdout);
        foreach (int blank in corpus.BlankLines) Assert.Contains(blank.ToString(CultureInfo.InvariantCulture), skipped.Stdout.Split('\n').Single(l => l.Contains("blank line")));
        var report = File.ReadAllLines(Path.Combine(output, "skipped_train_samples.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(corpus.Cases.Select(c => c.Line), report.Select(r => (int)r["line"]!));
        foreach (var (c, r) in corpus.Cases.Zip(report))
        {
            Assert.True(((string)r["field"]!).StartsWith(c.Field, StringComparison.Ordinal), $"{c.Name}: field {(string)r["field"]!}, expected {c.Field}");
            if (c.FoundByDecoding) // "cannot read 'PATH': why", the path said once
                Assert.Single(System.Text.RegularExpressions.Regex.Matches((string)r["reason"]!, System.Text.RegularExpressions.Regex.Escape(Path.GetDirectoryName(corpus.Path)!)));
        }
        Assert.True(File.Exists(Path.Combine(output, "last", "model.safetensors")));
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void Info_lists_every_record_the_trainer_refuses_and_exits_2(string format)
    {
        var corpus = Corpus(format);
        var r = Run(TestPaths.CliDll, ["info", corpus.Path, "--model", model, "--max_frames", BadCorpus.MaxFrames.ToString(CultureInfo.InvariantCulture), "--json"],
            maxResidentBytes: Watchdog);
        Assert.True(r.Exit == 2, $"exit {r.Exit}:\n{r.Stderr}\n{r.Stdout}");
        AssertNoStackTrace(r);
        var info = JsonNode.Parse(r.Stdout)!;
        // info reads no audio: a reference clip that only decoding shows bad is the trainer's and preflight's to find.
        var expected = corpus.Cases.Where(c => !c.FoundByDecoding).ToList();
        var malformed = info["malformed"]!.AsArray().Select(m => ((int)m!["line"]!, (string)m["field"]!)).ToList();
        Assert.Equal(expected.Select(c => c.Line), malformed.Select(m => m.Item1));
        foreach (var (c, m) in expected.Zip(malformed)) Assert.True(m.Item2.StartsWith(c.Field, StringComparison.Ordinal), $"{c.Name}: {m.Item2}");
        Assert.Equal(corpus.GoodRecords + corpus.Cases.Count(c => c.FoundByDecoding), (int)info["records"]!);
        if (corpus.BlankLines.Count > 0) Assert.Contains("blank lines", (string)info["blank_lines"]!);

        // The text report names them too, and --skip_bad_samples accepts the same data (exit 0), as the trainer would.
        var text = Run(TestPaths.CliDll, ["info", corpus.Path, "--model", model, "--max_frames", BadCorpus.MaxFrames.ToString(CultureInfo.InvariantCulture), "--skip_bad_samples"]);
        Assert.Equal(0, text.Exit);
        Assert.Contains($"  refused {Where(corpus, expected[0].Line)}: {expected[0].Field}", text.Stdout);
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void Preflight_finds_an_error_in_every_record_the_trainer_refuses(string format)
    {
        var corpus = Corpus(format);
        var r = Run(TestPaths.CliDll, ["preflight", corpus.Path, "--model", model,
            "--max_seconds", (BadCorpus.MaxFrames / 12.5).ToString(CultureInfo.InvariantCulture), "--json"], maxResidentBytes: Watchdog);
        Assert.True(r.Exit == 2, $"exit {r.Exit}:\n{r.Stderr}\n{r.Stdout}");
        AssertNoStackTrace(r);
        var report = JsonNode.Parse(r.Stdout)!;
        Assert.Equal("NO-GO", (string)report["verdict"]!);
        int LineOf(string where) => int.Parse(where.StartsWith(corpus.Path + ": row ", StringComparison.Ordinal)
            ? where[(corpus.Path.Length + 6)..] : where[(corpus.Path.Length + 1)..], CultureInfo.InvariantCulture) + (format == "parquet" ? 1 : 0);
        var withErrors = report["records"]!.AsArray()
            .Where(x => x!["issues"]!.AsArray().Any(i => (string)i!["severity"]! == "error")).Select(x => LineOf((string)x!["where"]!))
            .Concat(report["malformed"]!.AsArray().Select(m => (int)m!["line"]!)).Order().ToList();
        // Exactly the trainer's refusals: none missed, and no good record refused.
        Assert.Equal(corpus.Cases.Select(c => c.Line), withErrors);
        foreach (int blank in corpus.BlankLines) Assert.Contains(blank.ToString(CultureInfo.InvariantCulture), (string)report["blank_lines"]!);
    }

    public static TheoryData<string, string[], string> FilesAndFlags()
    {
        var data = new TheoryData<string, string[], string>();
        data.Add("--max_frames 0", ["--max_frames", "0"], "error: --max_frames: must be at least 1, got 0");
        data.Add("--max_seconds -1", ["--max_seconds", "-1"], "error: --max_seconds: must be at least one frame (0.08 s), got -1");
        data.Add("--max_memory_gb 0", ["--max_memory_gb", "0"], "error: --max_memory_gb: must be a positive number of GB, got 0");
        data.Add("--max_frames a word", ["--max_frames", "many"], "error: --max_frames: 'many' is not a whole number");
        data.Add("--batch_size 0", ["--batch_size", "0"], "error: --batch_size: must be at least 1, got 0");
        return data;
    }

    [Theory]
    [MemberData(nameof(FilesAndFlags))]
    public void Bad_flags_and_paths_are_refused_in_words(string name, string[] args, string expected)
    {
        _ = name;
        string data = TrainingFixture.DemoData(2, tag: "bad-flags");
        var r = Run(TestPaths.RankDll, ["--train_jsonl", data, "--init_model_path", model, "--output_model_path", TestPaths.NewTempDir("bad-flags-out"), .. args],
            maxResidentBytes: Watchdog);
        Assert.Equal(2, r.Exit);
        AssertNoStackTrace(r);
        Assert.StartsWith(expected, r.ErrorLines[0]);
    }

    public static TheoryData<string> BadFiles => new() { "missing", "garbage", "truncated parquet", "empty folder", "only blank lines" };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void A_file_that_cannot_be_read_stops_the_trainer_info_and_preflight_naming_it(string kind)
    {
        string dir = TestPaths.NewTempDir("bad-file");
        string path = Path.Combine(dir, kind switch { "garbage" => "train.dat", "truncated parquet" => "train.parquet", "empty folder" => "shards", _ => "train.jsonl" });
        switch (kind)
        {
            case "garbage": File.WriteAllBytes(path, [0x00, 0x9F, 0x13, 0x37, 0xFF, 0x42]); break;
            case "truncated parquet":
                var codes = Enumerable.Range(0, 8).Select(f => Enumerable.Range(0, 16).Select(g => (long?)g).ToArray()).ToArray<long?[]?>();
                ArrowParquet.Write(path, [new ParquetRow(Text: "a", Codes: codes)]);
                File.WriteAllBytes(path, File.ReadAllBytes(path)[..^40]);
                break;
            case "empty folder": Directory.CreateDirectory(path); break;
            case "only blank lines": File.WriteAllText(path, "\n\n  \n"); break;
        }
        var runs = new[]
        {
            Run(TestPaths.RankDll, ["--train_jsonl", path, "--init_model_path", model, "--output_model_path", TestPaths.NewTempDir("bad-file-out")], maxResidentBytes: Watchdog),
            Run(TestPaths.CliDll, ["info", path], maxResidentBytes: Watchdog),
            Run(TestPaths.CliDll, ["preflight", path], maxResidentBytes: Watchdog),
        };
        foreach (var r in runs)
        {
            Assert.True(r.Exit == 2, $"{kind}: exit {r.Exit}\n{r.Stderr}\n{r.Stdout}");
            AssertNoStackTrace(r);
            Assert.Contains(kind == "empty folder" ? path : Path.GetFileName(path), r.Stderr + r.Stdout);
        }
    }

    [Fact]
    public void The_watchdog_kills_a_runaway_process_and_fails_the_test()
    {
        // tail holds a "line" of /dev/zero that never ends: memory grows until something stops it.
        var e = Assert.ThrowsAny<Xunit.Sdk.XunitException>(() =>
            RunProcess("tail", ["/dev/zero"], null, TimeSpan.FromMinutes(1), maxResidentBytes: 64L << 20));
        Assert.Contains("killed by the watchdog past 64 MB resident", e.Message);
    }
}
