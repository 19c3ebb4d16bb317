using Qwen3Tts.Model;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Rank.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Training;

public class DebugStepTests : CleansTempDirs
{
    [Fact]
    public void Writes_the_batch_gradients_and_one_clipped_AdamW_step_that_a_hand_formula_reproduces()
    {
        string model = TrainingFixture.TinyModel(9, "dbg-model");
        string data = TrainingFixture.DemoData(3, tag: "dbg-data");
        string output = TestPaths.NewTempDir("dbg-out");

        var adam = new AdamWOptions(Lr: 1e-3, WeightDecay: 0.1);
        var step = DebugStep.Run(model, data, output, new DebugStep.Settings(LossAlignment.Fixed, OptimizerStep: true, "fp32", adam, MaxGradNorm: 0.5, SubTalkerWeight: 0.3));
        double talker = step["talker_loss"]!.GetValue<double>(), sub = step["sub_talker_loss"]!.GetValue<double>();
        Assert.Equal(talker + 0.3 * sub, step["loss"]!.GetValue<double>(), tolerance: 1e-4);
        Assert.InRange(talker, 7, 9); // ~ln(3072) = 8.03 for near-uniform logits of a random model
        Assert.InRange(sub, 7, 8.5);  // ~ln(2048) = 7.62

        using var scope = NewDisposeScope();
        using var batch = SafetensorsFile.Open(Path.Combine(output, "batch.safetensors"));
        Assert.Equal(new[] { "attention_mask", "codec_0_labels", "codec_embedding_mask", "codec_ids", "codec_mask", "input_ids", "ref_mel_frames", "ref_mels", "text_embedding_mask" },
            batch.Entries.Select(e => e.Name).Order(StringComparer.Ordinal));
        Assert.Equal(3, batch.Entry("input_ids").Shape[0]);
        Assert.Equal(2, batch.Entry("input_ids").Shape[2]);

        using var grads = SafetensorsFile.Open(Path.Combine(output, "grads.safetensors"));
        using var updated = SafetensorsFile.Open(Path.Combine(output, "updated.safetensors"));
        using var before = CheckpointFiles.Open(model);
        Assert.DoesNotContain(grads.Entries, e => e.Name.StartsWith("speaker_encoder.")); // frozen
        double norm = Math.Sqrt(grads.Entries.Sum(e => grads.Read(e.Name).pow(2).sum().item<float>()));
        Assert.Equal(step["grad_norm"]!.GetValue<double>(), norm, tolerance: 1e-3 * Math.Max(1, norm));

        // AdamW's first step: p1 = p0·(1 − lr·wd) − lr·ĝ/(|ĝ| + eps), with ĝ the clipped gradient.
        double clip = Math.Min(1.0, 0.5 / (norm + 1e-6));
        foreach (var name in new[] { "talker.codec_head.weight", "talker.code_predictor.lm_head.3.weight", "talker.model.layers.1.mlp.up_proj.weight" })
        {
            var g = grads.Read(name) * clip;
            var expected = before.Read(name) * (1 - 1e-3 * 0.1) - 1e-3 * g / (g.abs() + 1e-8);
            Assert.True(updated.Read(name).allclose(expected, rtol: 1e-5, atol: 1e-7), name);
        }
    }
}
