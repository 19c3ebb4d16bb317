using System.Net;
using System.Security.Cryptography;
using Qwen3Tts.Entry.Hub;
using Qwen3Tts.Tests.Training;

namespace Qwen3Tts.Tests.Hub;

/// <summary>Publishing a folder through the commit API against the loopback stand-in (<see cref="HubStandIn"/>): the repo
/// created, LFS content sent through the batch API and checked there by sha256 and size, one commit naming each file
/// (inline or by LFS pointer), unchanged files not sent again, server errors retried, refusals in words, and the token
/// sent nowhere but to the Hub.</summary>
public class HubUploadTests : CleansTempDirs
{
    const string Token = "hf_StandInWriteToken0123456789";

    static HubUploader Uploader(HubStandIn hub, TextWriter log, string? token = Token) =>
        HubUploader.Create(hub.Endpoint, token, log, attempts: 4, firstBackoff: TimeSpan.FromMilliseconds(20));

    /// <summary>A tiny model folder with a card: weights (LFS) and small text files (inline).</summary>
    static string Folder(string tag)
    {
        string dir = TrainingFixture.TinyModel(47, tag);
        File.WriteAllText(Path.Combine(dir, "README.md"), "---\nlibrary_name: qwen-tts\n---\n# a card\n");
        return dir;
    }

