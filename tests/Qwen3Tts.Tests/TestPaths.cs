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

    public static string NewTempDir(string tag)
    {
        var dir = Path.Combine(Path.GetTempPath(), "qwen3tts-tests", $"{tag}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }
}
