using System.Diagnostics;
using Qwen3Tts.Coordinator.Data.Prepare;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Codec;
using Qwen3Tts.Rank.Distributed;
using Qwen3Tts.Rank.Prepare;
using static TorchSharp.torch;

namespace Qwen3Tts.Bench;

/// <summary>qwen3tts prepare end to end on CPU (read JSONL + WAV, resample, encode, journal, merge): audio seconds
/// encoded per wall second with 1 rank and with 2 in-process ranks (threads sharing this process's torch thread pool),
/// for the tiny codec and the released encoder shape with random weights.</summary>
static class PrepareBench
{
    public static int Run(string[] args)
    {
        int clips = BenchArgs.Int(args, "--clips", 12);
        const int seconds = 5;
        string dir = Path.Combine(Path.GetTempPath(), $"qwen3tts-prepare-bench-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        try
        {
            string input = WriteDataset(dir, clips, seconds);
            Console.WriteLine($"torch threads: {get_num_threads()}, {Environment.ProcessorCount} cores; {clips} clips of {seconds} s (16-bit WAV at 22.05 kHz, resampled)");
            Console.WriteLine($"{"codec",-8} {"ranks",5} {"wall s",8} {"audio s/s",10} {"vs 1 rank",10}");
            foreach (string preset in new[] { "tiny", "0.6b" })
            {
                double single = 0;
                foreach (int ranks in new[] { 1, 2 })
                {
                    var config = SpeechTokenizerConfig.Preset(preset);
                    var tokenizers = Enumerable.Range(0, ranks).Select(_ => SpeechTokenizer.CreateRandom(config, 0)).ToArray();
                    tokenizers[0].Encode(new float[24000]); // warm-up
                    string output = Path.Combine(dir, $"{preset}-{ranks}.jsonl");
                    var sw = Stopwatch.StartNew();
                    ThreadWorld.Run(ranks, comm => DistributedPrepare.Run(new PrepareOptions(input, output), tokenizers[comm.Rank], preset, comm, TextWriter.Null));
                    double wall = sw.Elapsed.TotalSeconds;
                    foreach (var t in tokenizers) t.Dispose();
                    double rate = clips * seconds / wall;
                    if (ranks == 1) single = rate;
                    Console.WriteLine($"{preset,-8} {ranks,5} {wall,8:F2} {rate,10:F1} {rate / single,9:F2}x");
                }
            }
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    static string WriteDataset(string dir, int clips, int seconds)
    {
        const int rate = 22050;
        var rng = new Random(3);
        var lines = new List<string>();
        for (int c = 0; c < clips; c++)
        {
            var x = Enumerable.Range(0, rate * seconds).Select(i => (float)(0.3 * Math.Sin(i * 0.02 * (1 + c % 5)) + 0.05 * (rng.NextDouble() - 0.5))).ToArray();
            WavWriter.Write(Path.Combine(dir, $"clip{c}.wav"), x, rate);
            lines.Add($"{{\"audio\": \"clip{c}.wav\", \"text\": \"utterance {c}\", \"ref_audio\": \"clip0.wav\"}}");
        }
        string path = Path.Combine(dir, "raw.jsonl");
        File.WriteAllLines(path, lines);
        return path;
    }

    /// <summary>In-process ranks on threads; prepare needs only the barrier.</summary>
    sealed class ThreadWorld(int rank, int size, Barrier barrier) : ICommunicator
    {
        public static void Run(int size, Action<ICommunicator> body)
        {
            using var barrier = new Barrier(size);
            var threads = Enumerable.Range(0, size).Select(r => new Thread(() => body(new ThreadWorld(r, size, barrier)))).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
        }

        public int Rank => rank;
        public int WorldSize => size;
        public int LocalRank => rank;
        public string Backend => "threads";
        public void Barrier() => barrier.SignalAndWait();
        public void AllReduceSum(Tensor tensor) => throw new NotSupportedException();
        public Task AllReduceSumAsync(Tensor tensor) => throw new NotSupportedException();
        public void Broadcast(Tensor tensor, int root = 0) => throw new NotSupportedException();
        public void Broadcast(byte[] buffer, int root = 0) => throw new NotSupportedException();
        public void Abort(int exitCode) => Environment.Exit(exitCode);
        public void Dispose() { }
    }
}
