namespace Qwen3Tts.Tests;

static class TestPaths
{
    /// <summary>Running under CI (CI=true): a tool .ci/run installs must be there, so a test that would skip without it fails.</summary>
    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>Skips (saying why) on a developer machine; fails under CI, where .ci/run installs every tool the tests use.</summary>
    public static void SkipOrFailInCi(Xunit.Abstractions.ITestOutputHelper output, string message)
    {
        if (InCi) Assert.Fail($"{message}: CI must have it; .ci/run installs it");
        output.WriteLine($"SKIPPED: {message}");
    }

    /// <summary>The repository root (the folder holding Qwen3Tts.Distributed.sln), found from the test binary.</summary>
    public static string RepoRoot { get; } = FindRoot();

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Qwen3Tts.Distributed.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("cannot find the repository root above " + AppContext.BaseDirectory);
    }

    /// <summary>qwen3tts-rank built in the test binary's own configuration (…/bin/Debug/net10.0/).</summary>
    public static string RankDll { get; } = Built("src/Rank", "qwen3tts-rank.dll");

    public static string CliDll { get; } = Built("src/Cli", "qwen3tts.dll");

    public static string CoordinatorDll { get; } = Built("src/CoordinatorApp", "qwen3tts-coordinator.dll");

    public static string BenchDll { get; } = Built("bench/Qwen3Tts.Bench", "qwen3tts-bench.dll");

    static string Built(string project, string dll) => Path.Combine(RepoRoot, project, "bin",
        new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/')).Parent!.Name, "net10.0", dll);

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

    [ThreadStatic] static List<string>? createdOnThisThread;

    public static string NewTempDir(string tag)
    {
        var dir = Path.Combine(Root, $"{tag}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        lock (Created) Created.Add(dir);
        (createdOnThisThread ??= []).Add(dir);
        return dir;
    }

    /// <summary>How many folders this thread has created so far (a mark for <see cref="DeleteThisThreadsDirsSince"/>).</summary>
    internal static int ThisThreadsDirCount => createdOnThisThread?.Count ?? 0;

    /// <summary>Deletes the folders this thread created after <paramref name="mark"/>: a test's own, since xunit runs a
    /// synchronous test's constructor, body and Dispose on one thread.</summary>
    internal static void DeleteThisThreadsDirsSince(int mark)
    {
        if (createdOnThisThread is null || createdOnThisThread.Count <= mark) return;
        foreach (var dir in createdOnThisThread.Skip(mark))
            try { Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        createdOnThisThread.RemoveRange(mark, createdOnThisThread.Count - mark);
    }
}

/// <summary>Base of test classes that write checkpoints: each test's temporary folders are deleted when it ends.</summary>
public abstract class CleansTempDirs : IDisposable
{
    readonly int mark = TestPaths.ThisThreadsDirCount;

    public void Dispose()
    {
        TestPaths.DeleteThisThreadsDirsSince(mark);
        GC.SuppressFinalize(this);
    }
}
