using System.CommandLine;

namespace Qwen3Tts.Entry;

/// <summary>Output paths are checked before any work: one that exists as the wrong kind (a file where a folder is
/// wanted, or the reverse), lies under a file, or cannot be written is refused naming the flag and the path, instead of
/// failing minutes later with an IO exception.</summary>
public static class OutputPaths
{
    /// <summary>Null when <paramref name="path"/> can be (or already is) a folder this process writes into; else why not.</summary>
    public static string? FolderProblem(string path)
    {
        string full = Path.GetFullPath(path);
        if (File.Exists(full)) return $"{path} is a file, not a folder";
        return Directory.Exists(full) ? WritableProblem(full, path) : AncestorProblem(full, path);
    }

    /// <summary>Null when <paramref name="path"/> can be written as a file (created, or replaced); else why not.</summary>
    public static string? FileProblem(string path)
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) return $"{path} is a folder, not a file";
        return AncestorProblem(full, path);
    }

    /// <summary>Throws an ArgumentException naming <paramref name="flag"/> (for values bound from a config file).</summary>
    public static void RequireFolder(string flag, string path)
    {
        if (FolderProblem(path) is { } problem) throw new ArgumentException($"{flag}: {problem}");
    }

    public static void RequireFile(string flag, string path)
    {
        if (FileProblem(path) is { } problem) throw new ArgumentException($"{flag}: {problem}");
    }

    /// <summary>Checks the option's value at parse time, so a bad path is a flag error before the command runs.</summary>
    public static T ForFolder<T>(this T option) where T : Option
    {
        option.Validators.Add(result =>
        {
            if (result.Tokens.Count == 1 && FolderProblem(result.Tokens[0].Value) is { } problem) result.AddError(problem);
        });
        return option;
    }

    public static T ForFile<T>(this T option) where T : Option
    {
        option.Validators.Add(result =>
        {
            if (result.Tokens.Count == 1 && FileProblem(result.Tokens[0].Value) is { } problem) result.AddError(problem);
        });
        return option;
    }

    // The nearest existing ancestor must be a folder this process can write (it will create the rest under it).
    static string? AncestorProblem(string full, string given)
    {
        for (string? dir = Path.GetDirectoryName(full); dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(dir)) return $"{given} lies under {dir}, which is a file";
            if (Directory.Exists(dir)) return WritableProblem(dir, given);
        }
        return null;
    }

    // A probe file is the only check that holds for ACLs, read-only mounts and root alike.
    static string? WritableProblem(string dir, string given)
    {
        string probe = Path.Combine(dir, $".qwen3tts-write-probe-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            using (File.Create(probe, 1, FileOptions.DeleteOnClose)) { }
            return null;
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            string why = e is UnauthorizedAccessException ? "permission denied" : "cannot create files there";
            return dir == Path.GetFullPath(given) ? $"{given} is not writable ({why})" : $"{given}: {dir} is not writable ({why})";
        }
    }
}
