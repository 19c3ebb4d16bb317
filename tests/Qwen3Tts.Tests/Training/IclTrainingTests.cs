using System.Text.Json.Nodes;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Codec;
using Qwen3Tts.Model.Generation;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Model.Text;
using Qwen3Tts.Rank.Training;
using Qwen3Tts.Tests.Distributed;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Training;

/// <summary>--train_prompt icl|mixed: records with a ref_text train on the ICL cloning prompt (their reference clip's
/// transcript and codes before the target): the codes from ref_codes or encoded once per clip content by the model's
/// speech tokenizer, checked like any other field; mixed picks the same records on any world size and after a resume,
/// N ranks still train the model of one process, and a tiny model learns the ICL prompt and speaks from it deterministically.</summary>
public class IclTrainingTests : CleansTempDirs
{
    static string IclData(int records, int copies = 1, int withoutRefText = -1, int withRefCodes = 0, string tag = "icl-data") =>
        TrainingFixture.IclData(records, copies, withoutRefText, withRefCodes, tag);

    static TrainingOptions Options(string model, string data, string output, string prompt, int batch = 2) => new()
    {
        TrainData = data, InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 1, BatchSize = batch,
        GradientAccumulationSteps = 1, Lr = 1e-3, LrScheduler = "constant", LoggingSteps = 1000, BucketSizeMb = 1, AdamEpsilon = 1e-3,
        TrainPrompt = prompt, IclProbability = 0.5, Seed = 7,
    };

    static IReadOnlyList<TrainingRecord> Read(string data) => TrainingData.Read(data, skipBad: false, out _);

    [Fact]
    public void Mixed_draws_per_record_from_the_seed_file_name_and_line_alone()
    {
        var records = Read(IclData(16, withoutRefText: 3));
        var mixed = TrainPrompt.Parse("mixed", 0.5, seed: 7);
        var chosen = records.Select(mixed.IsIcl).ToList();
        Assert.InRange(chosen.Count(c => c), 3, 13); // a mix, not all or none
        Assert.False(chosen[3]); // no ref_text: always the x-vector prompt
        // The same records in another order (another rank's share, a resumed epoch) and copied elsewhere choose alike.
        var copy = Path.Combine(TestPaths.NewTempDir("icl-copy"), Path.GetFileName(records[0].Source));
        Assert.Equal(chosen, records.Reverse().Select(r => mixed.IsIcl(r with { Source = copy })).Reverse());
        Assert.NotEqual(chosen, records.Select(TrainPrompt.Parse("mixed", 0.5, seed: 8).IsIcl)); // the seed matters
        Assert.All(records.Where((_, i) => i != 3), r => Assert.True(TrainPrompt.Parse("icl", 0.5, 7).IsIcl(r)));
        Assert.All(records, r => Assert.False(TrainPrompt.Parse("xvector", 0.5, 7).IsIcl(r)));
        Assert.Equal(0.5, records.Take(0).Append(records[0]).Select(mixed.Draw).Select(d => d is >= 0 and < 1 ? 0.5 : 0).Single());
    }

