using Qwen3Tts.Cli.Commands;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Rank.Training;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Training;

/// <summary>Every checkpoint carries the run's voice (name, codec row, mean speaker embedding), so synthesis by
/// name works from best/, last/, epoch-N/ and checkpoint-N/, not only from the final custom_voice export.</summary>
public class SpeakingCheckpointsTests : CleansTempDirs
{
    const string Speaker = "hausa_speaker";

    [Fact]
    public void Every_checkpoint_of_a_two_epoch_run_speaks_by_name_deterministically()
    {
        string model = TrainingFixture.TinyModel(51, "speak-model");
        string output = TestPaths.NewTempDir("speak-out");
        // 4 rows in batches of 2: 2 steps an epoch, 4 in all; checkpoint-3 from --save_steps 3.
        new Trainer(new TrainingOptions
        {
            TrainData = TrainingFixture.DemoData(4, tag: "speak-data"), ValidationData = TrainingFixture.DemoData(2, tag: "speak-val"),
            InitModelPath = model, OutputModelPath = output, MixedPrecision = "fp32", NumEpochs = 2, BatchSize = 2,
            GradientAccumulationSteps = 1, SaveSteps = 3, SpeakerName = Speaker, ExportEveryEpoch = true,
        }, TextWriter.Null).Run();

        Assert.True(Directory.Exists(Path.Combine(output, "epoch-1")));
        Assert.True(Directory.Exists(Path.Combine(output, "epoch-2")));
        Assert.False(Directory.Exists(Path.Combine(output, "epoch-0")));

        var voice = Assert.Single(CheckpointVoices.Read(Path.Combine(output, "last")));
        Assert.Equal((Speaker, VoiceExport.SpeakerRow), (voice.Name, voice.CodecRow));
        // The custom_voice export stores the same voice in its codec row.
        using (var exported = CheckpointFiles.Open(Path.Combine(output, "custom_voice")))
        using (var codec = exported.Read(VoiceExport.CodecEmbedding))
            Assert.Equal(voice.Embedding, codec[VoiceExport.SpeakerRow].data<float>().ToArray());

        // custom_voice/ came from best/ (validation ran): export-voice from best/ writes the same folder, file for file.
        var source = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(output, "custom_voice", VoiceExport.SourceFile)))!;
        Assert.Equal(Path.GetFullPath(Path.Combine(output, "best")), (string)source["checkpoint"]!);
        string again = Path.Combine(TestPaths.NewTempDir("speak-export"), "voice");
        var cli = Qwen3Tts.Tests.Entry.Executables.Run(TestPaths.CliDll, ["export-voice", "--checkpoint", Path.Combine(output, "best"), "--out", again]);
        Assert.True(cli.Exit == 0, cli.Stderr);
        AssertSameFiles(Path.Combine(output, "custom_voice"), again);
        Assert.True(Qwen3Tts.Model.ModelInspector.Inspect(again).IsValid);
        using (Qwen3Tts.Model.ModelDirectory.Load(again)) { } // strict: exactly the custom_voice layout
        // --export_every_epoch: one per epoch, each from its epoch's checkpoint.
        foreach (int epoch in new[] { 1, 2 })
        {
            string perEpoch = Path.Combine(output, $"epoch-{epoch}-custom_voice");
            Assert.True(Qwen3Tts.Model.ModelInspector.Inspect(perEpoch).IsValid, perEpoch);
            Assert.EndsWith($"epoch-{epoch}", (string)System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(perEpoch, VoiceExport.SourceFile)))!["checkpoint"]!);
        }

        foreach (string name in new[] { "best", "last", "epoch-2", "checkpoint-3" })
        {
            string dir = Path.Combine(output, name);
            Assert.Equal(voice.Embedding, Assert.Single(CheckpointVoices.Read(dir)).Embedding); // computed once per run
            string first = Speak(dir, "a"), second = Speak(dir, "b");
            Assert.Equal(File.ReadAllText(first), File.ReadAllText(second)); // greedy: the same codes twice
            Assert.Contains("\"audio_codes\"", File.ReadAllText(first));
        }
    }

    [Fact]
    public void A_checkpoint_without_a_speaker_table_still_says_it_has_no_named_speakers()
    {
        string model = TrainingFixture.TinyModel(52, "speak-plain");
        Assert.Empty(CheckpointVoices.Read(model));
        Assert.Null(CheckpointVoices.LoadSpeaking(model, ScalarType.Float32));
        var e = Assert.Throws<ArgumentException>(() => Speak(model, "x"));
        Assert.Contains("has no named speakers", e.Message);
    }

    static void AssertSameFiles(string expected, string actual)
    {
        string[] Files(string root) => Directory.GetFiles(root, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(root, f)).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(Files(expected), Files(actual));
        foreach (string file in Files(expected))
            Assert.True(File.ReadAllBytes(Path.Combine(expected, file)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(actual, file))), file);
    }

    static string Speak(string dir, string tag)
    {
        string codes = Path.Combine(dir, $"..", $"speak-{Path.GetFileName(dir)}-{tag}.jsonl");
        var settings = new SynthesizeCommand.Settings(dir, [new SynthesisInput { Id = "0000", Text = "Sannu da zuwa.", Language = "auto", Speaker = Speaker }],
            Out: null, OutDir: null, CodesOut: codes, CodesOnly: true,
            new SynthesizeCommand.SamplingOverrides(DoSample: false, SubtalkerDoSample: false, MaxNewTokens: 8), Seed: 0);
        Assert.Equal(0, SynthesizeCommand.Run(settings, TextWriter.Null, TextWriter.Null));
        return codes;
    }
}