    static Dictionary<string, byte[]> Local(string dir) => Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)
        .ToDictionary(f => Path.GetRelativePath(dir, f).Replace(Path.DirectorySeparatorChar, '/'), File.ReadAllBytes);

    [Fact]
    public async Task A_folder_is_committed_with_lfs_pointers_checked_by_the_hub_and_unchanged_files_are_not_sent_again()
    {
        using var hub = new HubStandIn(Token);
        string folder = Folder("hub-upload-folder");
        var log = new StringWriter();
        var repo = new HubRepo("me/tts-best", HubRepoType.Model);

        var first = await Uploader(hub, log).UploadFolderAsync(repo, folder, "Upload best/", isPrivate: true);

        Assert.True(first.Created);
        Assert.Equal([("me/tts-best", true)], hub.Created);
        var commit = Assert.Single(hub.Commits);
        Assert.Equal("Upload best/", commit.Summary);
        Assert.Equal(first.CommitOid, commit.Commit);
        var local = Local(folder);
        // Every file once; each .safetensors by pointer (its sha256 and size, which the stand-in matched to the stored
        // content), every small file inline.
        Assert.Equal(local.Keys.Order(StringComparer.Ordinal), commit.Files.Select(f => f.Path));
        foreach (var (key, path, oid, size) in commit.Files)
        {
            bool lfs = HubStandIn.IsLfs(path, local[path].Length);
            Assert.Equal(lfs ? "lfsFile" : "file", key);
            if (lfs) Assert.Equal((Convert.ToHexStringLower(SHA256.HashData(local[path])), (long)local[path].Length), (oid, size!.Value));
        }
        Assert.Contains(commit.Files, f => f.Path == "model.safetensors" && f.Key == "lfsFile");
        Assert.Contains(commit.Files, f => f.Path == "README.md" && f.Key == "file");
        var published = hub.Files("models", "me/tts-best");
        foreach (var (path, bytes) in local) Assert.Equal(bytes, published[path]);
        int puts = hub.Requests.Count(r => r.Method == "PUT");
        Assert.Equal(local.Count(f => HubStandIn.IsLfs(f.Key, f.Value.Length)), puts);
        // The storage got no token (the stand-in refuses one there, as S3 refuses credentials beside a presigned address).
        Assert.All(hub.Requests.Where(r => r.Method == "PUT"), r => Assert.Null(r.Authorization));

        // Again, unchanged: nothing sent, no commit.
        var again = await Uploader(hub, log).UploadFolderAsync(repo, folder, "Upload best/");
        Assert.Null(again.CommitOid);
        Assert.False(again.Created);
        Assert.Single(hub.Commits);
        Assert.Equal(puts, hub.Requests.Count(r => r.Method == "PUT"));
        Assert.Contains("already holds all", log.ToString());

        // The card changed: a commit of the card alone, no LFS content sent.
        File.AppendAllText(Path.Combine(folder, "README.md"), "eval loss 1.23\n");
        var third = await Uploader(hub, log).UploadFolderAsync(repo, folder, "Upload best/ (step 20)");
        Assert.Equal(["README.md"], third.Committed);
        Assert.Equal(2, hub.Commits.Count);
        Assert.Equal(puts, hub.Requests.Count(r => r.Method == "PUT"));

        // What was published loads by name: downloaded into an empty cache, byte for byte the folder.
        var env = new Dictionary<string, string> { ["HF_HUB_CACHE"] = TestPaths.NewTempDir("hub-upload-cache"), ["HF_ENDPOINT"] = hub.Endpoint, ["HF_TOKEN"] = Token };
        string snapshot = HubPaths.Resolve("me/tts-best", HubRepoType.Model, "--model", null, env, log: log);
        foreach (var (path, bytes) in Local(folder)) Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(snapshot, path)));
        Assert.DoesNotContain(Token, log.ToString());
    }

    [Fact]
    public async Task Server_errors_are_retried_and_large_objects_go_in_parts()
    {
        using var hub = new HubStandIn(Token) { PartBytes = 64 * 1024 };
        foreach (string route in new[] { "create", "batch", "put", "commit" })
            hub.FailAt[route] = new([HttpStatusCode.InternalServerError, HttpStatusCode.InternalServerError]);
        string folder = Folder("hub-upload-retry");
        var log = new StringWriter();

        var result = await Uploader(hub, log).UploadFolderAsync(new HubRepo("me/tts-last", HubRepoType.Model), folder, "Upload last/");

        Assert.NotNull(result.CommitOid);
        foreach (var (path, bytes) in Local(folder)) Assert.Equal(bytes, hub.Files("models", "me/tts-last")[path]);
        Assert.All(hub.FailAt.Values, q => Assert.Empty(q)); // every fault was met, and got past
        string text = log.ToString();
        Assert.Contains("creating me/tts-last: HTTP 500; retrying (attempt 2 of 4)", text);
        Assert.Contains("the commit to me/tts-last: HTTP 500; retrying (attempt 3 of 4)", text);
        // The weights went in parts: more part PUTs than LFS files, each part under its own address.
        long weights = new FileInfo(Path.Combine(folder, "model.safetensors")).Length;
        Assert.True(weights > 64 * 1024, $"the tiny model's weights ({weights} bytes) should need several parts");
        Assert.Contains(hub.Requests, r => r.Method == "PUT" && r.Path.EndsWith("/2", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Refusals_name_the_fix_and_a_file_holding_the_token_is_never_sent()
    {
        using var hub = new HubStandIn(Token);
        string folder = Folder("hub-upload-refused");
        var repo = new HubRepo("me/tts-best", HubRepoType.Model);
        var log = new StringWriter();

        var noToken = await Assert.ThrowsAsync<HubException>(() => Uploader(hub, log, token: null).UploadFolderAsync(repo, folder, "Upload"));
        Assert.Contains("HTTP 401", noToken.Message);
        Assert.Contains("HF_TOKEN", noToken.Message);

        hub.FailAt["create"] = new([HttpStatusCode.Forbidden]);
        var forbidden = await Assert.ThrowsAsync<HubException>(() => Uploader(hub, log).UploadFolderAsync(repo, folder, "Upload"));
        Assert.Contains("may not write", forbidden.Message);

        int before = hub.Requests.Count;
        File.WriteAllText(Path.Combine(folder, "notes.txt"), $"HF_TOKEN={Token}\n");
        var secret = await Assert.ThrowsAsync<HubException>(() => Uploader(hub, log).UploadFolderAsync(repo, folder, "Upload"));
        Assert.Contains("notes.txt holds the value of --hub_token", secret.Message);
        Assert.DoesNotContain(Token, secret.Message);
        Assert.Equal(before, hub.Requests.Count); // refused before any request
        Assert.Empty(hub.Commits);
    }
}
