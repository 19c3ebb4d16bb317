using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Qwen3Tts.Coordinator.Observability;
using Qwen3Tts.Model.Audio;

namespace Qwen3Tts.Tests.Observability;

/// <summary>Audio in a history row: the WAV becomes a run file uploaded through CreateRunFiles' signed URL (without the
/// API key), and the row holds WandB's audio-file object pointing at it.</summary>
public class WandbMediaTests : CleansTempDirs
{
    const string Key = "FAKEKEY-wandb-media-0123456789-LEAKCANARY";

    static readonly WandbUploadOptions Fast = new()
    {
        FlushInterval = TimeSpan.FromMilliseconds(50), InitialBackoff = TimeSpan.FromMilliseconds(20),
        MaxBackoff = TimeSpan.FromMilliseconds(200), RequestTimeout = TimeSpan.FromSeconds(5), FinishTimeout = TimeSpan.FromSeconds(20),
    };

    static WandbSettings Online(FakeWandbServer server) => new()
    {
        Mode = WandbMode.Online, ApiKey = Key, BaseUrl = server.BaseUrl, Project = "qwen3-tts-media",
    };

    static string Sine(string dir, string name, double hz)
    {
        string path = Path.Combine(dir, name);
        WavWriter.Write(path, Enumerable.Range(0, 2400).Select(i => (float)(0.3 * Math.Sin(2 * Math.PI * hz * i / 24000))).ToArray(), 24000);
        return path;
    }

    static void AssertAudioRow(FakeWandbServer.Run seen, long step, string key, string wav, string caption)
    {
        var row = seen.History.Select(r => JsonNode.Parse(r)!).Single(r => r["_step"]!.GetValue<long>() == step);
        var audio = row[key]!.AsObject();
        byte[] bytes = File.ReadAllBytes(wav);
        string sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
        Assert.Equal("audio-file", audio["_type"]!.GetValue<string>());
        Assert.Equal(sha, audio["sha256"]!.GetValue<string>());
        Assert.Equal(bytes.Length, audio["size"]!.GetValue<int>());
        Assert.Equal(24000, audio["sample_rate"]!.GetValue<int>());
        Assert.Equal(caption, audio["caption"]!.GetValue<string>());
        string path = audio["path"]!.GetValue<string>();
        Assert.Equal($"media/audio/{key.Replace('/', '_')}_{step}_{sha[..20]}.wav", path);
        Assert.Equal(bytes, seen.Files[path]); // the server stored exactly the clip the row points at
    }

    [Fact]
    public void Audio_logged_online_reaches_the_server_as_a_run_file_and_an_audio_row()
    {
        using var server = new FakeWandbServer(Key);
        string dir = TestPaths.NewTempDir("wandb-media");
        string a = Sine(dir, "a.wav", 440), b = Sine(dir, "b.wav", 660);
        using (var run = WandbRun.Start(Online(server), dir, options: Fast))
        {
            run.Log(1, new Dictionary<string, double> { ["train/loss"] = 2 });
            run.Log(3, new Dictionary<string, double> { ["eval/loss"] = 1.5 },
                [new WandbAudio("eval/sample_0", a, 24000, "Sannu da zuwa."), new WandbAudio("eval/sample_1", b, 24000, "Ina kwana?")]);
            Assert.True(run.Finish(0));
        }
        server.AssertNoViolations(); // includes: no API key on the storage PUT, the upload headers sent
        var seen = server.Single();
        Assert.Equal(1.5, JsonNode.Parse(seen.History[1])!["eval/loss"]!.GetValue<double>());
        AssertAudioRow(seen, 3, "eval/sample_0", a, "Sannu da zuwa.");
        AssertAudioRow(seen, 3, "eval/sample_1", b, "Ina kwana?");
        Assert.Equal(2, seen.Files.Count);
        Assert.Equal(0, seen.ExitCode);
    }

    [Fact]
    public void Offline_audio_stays_in_the_run_folder_and_wandb_sync_uploads_it_once()
    {
        using var server = new FakeWandbServer(Key);
        string dir = TestPaths.NewTempDir("wandb-media-offline");
        string a = Sine(dir, "a.wav", 440);
        using (var run = WandbRun.Start(Online(server) with { Mode = WandbMode.Offline, ApiKey = null }, dir, options: Fast))
        {
            run.Log(7, new Dictionary<string, double> { ["eval/loss"] = 1.0 }, [new WandbAudio("eval/sample_0", a, 24000, "hello")]);
            run.Finish(0);
        }
        Assert.Equal(0, server.Requests);
        var stored = Directory.GetFiles(Path.Combine(dir, "wandb", "files", "media", "audio"));
        Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(Assert.Single(stored)));

        WandbSync.Run(dir, Online(server), TextWriter.Null, Fast with { MaxAttempts = 3 });
        server.AssertNoViolations();
        AssertAudioRow(server.Single(), 7, "eval/sample_0", a, "hello");

        int requests = server.Requests;
        WandbSync.Run(dir, Online(server), TextWriter.Null, Fast with { MaxAttempts = 3 });
        Assert.Equal(requests, server.Requests); // uploaded once: nothing pending, nothing sent again
    }
}
