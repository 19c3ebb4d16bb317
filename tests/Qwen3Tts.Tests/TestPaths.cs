namespace Qwen3Tts.Tests;

static class TestPaths
{
    /// <summary>The repository root (the folder holding Qwen3Tts.Distributed.sln), found from the test binary.</summary>
    public static string RepoRoot { get; } = FindRoot();

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Qwen3Tts.Distributed.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("cannot find the repository root above " + AppContext.BaseDirectory);
    }

    /// <summary>qwen3tts-rank built in the test binary's own configuration (…/bin/Debug/net10.0/).</summary>
    public static string RankDll { get; } = Path.Combine(RepoRoot, "src", "Rank", "bin",
        new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Parent!.Name, "net10.0", "qwen3tts-rank.dll");

    static readonly List<string> Created = [];

    static readonly string Root = Path.Combine(Path.GetTempPath(), "qwen3tts-tests");

    static TestPaths()
    {
        // Training tests write real checkpoints (tens of MB each). The test host is often killed rather than exited,
        // so also sweep folders that earlier runs left behind (older than an hour: never a concurrent run's).
        if (Directory.Exists(Root))
            foreach (var stale in new DirectoryInfo(Root).EnumerateDirectories().Where(d => d.LastWriteTimeUtc < DateTime.UtcNow.AddHours(-1)))
                try { stale.Delete(recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            lock (Created)
                foreach (var dir in Created)
                    try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        };
    }

    public static string NewTempDir(string tag)
    {
        var dir = Path.Combine(Root, $"{tag}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        lock (Created) Created.Add(dir);
        return dir;
    }
}
