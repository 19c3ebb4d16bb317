using System.Diagnostics;
using System.Text.Json.Nodes;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Rank.Training;
using static TorchSharp.torch;

namespace Qwen3Tts.Bench;

/// <summary>One optimizer step (forward, backward, clip, AdamW) on synthetic batches, fp32 against bf16, for the
/// tiny preset and a mid-size config (4 talker layers at the real 0.6B widths), with model-FLOPs utilization
/// against this machine's measured matmul peak.</summary>
static class TrainStepBench
{
    internal const int Batch = 2, TextIds = 40, Frames = 60;

    public static int Run(string[] args)
    {
        int steps = BenchArgs.Int(args, "--steps", 3);
        Console.WriteLine($"threads {get_num_threads()}, batch {Batch} x ({TextIds} text ids + {Frames} frames), median of {steps} steps after 1 warm-up");
        double peak32 = MatmulPeak(ScalarType.Float32), peak16 = MatmulPeak(ScalarType.BFloat16);
        Console.WriteLine($"matmul peak (2048^3): fp32 {peak32 / 1e9:F1} GFLOP/s, bf16 {peak16 / 1e9:F1} GFLOP/s");
        Console.WriteLine();
        Console.WriteLine($"{"config",-8} {"precision",-9} {"fwd+bwd ms",11} {"optim ms",9} {"step ms",9} {"tokens/s",9} {"GFLOP/s",8} {"MFU",6} {"vs fp32",8}");
        foreach (var (name, json) in new[] { ("tiny", Presets.ConfigJson("tiny")), ("mid", MidConfig()) })
        {
            var config = Qwen3TtsConfig.Parse(json, name);
            double? fp32Step = null;
            foreach (var precision in new[] { "fp32", "bf16" })
            {
                var (fwdBwd, optim) = Measure(config, precision, steps);
                double step = fwdBwd + optim;
                fp32Step ??= step;
                double tokens = Batch * (TextIds - 5 + 8 + Frames);
                double flops = StepFlops(config);
                double achieved = flops / (fwdBwd / 1000);
                double mfu = achieved / (precision == "fp32" ? peak32 : peak16);
                Console.WriteLine($"{name,-8} {precision,-9} {fwdBwd,11:F1} {optim,9:F1} {step,9:F1} {tokens / (step / 1000),9:F0} {achieved / 1e9,8:F1} {mfu,6:P0} {fp32Step / step,7:F2}x");
            }
        }
        Console.WriteLine();
        Console.WriteLine("MFU = model FLOPs of forward+backward (6 x matmul parameters x positions + attention) / fwd+bwd time / matmul peak of the same dtype.");
        return 0;
    }

    /// <summary>Process peak resident memory around one bf16 step of the real 0.6B shape (fresh process: run alone).</summary>
    public static int PeakMemory06B()
    {
        var config = Presets.Config("0.6b");
        long before = Environment.WorkingSet;
        var (fwdBwd, optim) = Measure(config, "bf16", steps: 1, warmup: false);
        using var self = Process.GetCurrentProcess();
        self.Refresh();
        Console.WriteLine($"0.6B bf16 (fp32 masters + AdamW), batch {Batch} x ({TextIds} + {Frames}): one step {fwdBwd + optim:F0} ms " +
                          $"(fwd+bwd {fwdBwd:F0}, optimizer {optim:F0}); peak RSS {self.PeakWorkingSet64 / 1e9:F2} GB (before model: {before / 1e9:F2} GB)");
        return 0;
    }

    internal static JsonObject MidConfig()
    {
        var json = Presets.ConfigJson("0.6b");
        json["talker_config"]!["num_hidden_layers"] = 4;
        json["talker_config"]!["code_predictor_config"]!["num_hidden_layers"] = 2;
        json["talker_config"]!["code_predictor_config"]!["layer_types"] = new JsonArray("full_attention", "full_attention");
        return json;
    }

    /// <summary>--train_prompt icl against the x-vector prompt on the same targets: each sample's reference clip
    /// (<c>--ref_frames</c> frames and a 12-token transcript) goes before its target, so the talker sees longer sequences;
    /// the scored tokens stay the same. The ratio is the cost of training the ICL prompt.</summary>
    public static int RunIcl(string[] args)
    {
        int steps = BenchArgs.Int(args, "--steps", 3), refFrames = BenchArgs.Int(args, "--ref_frames", 60);
        // One configuration and precision per process keeps the peak down (the mid config's bf16 pair needs ~12 GB).
        var configs = (BenchArgs.String(args, "--configs") ?? "tiny,mid").Split(',');
        var precisions = (BenchArgs.String(args, "--precisions") ?? "fp32,bf16").Split(',');
        Console.WriteLine($"threads {get_num_threads()}, batch {Batch} x ({TextIds} text ids + {Frames} target frames), ICL reference {refFrames} frames " +
                          $"+ 12 transcript tokens; median of {steps} steps after 1 warm-up");
        Console.WriteLine($"{"config",-8} {"precision",-9} {"prompt",-8} {"positions",9} {"fwd+bwd ms",11} {"step ms",9} {"vs xvector",11}");
        foreach (var (name, json) in new[] { ("tiny", Presets.ConfigJson("tiny")), ("mid", MidConfig()) }.Where(c => configs.Contains(c.Item1)))
        {
            var config = Qwen3TtsConfig.Parse(json, name);
            foreach (var precision in precisions)
            {
                double? baseline = null;
                foreach (int reference in new[] { 0, refFrames })
                {
                    var (fwdBwd, optim) = Measure(config, precision, steps, refFrames: reference);
                    double step = fwdBwd + optim;
                    baseline ??= step;
                    long positions;
                    using (var batch = SyntheticBatch(config, reference)) positions = batch.InputIds.shape[1] - 1;
                    Console.WriteLine($"{name,-8} {precision,-9} {(reference == 0 ? "xvector" : "icl"),-8} {positions,9} {fwdBwd,11:F1} {step,9:F1} {step / baseline,10:F2}x");
                }
            }
        }
        return 0;
    }

