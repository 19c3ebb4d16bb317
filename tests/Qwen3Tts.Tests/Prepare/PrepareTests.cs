using System.Text.Json.Nodes;
using Parquet.Serialization;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Coordinator.Data.Prepare;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Codec;
using Qwen3Tts.Rank.Distributed;
using Qwen3Tts.Rank.Prepare;
using Qwen3Tts.Rank.Training;
using Qwen3Tts.Tests.Distributed;

namespace Qwen3Tts.Tests.Prepare;

/// <summary>qwen3tts prepare: raw speech (JSONL, HF Parquet) to training records whose audio_codes are the speech
/// tokenizer's codes of each clip (computed here independently, clip by clip), every source field kept, readable and
/// trainable; resumable after an interruption without repeating or losing a record; the same bytes from 1 and 2 ranks;
/// bad records named by file, line or row, and field.</summary>
public sealed class PrepareTests : CleansTempDirs
{
    static PrepareResult? Prepare(PrepareOptions options, string model, ICommunicator? comm = null, TextWriter? log = null,
        CancellationToken cancel = default, Action<int>? recordDone = null) =>
        DistributedPrepare.Run(options, model, comm ?? new SingleProcessCommunicator(), log ?? TextWriter.Null, cancel, recordDone);

    /// <summary>Each clip's codes straight from its WAV file (WavReader + resampler, not the prepare path's AudioFile).</summary>
    static Dictionary<string, long[,]> ExpectedCodes(PrepareFixture f)
    {
        using var tokenizer = SpeechTokenizer.Load(f.Model);
        return PrepareFixture.Utterances.ToDictionary(u => u.Id, u => tokenizer.EncodeFile(f.Clip(u.Id)));
    }

