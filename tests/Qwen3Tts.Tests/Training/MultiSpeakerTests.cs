using System.Text.Json.Nodes;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Generation;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Model.Text;
using Qwen3Tts.Rank.Training;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Training;

/// <summary>--multi_speaker trains every speaker of the data as a voice of its own: a free codec row each, the mean
/// embedding over that speaker's clips, spk_id entries in every checkpoint and export, and each speaks by name.</summary>
public class MultiSpeakerTests : CleansTempDirs
{
    static string TwoSpeakers() => TrainingFixture.TwoSpeakerData(4);

    [Fact]
    public void Two_speakers_get_free_rows_their_own_mean_and_each_speaks_by_name()
    {
        string model = TrainingFixture.TinyModel(29, "multi-model");
        string data = TwoSpeakers();
        string output = TestPaths.NewTempDir("multi-out");
        var log = new StringWriter();
        new Trainer(new TrainingOptions
        {
            TrainData = data, ValidationData = data, InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 1,
            BatchSize = 2, GradientAccumulationSteps = 1, Lr = 1e-4, LrScheduler = "constant", MultiSpeaker = true, AddLanguage = "hausa", Coordinator = "off",
        }, log).Run();

        var baseTalker = Qwen3TtsConfig.Load(Path.Combine(model, ModelDirectory.ConfigFile)).Talker;
        var exported = Qwen3TtsConfig.Load(Path.Combine(output, "custom_voice", ModelDirectory.ConfigFile)).Talker;
        int language = exported.CodecLanguageId["hausa"];
        Assert.Equal(["amina", "musa"], exported.SpkId.Keys.Order(StringComparer.Ordinal));
        var rows = new[] { exported.SpkId["amina"], exported.SpkId["musa"] };
        Assert.Equal([3000, 3001], rows);
        Assert.All(rows, r => Assert.DoesNotContain(r, CodecRows.Named(baseTalker)));
        Assert.DoesNotContain(language, rows);
        Assert.Contains("speakers: amina row 3000 (2 records, 1 clips), musa row 3001 (2 records, 1 clips)", log.ToString());

        // Each speaker's voice is the speaker encoder's embedding of its own clip (one clip each), not a shared mean.
        using var baseModel = ModelDirectory.Load(model);
        float[] Embedding(string clip)
        {
            using var scope = NewDisposeScope();
            var sample = new SftSampleBuilder(Qwen3TextTokenizer.FromEmbeddedReference(), p => AudioFile.LoadMono24k(p).Samples)
                .Build(JsonlTrainingData.Read(data).First(r => r.RefAudio.EndsWith(clip, StringComparison.Ordinal)));
            using var batch = SftCollate.Collate([sample], baseModel.Config);
            return SftCollate.SpeakerEmbeddings(baseModel.SpeakerEncoder!, batch)[0].data<float>().ToArray();
        }
        var voices = CheckpointVoices.Read(Path.Combine(output, "best")).ToDictionary(v => v.Name);
        Close.Assert(Embedding("ref_voice.wav"), voices["amina"].Embedding, "amina's mean");
        Close.Assert(Embedding("musa.wav"), voices["musa"].Embedding, "musa's mean");
        Close.AssertDiffer(voices["amina"].Embedding, voices["musa"].Embedding, "two voices");

        // best/ speaks as each by name, in hausa: the two prompts are the trained layout (language row, then the voice's
        // row) and differ at the speaker position only, where each carries its own mean embedding; greedy decoding of the
        // same text differs between the two voices.
        using var speaking = CheckpointVoices.LoadSpeaking(Path.Combine(output, "best"), ScalarType.Float32)!;
        var synthesizer = new Synthesizer(speaking, Qwen3TextTokenizer.FromEmbeddedReference());
        using var scope = NewDisposeScope();
        (IReadOnlyList<PromptPosition> Positions, Tensor Embeds, long[,] Greedy) Speak(string speaker)
        {
            var request = new SynthesisRequest { Text = "Sannu da zuwa.", Language = "hausa", Speaker = speaker };
            using var prompt = synthesizer.Prompts.Build(request);
            var greedy = new GenerationConfig(DoSample: false, SubtalkerDoSample: false, MaxNewTokens: 16, RepetitionPenalty: 1.0);
            return (synthesizer.Prompts.Describe(request).Positions, prompt.InputsEmbeds[0].clone(), synthesizer.Generate(prompt, greedy, seed: 0).Codes);
        }
        var (aminaLayout, amina, aminaCodes) = Speak("amina");
        var (musaLayout, musa, musaCodes) = Speak("musa");
        int slot = aminaLayout.ToList().FindIndex(p => p.Codec == "speaker:3000");
        Assert.Equal("language:" + language, aminaLayout[slot - 2].Codec);
        Assert.Equal("speaker:3001", musaLayout[slot].Codec);
        var differs = (amina - musa).abs().amax([1L]).gt(1e-6).nonzero().flatten().data<long>().ToArray();
        Assert.Equal([(long)slot], differs);
        var row = speaking.state_dict()[VoiceExport.CodecEmbedding];
        Close.Assert(voices["amina"].Embedding, row[3000].data<float>().ToArray(), "amina's row");
        Close.Assert(voices["musa"].Embedding, row[3001].data<float>().ToArray(), "musa's row");
        Assert.False(aminaCodes.GetLength(0) == musaCodes.GetLength(0) && aminaCodes.Cast<long>().SequenceEqual(musaCodes.Cast<long>()),
            "the two voices decoded the same codes");
    }

