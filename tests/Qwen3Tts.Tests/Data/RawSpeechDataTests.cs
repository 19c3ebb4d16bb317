using Parquet.Serialization;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model.Audio;

namespace Qwen3Tts.Tests.Data;

/// <summary><see cref="RawSpeechData"/>: the same utterances as a JSONL file, as Hugging Face Parquet written by two
/// independent writers (Apache Arrow C++ through ParquetSharp, and Parquet.Net's serializer) with the audio struct
/// {bytes, path}, and as a folder of clips with transcripts, read back to the same ids, texts, speakers and samples;
/// malformed records are named by file, line and field.</summary>
public class RawSpeechDataTests : CleansTempDirs
{
    readonly string dir = TestPaths.NewTempDir("rawspeech");

    static readonly (string Id, string Text, string Speaker, int Rate, double Hz)[] Utterances =
    [
        ("spk1/utt0", "Sannu da zuwa.", "spk1", 22050, 300),
        ("spk1/utt1", "Ina kwana?", "spk1", 44100, 400),
        ("spk2/utt2", "Na gode sosai.", "spk2", 16000, 500),
    ];

    static float[] Tone(double hz, int rate, double seconds = 0.6) =>
        Enumerable.Range(0, (int)(rate * seconds)).Select(n => (float)(0.3 * Math.Sin(2 * Math.PI * hz * n / rate))).ToArray();

    /// <summary>corpus/{id}.wav + corpus/{id}.txt, and ref.wav.</summary>
    string Corpus()
    {
        string corpus = Path.Combine(dir, "corpus");
        foreach (var u in Utterances)
        {
            string wav = Path.Combine(corpus, u.Id + ".wav");
            Directory.CreateDirectory(Path.GetDirectoryName(wav)!);
            WavWriter.Write(wav, Tone(u.Hz, u.Rate), u.Rate);
            File.WriteAllText(Path.ChangeExtension(wav, ".txt"), u.Text + "\n");
        }
        WavWriter.Write(Path.Combine(dir, "ref.wav"), Tone(200, 24000, 2.0), 24000);
        return corpus;
    }

    sealed class HfAudio
    {
        public byte[]? bytes { get; set; }
        public string? path { get; set; }
    }

    sealed class HfRow
    {
        public string? id { get; set; }
        public HfAudio? audio { get; set; }
        public string? text { get; set; }
        public string? speaker_id { get; set; }
        public string? language { get; set; }
        public string? gender { get; set; }
        public HfAudio? ref_audio { get; set; }
    }