    [Fact]
    public async Task Jsonl_and_hf_parquet_sources_give_the_same_records_with_each_clips_codes_and_every_field()
    {
        var f = new PrepareFixture("prepare-same");
        var expected = ExpectedCodes(f);
        var log = new StringWriter();
        var outputs = new Dictionary<string, string>
        {
            ["jsonl->jsonl"] = f.Out("a.jsonl"), ["jsonl->parquet"] = f.Out("b.parquet"),
            ["hf->parquet"] = f.Out("c.parquet"), ["hf->jsonl"] = f.Out("d.jsonl"),
        };
        foreach (var (name, output) in outputs)
        {
            var result = Prepare(new PrepareOptions(name.StartsWith("hf") ? f.HfFolder : f.Jsonl, output), f.Model, log: log)!;
            Assert.Equal(5, result.Written);
            Assert.Empty(result.Skipped);
            Assert.False(Directory.Exists(output + ".partial"));
        }
        // No ref_audio in the source: each speaker's first clip, said so in the log.
        Assert.Contains("using each speaker's first clip (2 speaker(s)): spk1 -> ", log.ToString());

        var firstClip = new Dictionary<string, float[]>
        {
            ["spk1"] = AudioFile.LoadMono24k(f.Clip("spk1/utt0")).Samples,
            ["spk2"] = AudioFile.LoadMono24k(f.Clip("spk2/utt1")).Samples,
        };
        foreach (var (name, output) in outputs)
        {
            var records = TrainingData.Read(output, skipBad: false, out var bad);
            Assert.Empty(bad);
            Assert.Equal(PrepareFixture.Utterances.Length, records.Count);
            for (int i = 0; i < records.Count; i++)
            {
                var (u, r) = (PrepareFixture.Utterances[i], records[i]);
                Assert.Equal(u.Text, r.Text);
                Assert.Equal(u.Speaker, r.SpeakerId);
                Assert.Equal("hausa", r.Language);
                Assert.Equal(u.Speaker == "spk1" ? "female" : "male", r.Gender);
                Assert.Equal(expected[u.Id], r.AudioCodes.ToArray());
                Assert.Equal((u.Samples * 24000L / u.Rate + 1919) / 1920, r.AudioCodes.Frames, 1.0); // ceil(samples at 24 kHz / 1920), +-1 for resampling length
                var refSamples = r.RefAudioBytes is { } bytes ? AudioFile.DecodeMono24k(bytes, "ref").Samples : AudioFile.LoadMono24k(r.RefAudio).Samples;
                Assert.Equal(firstClip[u.Speaker], refSamples);
            }
        }

        // JSONL from JSONL: the source's fields in order with their values, paths relative to the output's folder.
        var lines = File.ReadAllLines(outputs["jsonl->jsonl"]).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        var source = File.ReadAllLines(f.Jsonl).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        for (int i = 0; i < lines.Count; i++)
        {
            Assert.Equal([.. source[i].Select(kv => kv.Key), "audio_codes", "ref_audio"], lines[i].Select(kv => kv.Key));
            foreach (var key in new[] { "id", "text", "speaker_id", "language", "gender", "duration", "score" })
                Assert.True(JsonNode.DeepEquals(source[i][key], lines[i][key]), key);
            Assert.Equal($"../clips/{PrepareFixture.Utterances[i].Id}.wav", lines[i]["audio"]!.GetValue<string>());
        }
        // A reference clip outside the output's folder is named through a link beside the output, so the prepared data
        // trains without --allow_absolute_paths; the link leads to the source's clip.
        string linked = lines[3]["ref_audio"]!.GetValue<string>();
        Assert.Equal("a.audio/utt1.wav", linked.Replace(Path.GetFileNameWithoutExtension(outputs["jsonl->jsonl"]) + ".audio", "a.audio"));
        Assert.Equal(f.Clip("spk2/utt1"), LinkedTo(Path.Combine(Path.GetDirectoryName(outputs["jsonl->jsonl"])!, linked)));

        // Parquet from Parquet: every source column as written (the audio struct's bytes included), then the two added.
        await using var stream = File.OpenRead(outputs["hf->parquet"]);
        var table = await ParquetSerializer.DeserializeUntypedAsync(stream);
        Assert.Equal(["audio", "text", "id", "speaker_id", "language", "gender", "duration", "score", "audio_codes", "ref_audio"],
            table.Schema.Fields.Select(x => x.Name).OrderBy(n => n == "audio" ? 0 : n == "text" ? 1 : n == "audio_codes" ? 9 : n == "ref_audio" ? 10 : 2)
                .ThenBy(n => Array.IndexOf(["id", "speaker_id", "language", "gender", "duration", "score"], n)));
        for (int i = 0; i < table.Data.Count; i++)
        {
            var u = PrepareFixture.Utterances[i];
            var audio = (IDictionary<string, object>)table.Data[i]["audio"];
            Assert.Equal(File.ReadAllBytes(f.Clip(u.Id)), (byte[])audio["bytes"]);
            Assert.Equal(Path.GetFileName(u.Id) + ".wav", audio["path"].ToString());
            Assert.Equal(Math.Round(u.Samples / (double)u.Rate, 4), (double)table.Data[i]["duration"]);
            Assert.Equal(3L, (long)table.Data[i]["score"]);
        }

        // JSONL from Parquet: the inline clips written beside it once each, named by relative path.
        var fromHf = File.ReadAllLines(outputs["hf->jsonl"]).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal("d.audio/utt0.wav", fromHf[0]["audio"]!.GetValue<string>());
        Assert.Equal("d.audio/utt0.wav", fromHf[2]["ref_audio"]!.GetValue<string>());
        Assert.Equal(File.ReadAllBytes(f.Clip("spk2/utt3")), File.ReadAllBytes(Path.Combine(f.Dir, "out", fromHf[3]["audio"]!.GetValue<string>())));
    }

    [Fact]
    public void A_folder_of_clips_with_transcripts_prepares_to_both_formats()
    {
        var f = new PrepareFixture("prepare-folder");
        var expected = ExpectedCodes(f);
        foreach (var u in PrepareFixture.Utterances) File.WriteAllText(Path.ChangeExtension(f.Clip(u.Id), ".txt"), u.Text + "\n");
        string folder = Path.Combine(f.Dir, "clips");
        var order = PrepareFixture.Utterances.OrderBy(u => u.Id, StringComparer.Ordinal).ToList(); // by relative path
        var log = new StringWriter();
        foreach (string name in new[] { "a.jsonl", "a.parquet" })
        {
            Prepare(new PrepareOptions(folder, f.Out(name)), f.Model, log: log);
            var records = TrainingData.Read(f.Out(name), false, out _);
            Assert.Equal(order.Select(u => u.Text), records.Select(r => r.Text));
            Assert.Equal(order.Select(u => $"../clips/{u.Id}.wav"), records.Select(r => r.Audio));
            for (int i = 0; i < records.Count; i++) Assert.Equal(expected[order[i].Id], records[i].AudioCodes.ToArray());
            // No speaker ids: one speaker, whose first clip is every record's reference.
            Assert.All(records, r => Assert.Equal(f.Clip("spk1/utt0"), LinkedTo(r.RefAudio)));
            Assert.All(records, r => Assert.Null(Qwen3Tts.Coordinator.Data.DataPaths.Outside(r.RefAudio, r.Source)));
        }
        Assert.Contains("(1 speaker(s)): (no speaker_id) -> ", log.ToString());
    }

