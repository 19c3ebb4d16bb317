using System.Diagnostics;
using Qwen3Tts.Model.Audio;

namespace Qwen3Tts.Bench;

/// <summary>Resampling speed: audio seconds converted per wall second, against a plain copy of the same buffer.</summary>
static class ResampleBench
{
    public static int Run()
    {
        var rng = new Random(1);
        Console.WriteLine($"{"from -> to",-18} {"ms / 10 s clip",16} {"x real time",12}");
        foreach (int from in new[] { 16000, 22050, 44100, 48000 })
        {
            var x = Enumerable.Range(0, from * 10).Select(_ => (float)(rng.NextDouble() - 0.5)).ToArray();
            Resampler.Resample(x, from, 24000); // filter bank + JIT
            double best = double.MaxValue;
            for (int i = 0; i < 5; i++)
            {
                var sw = Stopwatch.StartNew();
                Resampler.Resample(x, from, 24000);
                best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
            }
            Console.WriteLine($"{from + " -> 24000",-18} {best,16:F1} {10_000 / best,12:F0}");
        }
        return 0;
    }
}