/// <summary>A rank killed with SIGKILL after a checkpoint, then resumed, ends exactly as the uninterrupted run: weights,
/// optimizer state, the checkpoints' voice and the custom_voice export, byte for byte.</summary>
public class KilledRunTests : CleansTempDirs
{
    /// <param name="multiSpeaker">two speakers (--multi_speaker) and an added language: their rows, voices and language
    /// row are restored with the rest.</param>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Sigkill_after_a_checkpoint_then_resume_equals_the_uninterrupted_run(bool multiSpeaker)
    {
        string model = TrainingFixture.TinyModel(53, "kill-model");
        string data = multiSpeaker ? TrainingFixture.TwoSpeakerData(8, copies: 6, tag: "kill-data") : TrainingFixture.DemoData(8, copies: 6, tag: "kill-data");
        string whole = TestPaths.NewTempDir("kill-whole"), split = TestPaths.NewTempDir("kill-split");
        string[] Args(string output) => ["--train_jsonl", data, "--init_model_path", model, "--output_model_path", output, "--mixed_precision", "fp32",
            "--num_epochs", "2", "--batch_size", "2", "--gradient_accumulation_steps", "1", "--lr", "1e-3", "--save_steps", "2", "--logging_steps", "1",
            "--speaker_name", "amina", .. multiSpeaker ? (string[])["--multi_speaker", "--add_language", "hausa"] : []];
        var env = new Dictionary<string, string> { ["OMP_NUM_THREADS"] = "1" };

        var uninterrupted = Qwen3Tts.Tests.Entry.Executables.Run(TestPaths.RankDll, Args(whole), env, TimeSpan.FromMinutes(3));
        Assert.True(uninterrupted.Exit == 0, uninterrupted.Stderr);

        // The killed run: SIGKILL as soon as checkpoint-2/ is in place (it appears whole, by rename), far from the run's
        // 48 steps; a save under way at that moment is cut short.
        var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in (string[])[TestPaths.RankDll, .. Args(split)]) start.ArgumentList.Add(a);
        start.Environment["OMP_NUM_THREADS"] = "1";
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("OMPI_") || k.StartsWith("PMI") || k is "RANK" or "WORLD_SIZE").ToList())
            start.Environment.Remove(key);
        using (var process = System.Diagnostics.Process.Start(start)!)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            try
            {
                var clock = System.Diagnostics.Stopwatch.StartNew();
                string marker = Path.Combine(split, "checkpoint-2", "training_state", "trainer_state.json");
                // Polled from this thread: the thread pool may be busy draining the pipes, so no Task.Delay here.
                while (!File.Exists(marker) && !process.HasExited && clock.Elapsed < TimeSpan.FromMinutes(3)) Thread.Sleep(10);
                Assert.False(process.HasExited, "the run ended before it was killed");
                process.Kill(entireProcessTree: true); // SIGKILL to the rank (and any host process above it): no handler runs
                Assert.True(process.WaitForExit(TimeSpan.FromSeconds(30)), "still running after SIGKILL");
            }
            finally
            {
                if (!process.HasExited) process.Kill(entireProcessTree: true);
            }
        }
        Assert.True(Directory.Exists(Path.Combine(split, "checkpoint-2")));
        Assert.False(File.Exists(Path.Combine(split, "custom_voice", "model.safetensors")), string.Join(", ", Directory.GetFileSystemEntries(split).Select(Path.GetFileName)));

        var resumed = Qwen3Tts.Tests.Entry.Executables.Run(TestPaths.RankDll, [.. Args(split), "--resume_from_checkpoint", "latest"], env, TimeSpan.FromMinutes(3));
        Assert.True(resumed.Exit == 0, resumed.Stderr);
        Assert.Contains("resumed from", resumed.Stdout);

        foreach (string file in new[] { "last/model.safetensors", "last/training_state/optimizer.safetensors", $"last/{CheckpointVoices.FileName}",
                     $"epoch-2/{CheckpointVoices.FileName}", "custom_voice/model.safetensors", "custom_voice/config.json" })
            Assert.True(File.ReadAllBytes(Path.Combine(whole, file)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(split, file))), file);
        if (multiSpeaker)
            Assert.Equal(["amina", "musa"], Qwen3Tts.Model.Config.Qwen3TtsConfig.Load(Path.Combine(split, "custom_voice", "config.json")).Talker.SpkId.Keys.Order(StringComparer.Ordinal));
    }
}
