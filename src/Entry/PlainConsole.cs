using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Qwen3Tts.Entry;

/// <summary>Standard output and error as plain UTF-8 streams over file descriptors 1 and 2. .NET's own console, on a
/// terminal, first writes the terminfo keypad_xmit codes (ESC[?1h ESC=) to set the terminal up for key input, which
/// these programs never read; launchers (mpiexec, srun) give ranks a pseudo-terminal, so the codes end up in every
/// rank's log. Writing to the descriptors directly never sets the terminal up. Colors and live displays still work:
/// those are escape codes the writer sends itself.</summary>
public static class PlainConsole
{
    static int installed;

    public static void Install()
    {
        if (Interlocked.Exchange(ref installed, 1) == 1) return;
        try
        {
            Console.SetOut(Writer(1));
            Console.SetError(Writer(2));
        }
        catch (Exception e) when (e is IOException or ArgumentException or UnauthorizedAccessException) { } // a closed descriptor: keep .NET's

    }

    static TextWriter Writer(int fd) =>
        TextWriter.Synchronized(new StreamWriter(new FileStream(new SafeFileHandle(fd, ownsHandle: false), FileAccess.Write, bufferSize: 1),
            new UTF8Encoding(encoderShouldEmitUTF8Identifier: false)) { AutoFlush = true });
}