    [Fact]
    public async Task Jsonl_both_parquet_writers_and_a_folder_give_the_same_records()
    {
        string corpus = Corpus();
        byte[] Clip(string id) => File.ReadAllBytes(Path.Combine(corpus, id + ".wav"));
        byte[] reference = File.ReadAllBytes(Path.Combine(dir, "ref.wav"));

        string jsonl = Path.Combine(dir, "train.jsonl");
        File.WriteAllLines(jsonl, Utterances.Select(u => new System.Text.Json.Nodes.JsonObject
        {
            ["id"] = u.Id, ["audio"] = $"corpus/{u.Id}.wav", ["text"] = u.Text, ["speaker_id"] = u.Speaker, ["language"] = "hausa",
            ["gender"] = "female", ["ref_audio"] = "ref.wav",
        }.ToJsonString()));

        string arrow = Path.Combine(dir, "arrow", "train-00000-of-00001.parquet");
        Directory.CreateDirectory(Path.GetDirectoryName(arrow)!);
        ArrowParquet.WriteRaw(arrow,
            Utterances.Select(u => ((AudioValue?)new AudioValue(Clip(u.Id), Path.GetFileName(u.Id) + ".wav", true), (string?)u.Text,
                (string?)u.Speaker, (string?)"hausa", (string?)"female", (string?)null)).ToList(),
            rowGroupSize: 2, extra: new Dictionary<string, string?[]> { ["id"] = Utterances.Select(u => (string?)u.Id).ToArray() });

        string parquetNet = Path.Combine(dir, "pqnet.parquet");
        await ParquetSerializer.SerializeAsync(Utterances.Select(u => new HfRow
        {
            id = u.Id, audio = new HfAudio { bytes = Clip(u.Id), path = Path.GetFileName(u.Id) + ".wav" }, text = u.Text,
            speaker_id = u.Speaker, language = "hausa", gender = "female", ref_audio = new HfAudio { bytes = reference, path = "ref.wav" },
        }), parquetNet);

        Assert.Equal(RawSpeechFormat.Jsonl, RawSpeechData.Detect(jsonl));
        Assert.Equal(RawSpeechFormat.Parquet, RawSpeechData.Detect(Path.GetDirectoryName(arrow)!));
        Assert.Equal(RawSpeechFormat.Parquet, RawSpeechData.Detect(parquetNet));
        Assert.Equal(RawSpeechFormat.Folder, RawSpeechData.Detect(corpus));

        var sources = new Dictionary<string, IReadOnlyList<RawSpeechRecord>>
        {
            ["jsonl"] = RawSpeechData.Read(jsonl, skipBad: false, out var s1),
            ["arrow"] = RawSpeechData.Read(Path.GetDirectoryName(arrow)!, skipBad: false, out var s2),
            ["parquet.net"] = RawSpeechData.Read(parquetNet, skipBad: false, out var s3),
            ["folder"] = RawSpeechData.Read(corpus, skipBad: false, out var s4),
        };
        Assert.All(new[] { s1, s2, s3, s4 }, Assert.Empty);

        foreach (var (name, records) in sources)
        {
            Assert.Equal(Utterances.Length, records.Count);
            for (int i = 0; i < Utterances.Length; i++)
            {
                var (id, text, speaker, rate, _) = Utterances[i];
                var r = records[i];
                Assert.Equal(id, r.Id);
                Assert.Equal(text, r.Text);
                var audio = r.Audio.ReadChannels();
                Assert.Equal(rate, audio.SampleRate);
                Assert.Equal(WavReader.Read(Path.Combine(corpus, id + ".wav")).Samples, audio.ToMono().Samples);
                if (name == "folder")
                {
                    Assert.Null(r.SpeakerId);
                    Assert.Equal(Path.Combine(corpus, id + ".txt"), r.Source);
                    continue;
                }
                Assert.Equal(speaker, r.SpeakerId);
                Assert.Equal("hausa", r.Language);
                Assert.Equal("female", r.Extra!["gender"]);
                Assert.False(r.Extra.ContainsKey("id"));
                Assert.Equal(i + 1, r.Line);
            }
        }
        // Files for JSONL (resolved from the JSONL's folder), bytes for Parquet, named by file, row and struct path.
        Assert.Equal(Path.Combine(corpus, "spk1", "utt0.wav"), sources["jsonl"][0].Audio.Path);
        Assert.Null(sources["arrow"][1].Audio.Path);
        Assert.Equal("train-00000-of-00001.parquet: row 1: utt1.wav", sources["arrow"][1].Audio.Name);
        // The reference clip: a file for JSONL, the same bytes inline for Parquet.Net; the same clip either way.
        Assert.Equal(Path.Combine(dir, "ref.wav"), sources["jsonl"][2].RefAudio!.Path);
        Assert.Equal(reference, sources["parquet.net"][2].RefAudio!.Bytes);
        Assert.Equal(sources["jsonl"][2].RefAudio!.LoadMono24k().Samples, sources["parquet.net"][2].RefAudio!.LoadMono24k().Samples);
        Assert.Null(sources["arrow"][0].RefAudio);
    }