    [Fact]
    public void Split_picks_the_validation_shard_and_max_samples_the_first_records()
    {
        var f = new PrepareFixture("prepare-split");
        Prepare(new PrepareOptions(f.HfFolder, f.Out("val.parquet"), Split: "validation"), f.Model);
        Assert.Equal(["Ina kwana?"], TrainingData.Read(f.Out("val.parquet"), false, out _).Select(r => r.Text));
        Prepare(new PrepareOptions(f.HfFolder, f.Out("two.jsonl"), MaxSamples: 2), f.Model);
        Assert.Equal(["Sannu da zuwa.", "Ina kwana?"], TrainingData.Read(f.Out("two.jsonl"), false, out _).Select(r => r.Text));
        var e = Assert.Throws<ArgumentException>(() => Prepare(new PrepareOptions(f.HfFolder, f.Out("x.jsonl"), Split: "test"), f.Model));
        Assert.Contains("no 'test-*.parquet' shards (splits found: train, validation)", e.Message);
    }

    [Fact]
    public void Prepared_jsonl_and_parquet_train_the_same_model()
    {
        var f = new PrepareFixture("prepare-train");
        Prepare(new PrepareOptions(f.Jsonl, f.Out("train.jsonl")), f.Model);
        Prepare(new PrepareOptions(f.HfFolder, f.Out("train.parquet")), f.Model);
        byte[] Train(string data)
        {
            string output = TestPaths.NewTempDir("prepare-train-out");
            var result = new Trainer(new TrainingOptions
            {
                TrainData = data, InitModelPath = f.Model, OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 1, BatchSize = 2,
                GradientAccumulationSteps = 1, Lr = 1e-3, LrScheduler = "constant", LoggingSteps = 1000, Coordinator = "off",
            }, TextWriter.Null).Run();
            Assert.Equal(3, result.GlobalStep); // 5 records, batch 2
            return File.ReadAllBytes(Path.Combine(output, "last", "model.safetensors"));
        }
        byte[] fromJsonl = Train(f.Out("train.jsonl"));
        Assert.NotEqual(File.ReadAllBytes(Path.Combine(f.Model, "model.safetensors")), fromJsonl); // it trained
        Assert.Equal(fromJsonl, Train(f.Out("train.parquet")));   // same records, same reference voices: same weights
    }

    [Theory]
    [InlineData("a.jsonl")]
    [InlineData("a.parquet")]
    public void An_interrupted_prepare_resumes_without_repeating_or_losing_a_record(string name)
    {
        var f = new PrepareFixture("prepare-resume");
        Prepare(new PrepareOptions(f.Jsonl, f.Out("whole/" + name)), f.Model);

        var options = new PrepareOptions(f.Jsonl, f.Out("resumed/" + name));
        var cancel = new CancellationTokenSource();
        Assert.Throws<OperationCanceledException>(() => Prepare(options, f.Model, cancel: cancel.Token, recordDone: n => { if (n == 2) cancel.Cancel(); }));
        Assert.False(File.Exists(options.Output));
        string journal = Path.Combine(options.Output + ".partial", "codes-rank-00000.jsonl");
        Assert.Equal(2, File.ReadAllLines(journal).Length);
        File.AppendAllText(journal, "{\"i\":2,\"fp\":\"0123"); // a kill in the middle of writing the third

        // Resumed by two ranks: only the 3 unfinished records are encoded, each once.
        var encoded = new System.Collections.Concurrent.ConcurrentBag<int>();
        FakeWorld.Run(2, comm => Prepare(options, f.Model, comm, recordDone: _ => encoded.Add(comm.Rank)));
        Assert.Equal(3, encoded.Count);
        Assert.Equal(File.ReadAllBytes(f.Out("whole/" + name)), File.ReadAllBytes(options.Output));
        Assert.False(Directory.Exists(options.Output + ".partial"));
    }