    /// <summary>ref_codes are used as given; a record without them has its clip encoded by the model's speech tokenizer,
    /// once per distinct clip content; the plan and the memory planner count the reference's frames; bad reference codes
    /// or transcripts are refused naming the field.</summary>
    [Fact]
    public void Reference_codes_come_from_the_record_or_from_the_codec_once_per_clip_and_are_checked()
    {
        string model = TrainingFixture.TinyModel(31, "icl-codes-model");
        var config = Qwen3Tts.Model.Config.Qwen3TtsConfig.Load(Path.Combine(model, "config.json"));
        var tokenizer = Qwen3TextTokenizer.FromModelDirectory(model);
        var records = Read(IclData(4, withRefCodes: 1));
        using var codec = SpeechTokenizer.Load(Path.Combine(model, "speech_tokenizer"));
        int encoded = 0;
        long[,] Encode(float[] clip) { encoded++; return codec.Encode(clip); }

        var refusals = new Refusals(false);
        var data = SftDataSource.Open(records, tokenizer, config, new RecordRules(config, tokenizer.EncodeChat), refusals, TrainPrompt.Parse("icl", 0.5, 7), Encode);
        Assert.Equal(0, refusals.Count);
        Assert.Equal(4, data.IclCount);
        Assert.Equal(1, encoded); // records 1..3 share the demo clip
        Assert.Equal(records[0].AudioCodes.ToArray(), data.Records[0].RefCodes!.ToArray());
        var clipCodes = codec.Encode(SftSampleBuilder.LoadMono24k(records[1]));
        Assert.All(data.Records.Skip(1), r => Assert.Equal(clipCodes, r.RefCodes!.ToArray()));
        Assert.Equal(records.Select((r, i) => r.AudioCodes.Frames + data.Records[i].RefCodes!.Frames), data.PlanLengths);
        // A standalone coordinator plans the same lengths without the codec (the clip's frames from its length).
        int samplesPerFrame = SpeechTokenizerConfig.Load(Path.Combine(model, "speech_tokenizer", "config.json")).EncodeDownsampleRate;
        Assert.Equal(data.PlanLengths, TrainPrompt.Parse("icl", 0.5, 7).PlanLengths(records, samplesPerFrame));
        using (var batch = data.Batch([1]))
            Assert.Equal(SftCollate.IclSequenceLength(clipCodes.GetLength(0), records[1].AudioCodes.Frames), (int)batch.InputIds.shape[1]);
        Assert.Equal(SftCollate.IclSequenceLength(clipCodes.GetLength(0), records[1].AudioCodes.Frames) - 1, data.Shapes[1].Positions);

        // A code past its codebook, an empty transcript, a sequence beyond the context: refused, each naming its field.
        string bad = IclData(3, withRefCodes: 3, tag: "icl-bad");
        var lines = File.ReadAllLines(bad).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        lines[0]["ref_codes"]![0]![0] = 2049;
        lines[1]["ref_text"] = " ";
        lines[2]["ref_codes"] = new JsonArray(Enumerable.Range(0, config.Talker.MaxPositionEmbeddings).Select(_ => lines[2]["audio_codes"]![0]!.DeepClone()).ToArray());
        File.WriteAllLines(bad, lines.Select(l => l.ToJsonString()));
        var skipped = new Refusals(true);
        var badRecords = TrainingData.Read(bad, skipBad: true, out var unreadable);
        Assert.Equal(("ref_codes[0][0]", 1), Assert.Single(unreadable.Select(u => (u.Field, u.Line)))); // read like audio_codes
        var kept = SftDataSource.Open(badRecords, tokenizer, config, new RecordRules(config, tokenizer.EncodeChat), skipped, TrainPrompt.Parse("icl", 0.5, 7), Encode);
        Assert.Equal(1, kept.Count); // the blank transcript trains as an x-vector sample
        Assert.Equal(0, kept.IclCount);
        var tooLong = Assert.Single(skipped.Kept);
        Assert.Equal(("ref_codes", 3), (tooLong.Field, tooLong.Line));
        Assert.Contains("max_position_embeddings", tooLong.Reason);
    }