    [Fact]
    public void Rows_for_new_speakers_start_at_3000_and_skip_named_ones()
    {
        var t = Presets.Config("tiny").Talker;
        Assert.Equal([3000, 3001, 3002], CodecRows.SpeakerRows(t, 3));
        var json = (JsonObject)Presets.ConfigJson("tiny").DeepClone();
        json["talker_config"]!["spk_id"] = new JsonObject { ["old"] = 3001 };
        var withSpeaker = Qwen3TtsConfig.Parse(json, "with a speaker").Talker;
        Assert.Equal([3000, 3002], CodecRows.SpeakerRows(withSpeaker, 2));
        // Past the top, below 3000 downwards.
        Assert.Equal(2999, CodecRows.SpeakerRows(t, t.VocabSize - 3000 + 1)[^1]);
        Assert.Throws<ConfigException>(() => CodecRows.SpeakerRows(t, t.VocabSize));
    }

    [Fact]
    public void Info_and_preflight_give_each_speakers_and_languages_records_and_audio_and_warn_below_a_minute()
    {
        string data = TwoSpeakers();
        string dir = Path.GetDirectoryName(data)!;
        var records = JsonlTrainingData.Read(data);
        foreach (var r in records) File.Copy(Path.Combine(dir, "ref_voice.wav"), Path.Combine(dir, r.Audio), overwrite: true);

        var info = DatasetInfo.Compute(data);
        double Seconds(string speaker) => records.Where(r => r.SpeakerId == speaker).Sum(r => r.AudioCodes.Frames) / 12.5;
        Assert.Equal([new Coverage("amina", 2, Seconds("amina")), new Coverage("musa", 2, Seconds("musa"))],
            info.SpeakerCoverage.OrderBy(c => c.Key, StringComparer.Ordinal));
        Assert.Equal([new Coverage("hausa", 4, Seconds("amina") + Seconds("musa"))], info.LanguageCoverage);
        string text = info.ToText();
        Assert.Contains($"warning   speaker amina: {Seconds("amina"):F1} s of audio in 2 record(s), less than a minute", text);
        Assert.Contains("warning   speaker musa:", text);

        // Preflight counts the audio it decoded (here every clip is the demo clip).
        var report = Preflight.Run(data);
        double clip = AudioFile.LoadMono24k(Path.Combine(dir, "ref_voice.wav")).Samples.Length / 24000.0;
        Assert.All(report.SpeakerCoverage, c => Assert.Equal(2 * clip, c.Seconds, 2));
        Assert.Contains("speaker amina:", report.ToText());
        Assert.Contains("less than a minute", report.ToText());
        Assert.DoesNotContain(VoiceCoverage.Warnings([new Coverage("long", 20, 75)]), _ => true);
    }

    [Fact]
    public void The_speaker_can_come_from_another_column()
    {
        string data = TwoSpeakers();
        File.WriteAllLines(data, File.ReadAllLines(data).Select(l =>
        {
            var o = JsonNode.Parse(l)!.AsObject();
            o["narrator"] = (string)o["speaker_id"]! == "amina" ? "Zainab" : "Bello";
            o.Remove("speaker_id");
            return o.ToJsonString();
        }));
        Assert.Equal(["Zainab", "Zainab", "Bello", "Bello"], JsonlTrainingData.Read(data).Select(r => r.Field("narrator")));
        string output = TestPaths.NewTempDir("multi-column-out");
        new Trainer(new TrainingOptions
        {
            TrainData = data, InitModelPath = TrainingFixture.TinyModel(29, "multi-model"), OutputModelPath = output, MixedPrecision = "fp32",
            NumEpochs = 1, BatchSize = 2, GradientAccumulationSteps = 1, MultiSpeaker = true, SpeakerColumn = "narrator", Coordinator = "off",
        }, TextWriter.Null).Run();
        Assert.Equal(["Bello", "Zainab"], CheckpointVoices.Read(Path.Combine(output, "last")).Select(v => v.Name));
    }
}
