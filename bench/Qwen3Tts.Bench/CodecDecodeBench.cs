using System.Diagnostics;
using Qwen3Tts.Model.Codec;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Bench;

/// <summary>Speech tokenizer decoding speed on CPU: audio seconds decoded per wall second for a clip of random codes,
/// for the tiny decoder and the released decoder shape with random weights, decoded in one pass (forward), chunked as
/// the reference decodes (300 frames, 25 of left context: one chunk at this length) and in small chunks (25 frames,
/// 25 of context: each chunk does twice the work), all in the same run.</summary>
static class CodecDecodeBench
{
    public static int Run(string[] args)
    {
        double seconds = BenchArgs.Double(args, "--seconds", 5);
        Console.WriteLine($"torch threads: {get_num_threads()}");
        Console.WriteLine($"{"decoder",-8} {"params",12} {"frames",7} {"mode",-18} {"best ms",9} {"x real time",11} {"vs full",8} {"max |diff|",11}");
        foreach (string preset in new[] { "tiny", "0.6b" })
        {
            var config = SpeechTokenizerConfig.Preset(preset);
            using var decoder = new SpeechTokenizerDecoder(config.Decoder);
            Randomize(decoder, config);
            long parameters = decoder.parameters().Sum(p => p.numel());
            int frames = (int)Math.Ceiling(seconds * config.OutputSampleRate / config.DecodeUpsampleRate);
            double audioSeconds = (double)frames * config.DecodeUpsampleRate / config.OutputSampleRate;
            var rng = new Random(2);
            var codes = new long[frames, config.Decoder.NumQuantizers];
            for (int f = 0; f < frames; f++)
                for (int k = 0; k < codes.GetLength(1); k++) codes[f, k] = rng.Next(config.Decoder.CodebookSize);

            using var noGrad = no_grad();
            var input = tensor(codes).transpose(0, 1).unsqueeze(0);
            var modes = new (string Name, Func<Tensor> Decode)[]
            {
                ("full", () => decoder.forward(input)),
                ("chunked 300/25", () => decoder.ChunkedDecode(input)),
                ("chunked 25/25", () => decoder.ChunkedDecode(input, chunkSize: 25, leftContext: 25)),
            };
            using var reference = decoder.forward(input);
            double fullMs = 0;
            foreach (var (name, decode) in modes)
            {
                using (decode()) { } // warm-up
                double best = double.MaxValue, diff = 0;
                for (int round = 0; round < 3; round++)
                {
                    var sw = Stopwatch.StartNew();
                    using var wav = decode();
                    best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
                    diff = (wav - reference).abs().max().item<float>();
                }
                if (name == "full") fullMs = best;
                Console.WriteLine($"{preset,-8} {parameters,12:N0} {frames,7} {name,-18} {best,9:F0} {audioSeconds * 1000 / best,11:F2} {fullMs / best,7:F2}x {diff,11:E1}");
            }
        }
        return 0;
    }

    /// <summary>init-model's random values (SpeechTokenizerLayout.RandomTensor), so the arithmetic is the real one.</summary>
    static void Randomize(SpeechTokenizerDecoder decoder, SpeechTokenizerConfig config)
    {
        using var generator = new Generator(0);
        using var noGrad = no_grad();
        foreach (var (name, p) in decoder.named_parameters())
        {
            using var value = SpeechTokenizerLayout.RandomTensor(SpeechTokenizerLayout.DecoderPrefix + name, p.shape, config, generator);
            p.copy_(value);
        }
    }
}