    /// <summary>prepare writes ref_codes for every record with a ref_text (its reference clip encoded, once per clip), in JSONL
    /// and in Parquet, and the readers give them back; records without a ref_text get none.</summary>
    [Theory]
    [InlineData("prepared.jsonl")]
    [InlineData("prepared.parquet")]
    public void Prepare_writes_the_reference_codes_of_records_with_a_ref_text(string name)
    {
        var f = new Qwen3Tts.Tests.Prepare.PrepareFixture("icl-prepare");
        var lines = File.ReadAllLines(f.Jsonl).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        for (int i = 0; i < lines.Count - 1; i++) lines[i]["ref_text"] = "Sannu.";
        File.WriteAllLines(f.Jsonl, lines.Select(l => l.ToJsonString()));
        var log = new StringWriter();
        Qwen3Tts.Rank.Prepare.DistributedPrepare.Run(new Qwen3Tts.Coordinator.Data.Prepare.PrepareOptions(f.Jsonl, f.Out(name)), f.Model,
            new Qwen3Tts.Rank.Distributed.SingleProcessCommunicator(), log);

        var prepared = Read(f.Out(name));
        Assert.Equal(lines.Count, prepared.Count);
        using var codec = SpeechTokenizer.Load(Path.Combine(f.Model, "speech_tokenizer"));
        foreach (var r in prepared.Take(lines.Count - 1))
            Assert.Equal(codec.Encode(SftSampleBuilder.LoadMono24k(r)), r.RefCodes!.ToArray()); // the record's own reference clip
        Assert.Null(prepared[^1].RefCodes);
        int speakers = prepared.Take(lines.Count - 1).Select(r => r.RefAudio).Distinct().Count();
        Assert.Contains($"ref_codes: {lines.Count - 1} record(s) with a ref_text, {speakers} distinct reference clip(s) encoded", log.ToString());
    }

    [Fact]
    public void Info_counts_the_records_ready_for_the_icl_prompt()
    {
        var info = DatasetInfo.Compute(IclData(4, withoutRefText: 0, withRefCodes: 2, tag: "icl-info"));
        Assert.Equal((3, 1), (info.WithRefText, info.WithRefCodes)); // record 0 has ref_codes but no ref_text
        Assert.Contains("icl       3 records with a ref_text, 1 of them with ref_codes", info.ToText());
        var json = JsonNode.Parse(info.ToJson())!;
        Assert.Equal((3, 1), ((int)json["ref_text"]!, (int)json["ref_codes"]!));
    }

    [Fact]
    public void Mixed_on_two_ranks_trains_the_model_of_one_process_and_a_resume_continues_it_exactly()
    {
        string model = TrainingFixture.TinyModel(33, "icl-dp-model");
        string data = IclData(8, withoutRefText: 5, tag: "icl-dp-data");
        string single = TestPaths.NewTempDir("icl-single"), parallel = TestPaths.NewTempDir("icl-parallel"), split = TestPaths.NewTempDir("icl-split");
        var log = new StringWriter();
        var o = Options(model, data, single, "mixed", batch: 2) with { NumEpochs = 2 };
        var expected = new Trainer(o, log).Run();
        Assert.Matches(@"train: [1-7] samples on the ICL prompt, [1-7] on the x-vector prompt \(--train_prompt mixed, --icl_probability 0\.5; 1 have no ref_text\)", log.ToString());

        var results = new TrainingResult[2];
        FakeWorld.Run(2, comm => results[comm.Rank] = new Trainer(o with { OutputModelPath = parallel, BatchSize = 1 }, TextWriter.Null, comm).Run());
        Assert.All(results, r => Assert.Equal(expected.LastLoss!.Value, r.LastLoss!.Value, tolerance: 1e-4));

        new Trainer(o with { OutputModelPath = split }, TextWriter.Null) { StopAfterSteps = 3 }.Run(); // mid-epoch 1
        new Trainer(o with { OutputModelPath = split, ResumeFromCheckpoint = "latest" }, TextWriter.Null).Run();
        Assert.Equal(File.ReadAllBytes(Path.Combine(single, "last", "model.safetensors")), File.ReadAllBytes(Path.Combine(split, "last", "model.safetensors")));

        using var scope = NewDisposeScope();
        using var a = CheckpointFiles.Open(Path.Combine(single, "last"));
        using var b = CheckpointFiles.Open(Path.Combine(parallel, "last"));
        foreach (var e in a.Entries)
            Assert.True(a.Read(e.Name).allclose(b.Read(e.Name), rtol: 0, atol: 1e-6), $"{e.Name}: max difference {(a.Read(e.Name) - b.Read(e.Name)).abs().max().item<float>()}");
    }

