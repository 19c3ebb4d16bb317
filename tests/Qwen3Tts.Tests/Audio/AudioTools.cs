using System.Buffers.Binary;
using System.Diagnostics;
using Xunit.Abstractions;

namespace Qwen3Tts.Tests.Audio;

/// <summary>Runs the independent audio tools (sox, flac, lame, ffmpeg) that write the files the decoders are checked
/// against. A missing tool skips the check with the reason on a developer machine, and fails it under CI (CI=true),
/// where .ci/run installs them.</summary>
static class AudioTools
{
    static bool InCi => TestPaths.InCi;

    static string? Find(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, tool)).FirstOrDefault(File.Exists);

    /// <summary>True when every tool is on PATH; otherwise prints why the test is skipped and returns false, or fails under CI.</summary>
    public static bool Have(ITestOutputHelper output, params string[] tools)
    {
        var missing = tools.Where(t => Find(t) is null).ToList();
        if (missing.Count == 0) return true;
        string message = $"{string.Join(", ", missing)} not on PATH (apt-get install sox flac lame ffmpeg)";
        if (InCi) Assert.Fail($"{message}: CI must have them; .ci/run installs them");
        output.WriteLine($"SKIPPED: {message}");
        return false;
    }

    /// <summary>Runs a tool and fails the test with its stderr if it exits non-zero. Returns stdout as bytes.</summary>
    public static byte[] Run(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(Find(tool) ?? tool, args)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true,
        };
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stderr = p.StandardError.ReadToEndAsync(); // drained concurrently so a chatty tool cannot block
        var stdout = new MemoryStream();
        var copy = p.StandardOutput.BaseStream.CopyToAsync(stdout); // drained concurrently too: a hung tool cannot block the test
        if (!p.WaitForExit(120_000)) { p.Kill(entireProcessTree: true); Assert.Fail($"{tool} {string.Join(' ', args)} did not finish in 120 s"); }
        copy.Wait();
        Assert.True(p.ExitCode == 0, $"{tool} {string.Join(' ', args)} exited {p.ExitCode}: {stderr.Result}");
        return stdout.ToArray();
    }

    /// <summary>ffmpeg's own decode of any file, as float32 samples per channel at the file's rate (no resampling).</summary>
    public static float[][] FfmpegDecode(string path, int channels)
    {
        var raw = Run("ffmpeg", "-v", "error", "-i", path, "-f", "f32le", "-acodec", "pcm_f32le", "-");
        int frames = raw.Length / 4 / channels;
        var result = new float[channels][];
        for (int c = 0; c < channels; c++)
        {
            result[c] = new float[frames];
            for (int i = 0; i < frames; i++) result[c][i] = BinaryPrimitives.ReadSingleLittleEndian(raw.AsSpan((i * channels + c) * 4));
        }
        return result;
    }

    /// <summary>The integer samples of a PCM WAV, per channel: a minimal reader, independent of WavReader, for canonical
    /// and extensible headers (it takes the sample width from the fmt chunk and does not check the sub-format).</summary>
    public static (int Rate, int Bits, int[][] Channels) PcmInts(string path)
    {
        var b = File.ReadAllBytes(path);
        int channels = 0, rate = 0, bits = 0, pos = 12;
        while (pos + 8 <= b.Length)
        {
            string id = System.Text.Encoding.ASCII.GetString(b, pos, 4);
            int size = BitConverter.ToInt32(b, pos + 4);
            if (id == "fmt ")
            {
                channels = BitConverter.ToUInt16(b, pos + 10);
                rate = BitConverter.ToInt32(b, pos + 12);
                bits = BitConverter.ToUInt16(b, pos + 22);
            }
            else if (id == "data")
            {
                int width = bits / 8, frames = Math.Min(size, b.Length - pos - 8) / (width * channels);
                var result = new int[channels][];
                for (int c = 0; c < channels; c++) result[c] = new int[frames];
                for (int i = 0, o = pos + 8; i < frames; i++)
                    for (int c = 0; c < channels; c++, o += width)
                    {
                        int v = 0;
                        for (int k = 0; k < width; k++) v |= b[o + k] << (8 * k);
                        result[c][i] = width switch
                        {
                            1 => v - 128,                // 8-bit WAV is unsigned
                            2 => (short)v,
                            3 => v << 8 >> 8,
                            _ => v,
                        };
                    }
                return (rate, bits, result);
            }
            pos += 8 + size + (size & 1);
        }
        throw new InvalidDataException($"{path}: no data chunk");
    }
}
