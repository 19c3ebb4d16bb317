using System.Diagnostics;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Generation;
using Qwen3Tts.Model.Text;
using static TorchSharp.torch;

namespace Qwen3Tts.Bench;

/// <summary>Synthesis speed on the CPU: frames per second of the autoregressive loop (talker step + the code
/// predictor's 15 steps per frame, default sampling) with and without the KV caches, for the tiny preset and the mid
/// config (4 talker layers at the real 0.6B widths); audio seconds per wall second at 12.5 frames per second.
/// Every run generates exactly the same number of frames (eos stays masked) and the modes alternate run by run.</summary>
static class SynthesisBench
{
    const string Text = "Sannu da zuwa. Wannan gwaji ne na saurin magana a kan na'ura mai kwakwalwa.";

    public static int Run(string[] args)
    {
        int frames = Arg(args, "--frames", 40), rounds = Arg(args, "--rounds", 3), threads = Arg(args, "--threads", 0);
        if (threads > 0) set_num_threads(threads);
        var configs = (args.SkipWhile(a => a != "--configs").Skip(1).FirstOrDefault() ?? "tiny,mid").Split(',');
        var tokenizer = Qwen3TextTokenizer.FromEmbeddedReference();
        var generation = new GenerationConfig(MaxNewTokens: frames + 1, MinNewTokens: frames + 1); // exactly `frames` frames
        Console.WriteLine($"threads {get_num_threads()}, {frames} frames per run (default sampling), median of {rounds} alternating rounds after a warm-up");
        Console.WriteLine($"{"config",-6} {"KV cache",-8} {"prompt",6} {"run s",7} {"frames/s",9} {"audio s/s",9} {"ms/frame",9} {"vs no cache",11}");
        foreach (string name in configs)
        {
            var json = name switch
            {
                "tiny" => Presets.ConfigJson("tiny"),
                "mid" => TrainStepBench.MidConfig(),
                _ => throw new ArgumentException($"--configs: unknown config '{name}' (tiny, mid)"),
            };
            using var model = new Qwen3TtsModel(Qwen3TtsConfig.Parse(json, name));
            ModelInit.Initialize(model, 0, 0.02);
            model.eval();
            var cached = new Synthesizer(model, tokenizer);
            var full = new Synthesizer(model, tokenizer) { UseKvCache = false };
            var request = new SynthesisRequest { Text = Text, Language = "english" };
            int prompt = cached.Prompts.Describe(request).Positions.Count;
            cached.Synthesize(request, generation with { MaxNewTokens = 3, MinNewTokens = 3 }, 0); // warm-up
            var times = new Dictionary<bool, List<double>> { [true] = [], [false] = [] };
            for (int r = 0; r < rounds; r++)
                foreach (bool useCache in new[] { true, false })
                {
                    var clock = Stopwatch.StartNew();
                    var result = (useCache ? cached : full).Synthesize(request, generation, (ulong)r);
                    times[useCache].Add(clock.Elapsed.TotalSeconds);
                    if (result.Frames != frames) throw new InvalidOperationException($"expected {frames} frames, got {result.Frames}");
                }
            double baseline = TrainStepBench.Median(times[false]);
            foreach (bool useCache in new[] { false, true })
            {
                double s = TrainStepBench.Median(times[useCache]);
                Console.WriteLine($"{name,-6} {(useCache ? "yes" : "no"),-8} {prompt,6} {s,7:F2} {frames / s,9:F2} {frames / 12.5 / s,9:F3} {1000 * s / frames,9:F1} {baseline / s,10:F2}x");
            }
        }
        return 0;
    }

    static int Arg(string[] args, string name, int fallback) => BenchArgs.Int(args, name, fallback);
}