    [Fact]
    public void A_partial_of_another_job_is_refused()
    {
        var f = new PrepareFixture("prepare-other");
        var cancel = new CancellationTokenSource();
        Assert.Throws<OperationCanceledException>(() =>
            Prepare(new PrepareOptions(f.Jsonl, f.Out("a.jsonl")), f.Model, cancel: cancel.Token, recordDone: _ => cancel.Cancel()));
        var e = Assert.Throws<ArgumentException>(() => Prepare(new PrepareOptions(f.Jsonl, f.Out("a.jsonl"), MaxSamples: 3), f.Model));
        Assert.Contains("holds an unfinished prepare of another job (max_samples: null then, 3 now", e.Message);
    }

    [Theory]
    [InlineData("a.jsonl", "jsonl")]
    [InlineData("a.parquet", "jsonl")]
    [InlineData("a.parquet", "hf")]
    [InlineData("a.jsonl", "hf")]
    public void Two_ranks_write_the_same_bytes_as_one(string name, string source)
    {
        var f = new PrepareFixture("prepare-ranks");
        string input = source == "hf" ? f.HfFolder : f.Jsonl;
        Prepare(new PrepareOptions(input, f.Out("one/" + name)), f.Model);
        var shares = new int[2];
        FakeWorld.Run(2, comm => Prepare(new PrepareOptions(input, f.Out("two/" + name)), f.Model, comm, recordDone: n => shares[comm.Rank] = n));
        Assert.Equal([3, 2], shares); // index % 2
        Assert.Equal(File.ReadAllBytes(f.Out("one/" + name)), File.ReadAllBytes(f.Out("two/" + name)));
    }

