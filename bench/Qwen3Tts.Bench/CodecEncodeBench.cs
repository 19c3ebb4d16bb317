using System.Diagnostics;
using Qwen3Tts.Model.Codec;
using static TorchSharp.torch;

namespace Qwen3Tts.Bench;

/// <summary>Speech tokenizer encoding speed on CPU: audio seconds encoded per wall second for a 10 s clip, for the tiny
/// codec and the released (0.6B/1.7B) encoder shape with random weights, with the time split over the stages
/// (SEANet, transformer, downsample, quantizer) measured in the same run.</summary>
static class CodecEncodeBench
{
    public static int Run(string[] args)
    {
        int seconds = BenchArgs.Int(args, "--seconds", 10);
        Console.WriteLine($"torch threads: {get_num_threads()}, clip: {seconds} s at 24 kHz");
        Console.WriteLine($"{"codec",-8} {"params",10} {"total ms",9} {"x real time",11} {"seanet",8} {"transf.",8} {"downs.",8} {"quant.",8}");
        foreach (string preset in new[] { "tiny", "0.6b" })
        {
            var config = SpeechTokenizerConfig.Preset(preset);
            using var tokenizer = SpeechTokenizer.CreateRandom(config, 0);
            var rng = new Random(1);
            var clip = Enumerable.Range(0, 24000 * seconds).Select(i => (float)(0.3 * Math.Sin(i * 0.03) + 0.1 * (rng.NextDouble() - 0.5))).ToArray();
            long parameters = tokenizer.Encoder.state_dict().Values.Sum(t => t.numel());
            tokenizer.Encode(clip); // warm-up
            double best = double.MaxValue;
            double[] stages = new double[4];
            for (int round = 0; round < 3; round++)
            {
                var sw = Stopwatch.StartNew();
                tokenizer.Encode(clip);
                best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
                var split = Stages(tokenizer, clip, config.EncoderValidNumQuantizers);
                if (round == 0 || split.Sum() < stages.Sum()) stages = split;
            }
            Console.WriteLine($"{preset,-8} {parameters,10:N0} {best,9:F0} {seconds * 1000 / best,11:F1} " +
                              string.Join(" ", stages.Select(s => $"{s,8:F0}")));
        }
        return 0;
    }

    /// <summary>Milliseconds in each stage of one encode.</summary>
    static double[] Stages(SpeechTokenizer tokenizer, float[] clip, int codebooks)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var encoder = tokenizer.Encoder;
        var times = new double[4];
        var sw = Stopwatch.StartNew();
        var h = encoder.Seanet.forward(tensor(clip).view(1, 1, -1));
        times[0] = sw.Elapsed.TotalMilliseconds;
        sw.Restart();
        h = encoder.Transformer.forward(h.transpose(1, 2)).transpose(1, 2);
        times[1] = sw.Elapsed.TotalMilliseconds;
        sw.Restart();
        if (encoder.Downsample is { } downsample) h = downsample.forward(h);
        times[2] = sw.Elapsed.TotalMilliseconds;
        sw.Restart();
        encoder.Quantizer.Encode(h, codebooks);
        times[3] = sw.Elapsed.TotalMilliseconds;
        return times;
    }
}
