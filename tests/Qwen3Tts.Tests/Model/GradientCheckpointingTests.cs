using System.Text.Json.Nodes;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Layers;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Rank.Distributed;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Model;

/// <summary>--gradient_checkpointing recomputes each layer in backward from its saved input: the gradients must be the
/// plain step's bit for bit (fp32), for every parameter, with and without accumulation over micro-steps.</summary>
public class GradientCheckpointingTests(ITestOutputHelper output)
{
    /// <summary>The bench's mid config: the 0.6B widths with 4 talker and 2 code-predictor layers. Its text embedding is
    /// narrowed to 256 (the bench narrows it to 1024): the 151936 x 2048 table alone would hold 2.5 GB of weights and
    /// gradients in the shared test host, and it is no layer that recomputes.</summary>
    static Qwen3TtsConfig Mid()
    {
        var json = Presets.ConfigJson("0.6b");
        json["talker_config"]!["text_hidden_size"] = 256;
        json["talker_config"]!["num_hidden_layers"] = 4;
        json["talker_config"]!["code_predictor_config"]!["num_hidden_layers"] = 2;
        json["talker_config"]!["code_predictor_config"]!["layer_types"] = new JsonArray("full_attention", "full_attention");
        return Qwen3TtsConfig.Parse(json, "mid");
    }

    static SftSample Sample(Qwen3TtsConfig config, int s, int textIds, int frames)
    {
        var rng = new Random(500 + s);
        var ids = new List<int> { config.ImStartTokenId, config.AssistantTokenId, 198 };
        ids.AddRange(Enumerable.Range(0, textIds).Select(_ => rng.Next(1000, 100000)));
        ids.AddRange(new[] { config.ImEndTokenId, 198, config.ImStartTokenId, config.AssistantTokenId, 198 });
        var codes = new long[frames, 16];
        for (int f = 0; f < frames; f++)
            for (int q = 0; q < 16; q++) codes[f, q] = rng.Next(2048);
        return new SftSample(ids, codes, zeros(20, 128));
    }

    /// <summary>An exact fingerprint of every parameter's gradient after <paramref name="microSteps"/> backward passes
    /// (uneven lengths: padding and masks take part), each micro-loss scaled as accumulation does.</summary>
    static ParameterChecksum[] Gradients(Qwen3TtsModel model, Qwen3TtsConfig config, GradientCheckpointing mode, int microSteps)
    {
        var talker = model.Talker;
        talker.GradientCheckpointing = mode;
        var parameters = talker.parameters().ToList();
        foreach (var p in parameters) p.grad = null;
        for (int m = 0; m < microSteps; m++)
        {
            using var scope = NewDisposeScope();
            using var batch = SftCollate.Collate([Sample(config, 2 * m, 9, 7), Sample(config, 2 * m + 1, 5, 4)], config);
            var speakers = randn(new long[] { 2, config.Talker.HiddenSize }, generator: new Generator((ulong)(9 + m)));
            var loss = SftObjective.Compute(talker, batch, speakers, LossAlignment.Fixed);
            (loss.Loss * (1.0 / microSteps)).backward();
        }
        var result = parameters.Select(p => ParameterChecksum.Of([p.grad ?? zeros_like(p)])).ToArray();
        foreach (var p in parameters) p.grad = null;
        talker.GradientCheckpointing = GradientCheckpointing.Off;
        return result;
    }

    [Theory]
    [InlineData("tiny", 1)]
    [InlineData("tiny", 2)]
    [InlineData("mid", 1)]
    [InlineData("mid", 2)]
    public void Recomputed_layers_give_the_plain_steps_gradients_bit_for_bit(string preset, int microSteps)
    {
        var config = preset == "mid" ? Mid() : Presets.Config("tiny");
        using var model = new Qwen3TtsModel(config);
        ModelInit.Initialize(model, 4, 0.02);
        var names = model.Talker.named_parameters().Select(p => p.name).ToArray();
        var plain = Gradients(model, config, GradientCheckpointing.Off, microSteps);
        Assert.Contains(plain, c => c.SumSquares > 0);
        foreach (var mode in new[] { GradientCheckpointing.Talker, GradientCheckpointing.All })
        {
            var recomputed = Gradients(model, config, mode, microSteps);
            for (int i = 0; i < names.Length; i++)
                Assert.True(plain[i] == recomputed[i], $"{mode}: {names[i]} differs: Σg² {plain[i].SumSquares:R} vs {recomputed[i].SumSquares:R}");
        }
        output.WriteLine($"{preset}, {microSteps} micro-steps: {names.Length} gradients identical with the talker's and all layers recomputed");
    }
}