    [Fact]
    public void Bad_records_are_named_by_file_line_and_field_or_skipped_into_a_report()
    {
        var f = new PrepareFixture("prepare-bad");
        File.WriteAllBytes(Path.Combine(f.Dir, "clips", "garbage.wav"), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
        var lines = File.ReadAllLines(f.Jsonl).ToList();
        lines.Insert(1, "{\"audio\": \"clips/missing.wav\", \"text\": \"A.\"}");
        lines.Insert(3, "{\"audio\": \"clips/garbage.wav\", \"text\": \"B.\"}");
        lines.Insert(4, "{\"audio\": \"clips/spk1/utt0.wav\", \"text\": \"  \"}");
        lines.Insert(5, "{\"audio\": \"clips/spk1/utt0.wav\", \"text\": \"C.\", \"ref_audio\": \"nope.wav\"}");
        lines.Insert(6, "not json");
        string raw = Path.Combine(f.Dir, "bad.jsonl");
        File.WriteAllLines(raw, lines);

        var e = Assert.Throws<DataException>(() => Prepare(new PrepareOptions(raw, f.Out("a.jsonl")), f.Model));
        Assert.StartsWith($"{raw}:7: json: not valid JSON", e.Message); // the reader checks structure up front

        lines.RemoveAt(6);
        File.WriteAllLines(raw, lines);
        e = Assert.Throws<DataException>(() => Prepare(new PrepareOptions(raw, f.Out("a.jsonl")), f.Model));
        Assert.Equal($"{raw}:2: audio: file '{Path.Combine(f.Dir, "clips", "missing.wav")}' does not exist", e.Message);

        lines.Insert(6, "not json");
        File.WriteAllLines(raw, lines);
        var result = Prepare(new PrepareOptions(raw, f.Out("a.jsonl"), SkipBadSamples: true), f.Model)!;
        Assert.Equal(5, result.Written);
        string report = f.Out("a.skipped.jsonl");
        Assert.Equal(report, result.SkipReport);
        var skipped = File.ReadAllLines(report).Select(l => JsonNode.Parse(l)!).Select(n =>
            $"{n["line"]} {n["field"]}: {n["reason"]}").ToList();
        Assert.Equal(5, skipped.Count);
        Assert.StartsWith("7 json: not valid JSON", skipped[0]);
        Assert.Equal($"2 audio: file '{Path.Combine(f.Dir, "clips", "missing.wav")}' does not exist", skipped[1]);
        Assert.StartsWith($"4 audio: {Path.Combine(f.Dir, "clips", "garbage.wav")}: not a WAV, FLAC or MP3 file", skipped[2]);
        Assert.Equal("5 text: is empty; a training sample needs text to speak", skipped[3]);
        Assert.Equal($"6 ref_audio: file '{Path.Combine(f.Dir, "nope.wav")}' does not exist", skipped[4]);
        Assert.Equal(PrepareFixture.Utterances.Select(u => u.Text), TrainingData.Read(f.Out("a.jsonl"), false, out _).Select(r => r.Text));
    }

    [Fact]
    public async Task Bad_parquet_rows_are_named_by_file_row_and_field()
    {
        var f = new PrepareFixture("prepare-bad-parquet");
        string shard = Path.Combine(f.Dir, "bad", "train-00000-of-00001.parquet");
        Directory.CreateDirectory(Path.GetDirectoryName(shard)!);
        var rows = PrepareFixture.Utterances.Select(f.Row).ToList();
        rows[2].audio!.bytes = "OggS and then some bytes"u8.ToArray();
        await ParquetSerializer.SerializeAsync(rows, shard);
        var e = Assert.Throws<DataException>(() => Prepare(new PrepareOptions(shard, f.Out("a.parquet")), f.Model));
        Assert.StartsWith($"{shard}: row 2: audio: train-00000-of-00001.parquet: row 2: utt2.wav: not a WAV, FLAC or MP3 file: an Ogg file", e.Message);

        var result = Prepare(new PrepareOptions(shard, f.Out("a.parquet"), SkipBadSamples: true), f.Model)!;
        Assert.Equal(4, result.Written);
        Assert.Equal(new[] { 0, 1, 3, 4 }.Select(i => PrepareFixture.Utterances[i].Text), TrainingData.Read(f.Out("a.parquet"), false, out _).Select(r => r.Text));
    }

    [Fact]
    public void Ref_audio_flag_gives_records_without_one_that_clip_and_the_rank_job_prepares_raw_data_before_training()
    {
        var f = new PrepareFixture("prepare-ref");
        string reference = f.Clip("spk2/utt3");
        Prepare(new PrepareOptions(f.HfFolder, f.Out("a.parquet"), RefAudio: reference), f.Model);
        var records = TrainingData.Read(f.Out("a.parquet"), false, out _);
        Assert.All(records, r => Assert.Equal(Path.GetFullPath(reference), r.RefAudio));

        Assert.True(DistributedPrepare.NeedsPreparing(f.Jsonl));
        Assert.True(DistributedPrepare.NeedsPreparing(f.HfFolder));
        Assert.False(DistributedPrepare.NeedsPreparing(f.Out("a.parquet")));
        string output = Path.Combine(f.Dir, "run");
        var options = new TrainingOptions { TrainData = f.Jsonl, ValidationData = f.Out("a.parquet"), InitModelPath = f.Model, OutputModelPath = output };
        var log = new StringWriter();
        var prepared = PrepareBeforeTraining.Apply(options, new SingleProcessCommunicator(), skip: false, refAudio: null, log);
        Assert.Equal(Path.Combine(output, "prepared", "train.jsonl"), prepared.TrainData);
        // Preflight ran first on the raw split (no --ref_audio: each speaker's first clip serves, so no reference error).
        Assert.Contains($"preflight {f.Jsonl}: GO", log.ToString());
        Assert.True(File.Exists(Path.Combine(output, "preflight-train.txt")));
        Assert.Equal(f.Out("a.parquet"), prepared.ValidationData); // already prepared: used as it is
        Assert.Equal(5, TrainingData.Read(prepared.TrainData, false, out _).Count);
        // Again (a resumed run): the prepared file is reused, nothing is encoded.
        var again = PrepareBeforeTraining.Apply(options, new SingleProcessCommunicator(), skip: false, refAudio: null, log);
        Assert.Equal(prepared, again);
        Assert.Contains("prepared earlier from", log.ToString());
        Assert.Equal(options, PrepareBeforeTraining.Apply(options, new SingleProcessCommunicator(), skip: true, refAudio: null, log));
    }

    [Fact]
    public void A_finished_output_is_left_alone_unless_overwrite_is_given()
    {
        var f = new PrepareFixture("prepare-done");
        string output = f.Out("done.jsonl");
        int Invoke(params string[] extra) => PrepareCommand.Create(PrepareCommand.SingleProcess)
            .Parse(["--input", f.Jsonl, "--output", output, "--model", f.Model, "--max_samples", "2", .. extra]).Invoke();

        Assert.Equal(0, Invoke());
        Assert.True(PrepareCommand.Finished(output));
        var written = File.GetLastWriteTimeUtc(output);
        File.AppendAllText(output, ""); // same bytes
        File.SetLastWriteTimeUtc(output, written - TimeSpan.FromHours(1));
        Assert.Equal(0, Invoke());
        Assert.Equal(written - TimeSpan.FromHours(1), File.GetLastWriteTimeUtc(output)); // not touched
        Assert.Equal(0, Invoke("--overwrite"));
        Assert.NotEqual(written - TimeSpan.FromHours(1), File.GetLastWriteTimeUtc(output));
        Assert.Equal(2, TrainingData.Read(output, false, out _).Count);
        // Unfinished work beside it means the output is not finished: a rerun resumes rather than skips.
        Directory.CreateDirectory(output + ".partial");
        Assert.False(PrepareCommand.Finished(output));
    }

    [Fact]
    public void A_no_go_preflight_stops_the_rank_job_before_encoding_and_skip_preflight_goes_on()
    {
        var f = new PrepareFixture("prepare-nogo");
        string silent = Path.Combine(f.Dir, "silent.wav");
        WavWriter.Write(silent, new float[24000], 24000);
        string raw = Path.Combine(f.Dir, "nogo.jsonl");
        File.WriteAllLines(raw, [
            new JsonObject { ["audio"] = f.Clip("spk1/utt0"), ["text"] = "Sannu." }.ToJsonString(),
            new JsonObject { ["audio"] = silent, ["text"] = "Ina kwana?" }.ToJsonString(),
        ]);
        string output = Path.Combine(f.Dir, "run");
        var options = new TrainingOptions { TrainData = raw, InitModelPath = f.Model, OutputModelPath = output };
        var e = Assert.Throws<ArgumentException>(() => PrepareBeforeTraining.Apply(options, new SingleProcessCommunicator(), skip: false, refAudio: null, TextWriter.Null));
        Assert.Contains("NO-GO", e.Message);
        Assert.Contains("silent", File.ReadAllText(Path.Combine(output, "preflight-train.txt")));
        Assert.False(File.Exists(Path.Combine(output, "prepared", "train.jsonl"))); // nothing was encoded

        var prepared = PrepareBeforeTraining.Apply(options, new SingleProcessCommunicator(), skip: false, refAudio: null, TextWriter.Null, skipPreflight: true);
        Assert.Equal(2, TrainingData.Read(prepared.TrainData, false, out _).Count);
    }
    /// <summary>The file a prepared reference path leads to: a link's target, else the path itself.</summary>
    static string LinkedTo(string path) => new FileInfo(path).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? Path.GetFullPath(path);
}

/// <summary><c>mpiexec.openmpi -n 2 qwen3tts-rank prepare</c>: the same bytes as one process. Skipped (noted in the
/// output) without the launcher.</summary>
[Trait("Category", "Mpi")]
public sealed class MpiPrepareTests(Xunit.Abstractions.ITestOutputHelper output) : CleansTempDirs
{
    [Fact]
    public async Task Two_mpi_ranks_write_the_same_bytes_as_one_process()
    {
        const string launcher = "/usr/bin/mpiexec.openmpi";
        if (!File.Exists(launcher))
        {
            TestPaths.SkipOrFailInCi(output, $"{launcher} is not installed (.ci/run installs openmpi-bin)");
            return;
        }
        Assert.True(File.Exists(TestPaths.RankDll), $"qwen3tts-rank is not built: {TestPaths.RankDll}");
        var f = new PrepareFixture("prepare-mpi");
        DistributedPrepare.Run(new PrepareOptions(f.HfFolder, f.Out("one/a.parquet")), f.Model, new SingleProcessCommunicator(), TextWriter.Null);

        var start = new System.Diagnostics.ProcessStartInfo(launcher) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])["--allow-run-as-root", "--oversubscribe", "-n", "2", "dotnet", TestPaths.RankDll, "prepare",
                     "--input", f.HfFolder, "--output", f.Out("two/a.parquet"), "--model", f.Model])
            start.ArgumentList.Add(a);
        start.Environment[EnvVars.OmpiAllowRunAsRoot] = "1";
        start.Environment[EnvVars.OmpiAllowRunAsRootConfirm] = "1";
        using var process = System.Diagnostics.Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        try { await process.WaitForExitAsync(timeout.Token); }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true); // the ranks too: nothing outlives the test
            Assert.Fail($"mpiexec prepare did not finish in 5 minutes");
        }
        string log = await stdout + await stderr;
        Assert.True(process.ExitCode == 0, $"mpiexec exited {process.ExitCode}:\n{log}");
        Assert.Contains("2 rank(s)", log);
        Assert.Equal(File.ReadAllBytes(f.Out("one/a.parquet")), File.ReadAllBytes(f.Out("two/a.parquet")));
    }

}
