using System.Text.Json.Nodes;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Checkpoint;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Model.Text;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Training;

/// <summary>One forward/backward over every record of a JSONL file as one batch (no shuffling), with every
/// intermediate written out, so a step can be compared number by number with another implementation:
/// step.json (losses, grad norm before clipping), batch.safetensors (the collated tensors by the reference
/// collate's key names), grads.safetensors (each parameter's gradient by state-dict name) and, with
/// <c>optimizerStep</c>, updated.safetensors (the parameters after one clipped AdamW step).</summary>
public static class DebugStep
{
    public sealed record Settings(LossAlignment Alignment, bool OptimizerStep, string MixedPrecision, AdamWOptions Adam, double MaxGradNorm, double SubTalkerWeight);

    public static JsonObject Run(string modelDir, string dataPath, string outDir, Settings s)
    {
        Directory.CreateDirectory(outDir);
        using var scope = NewDisposeScope();
        var config = Qwen3TtsConfig.Load(Path.Combine(modelDir, ModelDirectory.ConfigFile));
        using var model = ModelDirectory.Load(modelDir, ScalarType.Float32);
        model.SpeakerEncoder?.eval();
        using var trainable = new TrainableModel(model, TrainableModel.ParsePrecision(s.MixedPrecision));
        var records = TrainingData.Read(dataPath, skipBad: false, out _, bounds: CodeBounds.Of(config.Talker));
        var data = new SftDataSource(records, Qwen3TextTokenizer.FromModelDirectory(modelDir), config);
        using var batch = data.Batch(Enumerable.Range(0, records.Count).ToList());

        var speakers = SftCollate.SpeakerEmbeddings(trainable.SpeakerEncoder!, batch);
        var loss = SftObjective.Compute(trainable.ComputeTalker, batch, speakers, s.Alignment, s.SubTalkerWeight);
        loss.Loss.backward();
        trainable.AccumulateGradsToMaster();

        Safetensors.Save(Path.Combine(outDir, "batch.safetensors"), new (string, Tensor)[]
        {
            ("input_ids", batch.InputIds), ("codec_ids", batch.CodecIds), ("ref_mels", batch.RefMels), ("ref_mel_frames", batch.RefMelFrames),
            ("attention_mask", batch.AttentionMask), ("text_embedding_mask", batch.TextEmbeddingMask), ("codec_embedding_mask", batch.CodecEmbeddingMask),
            ("codec_0_labels", batch.Codec0Labels), ("codec_mask", batch.CodecMask),
        });
        Safetensors.Save(Path.Combine(outDir, "grads.safetensors"),
            trainable.MasterParameters.Where(p => p.Parameter.grad is not null).Select(p => (p.Name, p.Parameter.grad!)));

        double norm = GradClip.ClipGradNorm(trainable.MasterParameters.Select(p => (Tensor)p.Parameter), s.MaxGradNorm);
        if (s.OptimizerStep)
        {
            using var optimizer = new AdamW(trainable.MasterParameters, s.Adam);
            optimizer.Step(s.Adam.Lr);
            Safetensors.Save(Path.Combine(outDir, "updated.safetensors"), trainable.MasterParameters.Select(p => (p.Name, (Tensor)p.Parameter)));
        }
        var step = new JsonObject
        {
            ["talker_loss"] = (double)loss.TalkerLoss.item<float>(),
            ["sub_talker_loss"] = (double)loss.SubTalkerLoss.item<float>(),
            ["loss"] = (double)loss.Loss.item<float>(),
            ["grad_norm"] = norm,
            ["talker_tokens"] = loss.TalkerTokens,
            ["sub_talker_tokens"] = loss.SubTalkerTokens,
            ["samples"] = records.Count,
            ["loss_alignment"] = s.Alignment.ToString().ToLowerInvariant(),
            ["mixed_precision"] = s.MixedPrecision,
        };
        AtomicFile.WriteAllText(Path.Combine(outDir, "step.json"), step.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
        return step;
    }
}
