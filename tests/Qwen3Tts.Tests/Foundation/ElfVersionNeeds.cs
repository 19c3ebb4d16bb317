using System.Text;

namespace Qwen3Tts.Tests.Foundation;

/// <summary>An independent reader of an ELF64 .gnu.version_r section: version name → VER_FLG_WEAK set.
/// Written apart from build/WeakenGlibcxxVersion.cs so the test does not trust the patcher's own parser.</summary>
static class ElfVersionNeeds
{
    public static Dictionary<string, bool> WeakFlags(byte[] elf)
    {
        var result = new Dictionary<string, bool>();
        var span = elf.AsSpan();
        ulong U64(int at) => BitConverter.ToUInt64(elf, at);
        uint U32(int at) => BitConverter.ToUInt32(elf, at);
        ushort U16(int at) => BitConverter.ToUInt16(elf, at);
        int shoff = (int)U64(0x28), shentsize = U16(0x3A), shnum = U16(0x3C);
        for (int i = 0; i < shnum; i++)
        {
            int sh = shoff + i * shentsize;
            if (U32(sh + 4) != 0x6ffffffe) continue;
            int strtab = (int)U64(shoff + (int)U32(sh + 0x28) * shentsize + 0x18);
            for (int need = (int)U64(sh + 0x18); ; )
            {
                for (int aux = need + (int)U32(need + 8), n = 0; n < U16(need + 2); n++)
                {
                    int name = strtab + (int)U32(aux + 8);
                    int end = span[name..].IndexOf((byte)0);
                    result[Encoding.ASCII.GetString(elf, name, end)] = (U16(aux + 4) & 0x2) != 0;
                    aux += (int)U32(aux + 12);
                }
                if (U32(need + 12) == 0) break;
                need += (int)U32(need + 12);
            }
        }
        return result;
    }
}