    static (double FwdBwdMs, double OptimMs) Measure(Qwen3TtsConfig config, string precision, int steps, bool warmup = true, int refFrames = 0)
    {
        using var model = new Qwen3TtsModel(config);
        ModelInit.Initialize(model, 0, 0.02);
        using var trainable = new TrainableModel(model, TrainableModel.ParsePrecision(precision));
        using var optimizer = new AdamW(trainable.MasterParameters, new AdamWOptions(Lr: 1e-5));
        using var batch = SyntheticBatch(config, refFrames);
        var speakers = randn(Batch, config.Talker.HiddenSize);
        var fwdBwd = new List<double>();
        var optim = new List<double>();
        for (int i = 0; i < steps + (warmup ? 1 : 0); i++)
        {
            using var scope = NewDisposeScope();
            var sw = Stopwatch.StartNew();
            var loss = SftObjective.Compute(trainable.ComputeTalker, batch, speakers, LossAlignment.Fixed);
            loss.Loss.backward();
            trainable.AccumulateGradsToMaster();
            double t1 = sw.Elapsed.TotalMilliseconds;
            GradClip.ClipGradNorm(trainable.MasterParameters.Select(p => (Tensor)p.Parameter), 1.0);
            optimizer.Step(1e-5);
            optimizer.ZeroGrad();
            trainable.CopyMasterToCompute();
            double t2 = sw.Elapsed.TotalMilliseconds;
            if (warmup && i == 0) continue;
            fwdBwd.Add(t1);
            optim.Add(t2 - t1);
        }
        return (Median(fwdBwd), Median(optim));
    }

    /// <param name="refFrames">above 0: ICL samples with a reference of that many frames and a 12-token transcript.</param>
    internal static SftBatch SyntheticBatch(Qwen3TtsConfig config, int refFrames = 0)
    {
        var rng = new Random(0);
        var samples = Enumerable.Range(0, Batch).Select(_ =>
        {
            var ids = new List<int> { config.ImStartTokenId, config.AssistantTokenId, 198 };
            ids.AddRange(Enumerable.Range(0, TextIds - 8).Select(_ => rng.Next(1000, 100000)));
            ids.AddRange(new[] { config.ImEndTokenId, 198, config.ImStartTokenId, config.AssistantTokenId, 198 });
            var codes = new long[Frames, 16];
            for (int f = 0; f < Frames; f++)
                for (int q = 0; q < 16; q++) codes[f, q] = rng.Next(2048);
            if (refFrames == 0) return new SftSample(ids, codes, zeros(100, 128));
            var refIds = new List<int> { config.ImStartTokenId, config.AssistantTokenId, 198 };
            refIds.AddRange(Enumerable.Range(0, 12).Select(_ => rng.Next(1000, 100000)));
            refIds.AddRange(new[] { config.ImEndTokenId, 198 });
            var refCodes = new long[refFrames, 16];
            for (int f = 0; f < refFrames; f++)
                for (int q = 0; q < 16; q++) refCodes[f, q] = rng.Next(2048);
            return new SftSample(ids, codes, zeros(100, 128), RefTextIds: refIds, RefCodes: refCodes);
        }).ToList();
        return SftCollate.Collate(samples, config);
    }

    /// <summary>Forward+backward FLOPs of one SFT step: 6 per matmul parameter per position it is applied to, plus attention.</summary>
    static double StepFlops(Qwen3TtsConfig c)
    {
        var t = c.Talker;
        var p = t.CodePredictor;
        double positions = Batch * (TextIds - 5 + 8 + Frames) - Batch; // the talker sees T-1 positions
        double LayerParams(double h, double inter, double heads, double kv, double hd) => h * heads * hd * 2 + 2 * h * kv * hd + 3 * h * inter;
        double talker = t.NumHiddenLayers * LayerParams(t.HiddenSize, t.IntermediateSize, t.NumAttentionHeads, t.NumKeyValueHeads, t.HeadDim)
                        + t.HiddenSize * t.VocabSize // codec_head
                        + t.TextHiddenSize * t.TextHiddenSize + t.TextHiddenSize * t.HiddenSize; // text_projection
        double frames = Batch * Frames;
        double predictor = 16 * (p.NumHiddenLayers * LayerParams(p.HiddenSize, p.IntermediateSize, p.NumAttentionHeads, p.NumKeyValueHeads, p.HeadDim)
                                 + (p.HiddenSize != t.HiddenSize ? t.HiddenSize * p.HiddenSize : 0))
                           + 15 * p.HiddenSize * p.VocabSize;
        double seq = positions / Batch;
        double attention = 3 * t.NumHiddenLayers * 4 * seq * seq * t.NumAttentionHeads * t.HeadDim * Batch
                         + 3 * p.NumHiddenLayers * 4 * 16 * 16 * p.NumAttentionHeads * p.HeadDim * frames;
        return 6 * (talker * positions + predictor * frames) + attention;
    }

    static double MatmulPeak(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var a = randn(2048, 2048).to(dtype);
        var b = randn(2048, 2048).to(dtype);
        a.matmul(b);
        double best = double.MaxValue;
        for (int i = 0; i < 5; i++)
        {
            var sw = Stopwatch.StartNew();
            a.matmul(b).Dispose();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return 2.0 * 2048 * 2048 * 2048 / best;
    }

    internal static double Median(List<double> xs)
    {
        var s = xs.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}
