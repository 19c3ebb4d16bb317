using System.Runtime.InteropServices;

namespace Qwen3Tts.Rank.Training;

/// <summary>Replaces a whole folder so that a crash at any point leaves either the old or the new folder, never
/// a partial one. The new content is written into <c>&lt;name&gt;.tmp-&lt;pid&gt;</c> beside the target, its files
/// flushed to disk; then the target is renamed to <c>&lt;name&gt;.old</c>, the new folder renamed into place and
/// the old one deleted. A crash between the two renames leaves no <c>&lt;name&gt;</c> but a complete
/// <c>&lt;name&gt;.old</c>: readers use <see cref="Locate"/>, which falls back to it, and the next write runs
/// <see cref="Recover"/>, which puts it back. One writer per folder (rank 0).</summary>
public static class AtomicDirectory
{
    public const string OldSuffix = ".old";
    public const string TempMarker = ".tmp-";

    /// <summary>Stage names passed to the test seam, in order (the writer may add its own before "swap").</summary>
    public const string RenameOld = "rename-old", RenameNew = "rename-new", DeleteOld = "delete-old";

    /// <summary>Writes a new <paramref name="target"/> folder: <paramref name="write"/> fills the temporary folder
    /// (flushing each file it writes), then the folder is swapped in. <paramref name="beforeStep"/> is a test seam
    /// called with each stage name before the stage runs; an exception from it stands for a crash there.</summary>
    public static void Replace(string target, Action<string> write, Action<string>? beforeStep = null)
    {
        target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(target));
        string parent = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(parent);
        Recover(target);

        string temp = target + TempMarker + Environment.ProcessId;
        write(temp);
        SyncDirectoryTree(temp);

        string old = target + OldSuffix;
        beforeStep?.Invoke(RenameOld);
        if (Directory.Exists(target)) Directory.Move(target, old);
        beforeStep?.Invoke(RenameNew);
        Directory.Move(temp, target);
        SyncDirectory(parent);
        beforeStep?.Invoke(DeleteOld);
        if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
    }

    /// <summary>The complete folder that stands for <paramref name="target"/>: the folder itself, or its
    /// <c>.old</c> copy when a crash came between the two renames; null when neither exists. Read-only.</summary>
    public static string? Locate(string target)
    {
        target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(target));
        if (Directory.Exists(target)) return target;
        return Directory.Exists(target + OldSuffix) ? target + OldSuffix : null;
    }

    /// <summary>Repairs what an interrupted <see cref="Replace"/> left: puts <c>.old</c> back when the target is
    /// missing, deletes it when the target exists, and deletes every <c>&lt;name&gt;.tmp-*</c> folder.</summary>
    public static void Recover(string target)
    {
        target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(target));
        string parent = Path.GetDirectoryName(target)!, name = Path.GetFileName(target), old = target + OldSuffix;
        if (!Directory.Exists(parent)) return;
        if (Directory.Exists(old))
        {
            if (Directory.Exists(target)) Directory.Delete(old, recursive: true);
            else Directory.Move(old, target);
        }
        foreach (var leftover in Directory.EnumerateDirectories(parent, name + TempMarker + "*"))
            Directory.Delete(leftover, recursive: true);
    }

    /// <summary>Creates <paramref name="path"/> with <paramref name="write"/> and flushes it to disk.</summary>
    public static void WriteFile(string path, Action<Stream> write)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        write(stream);
        stream.Flush(flushToDisk: true);
    }

    public static void CopyFile(string from, string to) => WriteFile(to, stream =>
    {
        using var source = File.OpenRead(from);
        source.CopyTo(stream);
    });

    public static void CopyTree(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from)) CopyFile(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (var dir in Directory.EnumerateDirectories(from)) CopyTree(dir, Path.Combine(to, Path.GetFileName(dir)));
    }

    // Renames are durable only once the folders holding the entries are flushed too.
    static void SyncDirectoryTree(string dir)
    {
        foreach (var sub in Directory.EnumerateDirectories(dir)) SyncDirectoryTree(sub);
        SyncDirectory(dir);
    }

    static void SyncDirectory(string dir)
    {
        if (OperatingSystem.IsWindows()) return; // NTFS metadata is journaled; a directory cannot be opened for fsync
        int fd = Posix.open(dir, 0 /* O_RDONLY */);
        if (fd < 0) return; // best effort: the data files themselves are already flushed
        try { Posix.fsync(fd); }
        finally { Posix.close(fd); }
    }

    static class Posix
    {
        [DllImport("libc", SetLastError = true)]
        public static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

        [DllImport("libc", SetLastError = true)]
        public static extern int fsync(int fd);

        [DllImport("libc", SetLastError = true)]
        public static extern int close(int fd);
    }
}
