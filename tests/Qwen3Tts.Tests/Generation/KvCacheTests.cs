using Qwen3Tts.Model.Generation;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Generation;

/// <summary>Decoding through the KV caches gives what recomputing the whole sequence gives. Tolerance: fp32 on the
/// CPU, where the two paths multiply matrices of different shapes (so sum in different orders); the
/// differences measured here are below 1e-5 on logits of size ~10 (std-0.3 weights), so 1e-4 absolute is tight enough
/// to catch any wrong position, mask or cached key (those move values by 1e-2 or more).</summary>
public class KvCacheTests
{
    const double Tolerance = 1e-4;

    static double MaxDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Fact]
    public void Talker_fed_in_chunks_through_the_cache_equals_one_full_forward()
    {
        using var model = GenerationFixture.TinyModel(seed: 1, std: 0.3);
        var talker = model.Talker;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var x = randn(1, 12, talker.Config.HiddenSize, generator: new Generator(7));
        var full = talker.forward(x, null, null);

        using var cache = talker.Model.NewCache();
        var parts = new List<Tensor>();
        long at = 0;
        foreach (int n in new[] { 5, 1, 1, 3, 1, 1 }) // a prefill, single steps, and a multi-position step after a prefix
        {
            var positions = arange(at, at + n).view(1, 1, -1).expand(3, 1, -1);
            parts.Add(talker.ForwardWithCache(x.narrow(1, at, n), positions, cache));
            at += n;
        }
        Assert.Equal(12, cache.Length);
        var chunked = cat(parts, 1);
        Assert.True(MaxDiff(full, chunked) < Tolerance, $"max difference {MaxDiff(full, chunked)}");
        // The check can fail: the same chunks with positions restarting at 0 (a wrong rotary offset) differ.
        using var wrong = talker.Model.NewCache();
        var first = talker.ForwardWithCache(x.narrow(1, 0, 5), arange(5).view(1, 1, -1).expand(3, 1, -1), wrong);
        var second = talker.ForwardWithCache(x.narrow(1, 5, 1), zeros(3, 1, 1, dtype: ScalarType.Int64), wrong);
        Assert.True(MaxDiff(full.narrow(1, 5, 1), second) > 1e-3);
        Assert.True(MaxDiff(full.narrow(1, 0, 5), first) < Tolerance);
    }

    [Fact]
    public void Code_predictor_fed_step_by_step_through_the_cache_equals_one_full_forward()
    {
        using var model = GenerationFixture.TinyModel(seed: 2, std: 0.3);
        var predictor = model.Talker.CodePredictor;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var x = randn(1, 16, model.Talker.Config.HiddenSize, generator: new Generator(8));
        var full = predictor.forward(x);
        using var cache = predictor.Model.NewCache();
        var parts = new List<Tensor> { predictor.ForwardWithCache(x.narrow(1, 0, 2), cache) };
        for (int i = 2; i < 16; i++) parts.Add(predictor.ForwardWithCache(x.narrow(1, i, 1), cache));
        var stepped = cat(parts, 1);
        Assert.True(MaxDiff(full, stepped) < Tolerance, $"max difference {MaxDiff(full, stepped)}");
    }

    [Fact]
    public void Cache_grows_past_its_first_capacity_without_changing_results()
    {
        using var model = GenerationFixture.TinyModel(seed: 3, std: 0.3);
        var talker = model.Talker;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var x = randn(1, 150, talker.Config.HiddenSize, generator: new Generator(9)); // initial capacity is 64
        var full = talker.forward(x, null, null);
        using var cache = talker.Model.NewCache();
        var parts = new List<Tensor> { talker.ForwardWithCache(x.narrow(1, 0, 60), arange(60).view(1, 1, -1).expand(3, 1, -1), cache) };
        for (long i = 60; i < 150; i++) parts.Add(talker.ForwardWithCache(x.narrow(1, i, 1), full_like(zeros(3, 1, 1), i, dtype: ScalarType.Int64), cache));
        Assert.True(MaxDiff(full, cat(parts, 1)) < Tolerance);
    }

    [Fact]
    public void Talker_decoder_logits_with_and_without_cache_agree_at_every_step()
    {
        using var model = GenerationFixture.TinyModel(seed: 4, std: 0.3);
        var talker = model.Talker;
        using var scope = NewDisposeScope();
        var prompt = randn(1, 9, talker.Config.HiddenSize, generator: new Generator(10));
        var steps = randn(1, 6, talker.Config.HiddenSize, generator: new Generator(11));
        using var cached = new TalkerDecoder(talker, useKvCache: true);
        using var full = new TalkerDecoder(talker, useKvCache: false);
        var pairs = new List<(float[] A, float[] B)> { (cached.Feed(prompt), full.Feed(prompt)) };
        for (int i = 0; i < 6; i++) pairs.Add((cached.Feed(steps.narrow(1, i, 1)), full.Feed(steps.narrow(1, i, 1))));
        foreach (var (a, b) in pairs)
        {
            Assert.Equal(talker.Config.VocabSize, a.Length);
            double diff = a.Zip(b, (p, q) => Math.Abs(p - q)).Max();
            Assert.True(diff < Tolerance, $"max logit difference {diff}");
        }
        Assert.True(MaxDiff(cached.LastHidden!, full.LastHidden!) < Tolerance);
    }

    [Fact]
    public void Greedy_generation_with_and_without_cache_gives_the_same_codes()
    {
        using var model = GenerationFixture.TinyModel(seed: 5, std: 0.3);
        var config = new GenerationConfig(DoSample: false, SubtalkerDoSample: false, MaxNewTokens: 12);
        var request = new SynthesisRequest { Text = "Sannu da zuwa.", Language = "english" };
        var withCache = new Synthesizer(model, GenerationFixture.Tokenizer).Synthesize(request, config, seed: 0);
        var without = new Synthesizer(model, GenerationFixture.Tokenizer) { UseKvCache = false }.Synthesize(request, config, seed: 0);
        Assert.True(withCache.Frames > 0);
        Assert.Equal(withCache.Codes, without.Codes);
    }
}