    [Fact]
    public void Jsonl_keeps_other_fields_and_codes_as_written_and_names_malformed_lines()
    {
        string jsonl = Path.Combine(dir, "mixed.jsonl");
        File.WriteAllLines(jsonl,
        [
            """{"audio": "/abs/a.wav", "text": "one", "id": 17, "duration": 1.5, "tags": ["x"], "ref_text": "ref words", "audio_codes": [[1, 2], [3, "x"], null]}""",
            "",
            """{"audio": "rel/b.flac", "text": ""}""",
            """{"text": "no audio"}""",
            """{"audio": "c.wav", "text": 5}""",
            """not json""",
            """{"audio": "d.wav"}""",
            """{"audio": "e.wav", "text": "codes wrong", "audio_codes": "abc"}""",
        ]);
        var records = RawSpeechData.ReadJsonl(jsonl, skipBad: true, out var skipped);

        Assert.Equal(2, records.Count);
        var a = records[0];
        Assert.Equal("17", a.Id);
        Assert.Equal("/abs/a.wav", a.Audio.Path);
        Assert.Equal("1.5", a.Extra!["duration"]);
        Assert.Equal("[\"x\"]", a.Extra["tags"]);
        Assert.Equal("ref words", a.Extra["ref_text"]);
        Assert.Equal(3, a.AudioCodes!.Length);
        Assert.Equal([1L, 2L], a.AudioCodes[0]!.Select(c => c!.Value));
        Assert.Null(a.AudioCodes[1]![1]);
        Assert.Null(a.AudioCodes[2]);
        var b = records[1];
        Assert.Equal("mixed.jsonl:3", b.Id); // no id: file name and line
        Assert.Equal(Path.Combine(dir, "rel", "b.flac"), b.Audio.Path);
        Assert.Equal("", b.Text);           // empty text is for preflight to report, not a read error

        Assert.Equal([(4, "audio"), (5, "text"), (6, "json"), (7, "text"), (8, "audio_codes")], skipped.Select(x => (x.Line, x.Field)));
        Assert.Equal("missing required field", skipped[0].Reason);
        Assert.Equal("expected a string, found number", skipped[1].Reason);
        Assert.StartsWith("not valid JSON", skipped[2].Reason);
        Assert.Equal("missing required field", skipped[3].Reason);
        Assert.Equal("expected an array of frames, found string", skipped[4].Reason);

        var e = Assert.Throws<DataException>(() => RawSpeechData.ReadJsonl(jsonl, skipBad: false, out _));
        Assert.Equal($"{jsonl}:4: audio: missing required field", e.Bad.ToString());
        Assert.StartsWith($"{jsonl}: {e.Count} records cannot be used", e.Message); // every bad line at once
    }

    [Fact]
    public void A_folder_pairs_clips_with_transcripts_in_subfolders_and_reports_clips_without_one()
    {
        string corpus = Corpus();
        WavWriter.Write(Path.Combine(corpus, "spk2", "orphan.wav"), Tone(250, 16000), 16000);          // no transcript
        File.WriteAllText(Path.Combine(corpus, "notes.txt"), "a transcript without a clip is ignored");
        File.Copy(Path.Combine(corpus, "spk1", "utt0.wav"), Path.Combine(corpus, "spk1", "utt0.flac")); // same name twice
        var records = RawSpeechData.ReadFolder(corpus, skipBad: true, out var skipped);

        Assert.Equal(["spk1/utt0", "spk1/utt1", "spk2/utt2"], records.Select(r => r.Id));
        Assert.Equal(2, skipped.Count);
        Assert.Contains(skipped, s => s.Source.EndsWith("utt0.wav") && s.Reason.Contains("utt0.flac has the same name"));
        Assert.Contains(skipped, s => s.Source.EndsWith("orphan.wav") && s.Field == "text" && s.Reason.Contains("expected orphan.txt"));
        var e = Assert.Throws<DataException>(() => RawSpeechData.ReadFolder(corpus, skipBad: false, out _));
        Assert.Contains("utt0.flac has the same name", string.Join("\n", e.Details));

        var empty = TestPaths.NewTempDir("empty");
        var none = Assert.Throws<InvalidDataException>(() => RawSpeechData.Read(empty, false, out _));
        Assert.Contains("no .wav, .flac or .mp3 clips", none.Message);
    }
}
