using System.Text.Json.Nodes;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Generation;

namespace Qwen3Tts.Tests.Generation;

/// <summary>The logits processors on hand-made logits, with the expected rows worked out by hand from transformers'
/// definitions; the seeded generator; generation_config.json parsing.</summary>
public class SamplingTests
{
    const float Inf = float.NegativeInfinity;

    [Fact]
    public void Repetition_penalty_divides_positive_and_multiplies_negative_logits_of_seen_ids_once()
    {
        float[] logits = [2f, -2f, 1f, 0.5f];
        Sampling.ApplyRepetitionPenalty(logits, [0, 1, 1], 1.25);
        Assert.Equal([1.6f, -2.5f, 1f, 0.5f], logits); // id 1 occurred twice, penalized once
        float[] same = [2f, -2f];
        Sampling.ApplyRepetitionPenalty(same, [0, 1], 1.0);
        Assert.Equal([2f, -2f], same);
    }

    [Fact]
    public void Top_k_keeps_the_k_largest_and_ties_with_the_kth()
    {
        float[] a = [1f, 5f, 3f, 5f, 2f];
        Sampling.TopK(a, 2);
        Assert.Equal([Inf, 5f, Inf, 5f, Inf], a);
        float[] b = [1f, 5f, 3f, 5f, 2f];
        Sampling.TopK(b, 3);
        Assert.Equal([Inf, 5f, 3f, 5f, Inf], b);
        float[] off = [1f, 2f];
        Sampling.TopK(off, 0);
        Assert.Equal([1f, 2f], off);
    }

    [Fact]
    public void Top_p_removes_the_tail_whose_cumulative_probability_stays_within_one_minus_p()
    {
        // probabilities 0.5, 0.3, 0.15, 0.05; ascending cumulative: 0.05, 0.20, 0.50, 1.0
        static float[] Row() => [MathF.Log(0.5f), MathF.Log(0.3f), MathF.Log(0.15f), MathF.Log(0.05f)];
        var p06 = Row();
        Sampling.TopP(p06, 0.6); // 1 - p = 0.4 removes 0.05 and 0.15
        Assert.Equal([Row()[0], Row()[1], Inf, Inf], p06);
        var p03 = Row();
        Sampling.TopP(p03, 0.3); // 1 - p = 0.7 removes all but the most likely
        Assert.Equal([Row()[0], Inf, Inf, Inf], p03);
        var p096 = Row();
        Sampling.TopP(p096, 0.96); // 1 - p = 0.04: nothing is that unlikely
        Assert.Equal(Row(), p096);
        var tiny = Row();
        Sampling.TopP(tiny, 1e-9); // the most likely always stays
        Assert.Equal([Row()[0], Inf, Inf, Inf], tiny);
    }

    [Fact]
    public void Temperature_divides_and_greedy_takes_the_first_maximum()
    {
        float[] logits = [2f, 0f, -1f];
        Sampling.ApplyTemperature(logits, 0.5);
        Assert.Equal([4f, 0f, -2f], logits);
        Assert.Equal(1, Sampling.Argmax([0f, 3f, 3f, Inf]));
        // Greedy ignores the warpers: top-k 1 and a low temperature would not change it, a draw is never made.
        var settings = new SamplingSettings(DoSample: false, TopK: 1, TopP: 0.1, Temperature: 0.01, RepetitionPenalty: 1);
        Assert.Equal(2, Sampling.Pick([0f, 1f, 7f, 1f], settings, new SamplingRng(0)));
    }

    [Fact]
    public void Draws_follow_the_softmax_probabilities_and_removed_tokens_never_come()
    {
        var rng = new SamplingRng(42);
        var counts = new int[4];
        const int n = 40000;
        for (int i = 0; i < n; i++)
            counts[Sampling.Draw([MathF.Log(0.5f), MathF.Log(0.25f), MathF.Log(0.25f), Inf], rng)]++;
        Assert.Equal(0, counts[3]);
        Assert.InRange(counts[0] / (double)n, 0.49, 0.51);
        Assert.InRange(counts[1] / (double)n, 0.24, 0.26);
        Assert.InRange(counts[2] / (double)n, 0.24, 0.26);
        Assert.Throws<InvalidOperationException>(() => Sampling.Draw([Inf, Inf], rng));
    }

    [Fact]
    public void Sampling_settings_compose_top_k_before_the_draw()
    {
        var s = new SamplingSettings(DoSample: true, TopK: 2, TopP: 1.0, Temperature: 1.0, RepetitionPenalty: 1);
        var rng = new SamplingRng(1);
        var seen = new HashSet<int>();
        for (int i = 0; i < 500; i++) seen.Add(Sampling.Pick([3f, 0f, 2.9f, 1f], s, rng));
        Assert.Equal([0, 2], seen.Order());
    }

    [Fact]
    public void The_generator_is_reproducible_and_seeds_differ()
    {
        var a = new SamplingRng(7);
        var b = new SamplingRng(7);
        var c = new SamplingRng(8);
        var xs = Enumerable.Range(0, 5).Select(_ => a.NextDouble()).ToArray();
        Assert.Equal(xs, Enumerable.Range(0, 5).Select(_ => b.NextDouble()));
        Assert.NotEqual(xs, Enumerable.Range(0, 5).Select(_ => c.NextDouble()));
        Assert.All(xs, x => Assert.InRange(x, 0, 1));
        // SplitMix64's published first output for seed 0.
        Assert.Equal(0xE220A8397B1DCDAFUL, new SamplingRng(0).NextUInt64());
    }

    [Fact]
    public void Suppressed_tokens_are_the_top_1024_codec_ids_except_eos()
    {
        var s = Synthesizer.SuppressedTokens(3072, 2150);
        Assert.Equal(1023, s.Length);
        Assert.Equal(2048, s.Min());
        Assert.Equal(3071, s.Max());
        Assert.DoesNotContain(2150, s);
        Assert.Contains(3000, s);  // speaker rows
        Assert.Contains(2050, s);  // language tags
    }

    [Fact]
    public void Released_generation_configs_parse_and_bad_values_name_the_file_and_key()
    {
        foreach (var dir in Directory.GetDirectories(Path.Combine(TestPaths.RepoRoot, "assets", "reference"), "Qwen3-TTS-*"))
        {
            var g = GenerationConfig.Load(Path.Combine(dir, "generation_config.json"));
            Assert.Equal(new GenerationConfig(DoSample: true, TopK: 50, TopP: 1.0, Temperature: 0.9, RepetitionPenalty: 1.05,
                SubtalkerDoSample: true, SubtalkerTopK: 50, SubtalkerTopP: 1.0, SubtalkerTemperature: 0.9, MaxNewTokens: 8192, MinNewTokens: 2), g);
        }
        var partial = GenerationConfig.Parse(new JsonObject { ["do_sample"] = false, ["transformers_version"] = "4.57" }, "g.json");
        Assert.False(partial.DoSample);
        Assert.Equal(2048, partial.MaxNewTokens); // the wrapper's hard default
        var e = Assert.Throws<ConfigException>(() => GenerationConfig.Parse(new JsonObject { ["top_k"] = "fifty" }, "g.json"));
        Assert.Contains("g.json: 'top_k'", e.Message);
        e = Assert.Throws<ConfigException>(() => GenerationConfig.Parse(new JsonObject { ["subtalker_temperature"] = 0 }, "g.json"));
        Assert.Contains("subtalker_temperature", e.Message);
        Assert.Equal(new SamplingSettings(true, 50, 1.0, 0.9, 1.0), new GenerationConfig().Subtalker);
    }
}
