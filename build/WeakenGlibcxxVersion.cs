// MSBuild task (compiled by RoslynCodeTaskFactory, see LibTorchSharpGlibcxx.targets).
//
// TorchSharp 0.107's libLibTorchSharp.so carries a version requirement on GLIBCXX_3.4.32 for a
// single symbol, _ZSt21ios_base_library_initv, that nothing relocates against. Debian 12's
// libstdc++ stops at GLIBCXX_3.4.30, so the dynamic loader refuses the library. Marking that one
// vernaux entry VER_FLG_WEAK makes a missing version non-fatal (glibc dl-version.c), and the
// library loads. We patch only build outputs, only when the system libstdc++ lacks a version the
// library asks for, and always by writing a new file (never through a hard link into the NuGet
// cache).
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public sealed class WeakenGlibcxxVersion : Task
{
    [Required] public ITaskItem[] Libraries { get; set; } = Array.Empty<ITaskItem>();

    /// <summary>Optional explicit libstdc++ to compare against (tests); otherwise the system one is searched.</summary>
    public string SystemLibStdCxx { get; set; } = "";

    const ushort VerFlgWeak = 0x2;
    const uint ShtGnuVerneed = 0x6ffffffe;

    static readonly string[] LibStdCxxCandidates =
    {
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/usr/lib64/libstdc++.so.6",
        "/usr/lib/libstdc++.so.6",
        "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
    };

    public override bool Execute()
    {
        if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return true;
        string? system = SystemLibStdCxx.Length > 0 ? SystemLibStdCxx : Array.Find(LibStdCxxCandidates, File.Exists);
        if (system is null)
        {
            Log.LogMessage(MessageImportance.High, "WeakenGlibcxxVersion: no system libstdc++.so.6 found; leaving TorchSharp natives unchanged.");
            return true;
        }
        string systemText = Encoding.ASCII.GetString(File.ReadAllBytes(system));
        foreach (var item in Libraries)
        {
            string path = item.ItemSpec;
            if (!File.Exists(path)) continue;
            try
            {
                byte[] elf = File.ReadAllBytes(path);
                var weakened = WeakenMissing(elf, version => !ContainsVersion(systemText, version));
                if (weakened.Count == 0) continue;
                string tmp = path + ".glibcxx-tmp";
                File.WriteAllBytes(tmp, elf);
                File.Delete(path); // unlink first: a hard-linked original is never touched
                File.Move(tmp, path);
                Log.LogMessage(MessageImportance.High,
                    $"WeakenGlibcxxVersion: {Path.GetFileName(path)}: marked weak {string.Join(", ", weakened)} (absent from {system}).");
            }
            catch (Exception e)
            {
                Log.LogError($"WeakenGlibcxxVersion: cannot patch {path}: {e.Message}");
            }
        }
        return !Log.HasLoggedErrors;
    }

    static bool ContainsVersion(string text, string version)
    {
        // "GLIBCXX_3.4.3" is a prefix of "GLIBCXX_3.4.32": require a NUL terminator after the match.
        int at = 0;
        while ((at = text.IndexOf(version, at, StringComparison.Ordinal)) >= 0)
        {
            int end = at + version.Length;
            if (end < text.Length && text[end] == '\0') return true;
            at = end;
        }
        return false;
    }

    /// <summary>Sets VER_FLG_WEAK on every GLIBCXX_* vernaux entry for which <paramref name="missing"/>
    /// is true. Returns the names it weakened. Only ELF64 little-endian is handled (x86-64, aarch64).</summary>
    public static List<string> WeakenMissing(byte[] elf, Func<string, bool> missing)
    {
        var done = new List<string>();
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (elf[4] != 2 || elf[5] != 1) throw new InvalidDataException("only ELF64 little-endian is supported");
        ulong shoff = BitConverter.ToUInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A);
        int shnum = BitConverter.ToUInt16(elf, 0x3C);
        for (int i = 0; i < shnum; i++)
        {
            int sh = checked((int)shoff + i * shentsize);
            if (BitConverter.ToUInt32(elf, sh + 4) != ShtGnuVerneed) continue;
            int offset = checked((int)BitConverter.ToUInt64(elf, sh + 0x18));
            int link = (int)BitConverter.ToUInt32(elf, sh + 0x28);
            int strtab = checked((int)BitConverter.ToUInt64(elf, checked((int)shoff + link * shentsize) + 0x18));
            int need = offset;
            while (true)
            {
                int count = BitConverter.ToUInt16(elf, need + 2);
                int aux = need + (int)BitConverter.ToUInt32(elf, need + 8);
                for (int a = 0; a < count; a++)
                {
                    string name = ReadCString(elf, strtab + (int)BitConverter.ToUInt32(elf, aux + 8));
                    ushort flags = BitConverter.ToUInt16(elf, aux + 4);
                    if (name.StartsWith("GLIBCXX_", StringComparison.Ordinal) && (flags & VerFlgWeak) == 0 && missing(name))
                    {
                        BitConverter.GetBytes((ushort)(flags | VerFlgWeak)).CopyTo(elf, aux + 4);
                        done.Add(name);
                    }
                    uint nextAux = BitConverter.ToUInt32(elf, aux + 12);
                    if (nextAux == 0) break;
                    aux += (int)nextAux;
                }
                uint next = BitConverter.ToUInt32(elf, need + 12);
                if (next == 0) break;
                need += (int)next;
            }
        }
        return done;
    }

    static string ReadCString(byte[] bytes, int at)
    {
        int end = Array.IndexOf(bytes, (byte)0, at);
        return Encoding.ASCII.GetString(bytes, at, end - at);
    }
}