    /// <summary>One clip and its transcript: fine-tuning on the ICL prompt lowers the loss on that prompt, and greedy ICL
    /// synthesis from the fine-tuned checkpoint (the prompt synthesize --ref_audio --ref_text builds) is deterministic.</summary>
    [Fact]
    public void A_tiny_model_fine_tuned_on_the_icl_prompt_lowers_its_icl_loss_and_clones_deterministically()
    {
        string model = TrainingFixture.TinyModel(35, "icl-learn-model");
        string data = IclData(1, copies: 4, tag: "icl-learn-data");
        string output = TestPaths.NewTempDir("icl-learn");
        string sentences = Path.Combine(TestPaths.NewTempDir("icl-sentences"), "eval.txt");
        File.WriteAllText(sentences, "Ina kwana?\n");
        var result = new Trainer(Options(model, data, output, "icl") with
        {
            ValidationData = data, NumEpochs = 6, Lr = 3e-3, AdamEpsilon = 1e-8, EvalSentences = sentences, EvalSampleMaxSeconds = 1,
        }, TextWriter.Null).Run();
        // The listening samples clone in context too (only: the run trains the ICL prompt alone).
        string samples = Path.Combine(output, EvalSamples.Folder, $"step-{result.GlobalStep}");
        Assert.Equal(["00-icl.wav", "codes.jsonl"], Directory.GetFiles(samples).Select(Path.GetFileName).Order(StringComparer.Ordinal));

        double IclLoss(string dir)
        {
            var config = Qwen3Tts.Model.Config.Qwen3TtsConfig.Load(Path.Combine(dir, "config.json"));
            var tokenizer = Qwen3TextTokenizer.FromModelDirectory(model);
            using var codec = SpeechTokenizer.Load(Path.Combine(model, "speech_tokenizer"));
            var source = SftDataSource.Open(Read(data).Take(1).ToList(), tokenizer, config, new RecordRules(config, tokenizer.EncodeChat), new Refusals(false),
                TrainPrompt.Parse("icl", 0.5, 7), codec.Encode);
            using var m = ModelDirectory.Load(dir);
            m.eval();
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            using var batch = source.Batch([0]);
            Assert.NotNull(batch.RefFrameMask);
            return SftObjective.Compute(m.Talker, batch, SftCollate.SpeakerEmbeddings(m.SpeakerEncoder!, batch), LossAlignment.Fixed).Loss.item<float>();
        }
        double before = IclLoss(model), after = IclLoss(Path.Combine(output, "last"));
        Assert.True(after < before - 0.5, $"ICL loss {before:F3} before, {after:F3} after");
        Assert.Equal(after, result.BestEvalLoss!.Value, tolerance: 0.05); // the run's validation was on the ICL prompt too

        // Greedy ICL cloning from the checkpoint, twice: the same codes.
        using var tuned = ModelDirectory.Load(Path.Combine(output, "last"));
        tuned.eval();
        var record = Read(data)[0];
        using var speech = SpeechTokenizer.Load(Path.Combine(model, "speech_tokenizer"));
        var request = new SynthesisRequest
        {
            Text = "Ina kwana?", SpeakerEmbedding = SpeakerEmbeddings.FromWav(tuned, record.RefAudio), RefText = record.RefText,
            RefCodes = speech.Encode(SftSampleBuilder.LoadMono24k(record)),
        };
        var synthesizer = new Synthesizer(tuned, Qwen3TextTokenizer.FromModelDirectory(model));
        var greedy = new GenerationConfig(DoSample: false, SubtalkerDoSample: false, MaxNewTokens: 24);
        var first = synthesizer.Synthesize(request, greedy, seed: 1);
        var second = synthesizer.Synthesize(request, greedy, seed: 2);
        Assert.True(first.Frames > 0);
        Assert.Equal(first.Codes, second.Codes);
    }
}
