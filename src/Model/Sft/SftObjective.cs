using Qwen3Tts.Model.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Sft;

/// <summary>Which positions predict which labels.</summary>
public enum LossAlignment
{
    /// <summary>As the model generates (the default): the talker's logits at position p are scored against
    /// the codebook-0 label at p+1; the code predictor for frame k starts from the talker's hidden state at
    /// the position before frame k (what generation feeds as past_hidden), and its head for codebook i reads
    /// the position holding codebook i-1, scored against codebook i.</summary>
    Fixed,

    /// <summary>QwenLM/Qwen3-TTS finetuning/sft_12hz.py exactly, for comparison: labels pre-shifted by one
    /// and shifted again by the causal-LM loss (p vs p+2; #179, #278, #371), the code predictor fed the
    /// frame's own hidden state and scored with shifted labels (#337, #371), no text_projection (#120).</summary>
    Upstream,
}

/// <summary>The three parts of the SFT loss; token counts let callers average over accumulation windows.</summary>
public sealed record SftLoss(Tensor Loss, Tensor TalkerLoss, Tensor SubTalkerLoss, long TalkerTokens, long SubTalkerTokens);

/// <summary>The fine-tuning objective. The whole question of alignment lives in this file:
/// <see cref="TalkerPairs"/> and <see cref="SubTalkerPairs"/> say which position predicts which label, and
/// <see cref="Compute"/> scores exactly those pairs.</summary>
public static class SftObjective
{
    public const long IgnoreIndex = -100;

    /// <summary>loss = talker_loss + subTalkerWeight · sub_talker_loss, each the mean cross-entropy over its tokens.</summary>
    /// <param name="speakerEmbeddings">[B, hidden] from the frozen speaker encoder; written into the speaker slot (position 6).</param>
    public static SftLoss Compute(Talker talker, SftBatch batch, Tensor speakerEmbeddings, LossAlignment alignment, double subTalkerWeight = 0.3)
    {
        using var scope = NewDisposeScope();
        var embeds = InputEmbeddings(talker, batch, speakerEmbeddings, alignment);

        // The last position never has a next label; drop it as the reference does.
        long t = embeds.shape[1] - 1;
        var inputs = embeds[.., ..(int)t];
        var valid = batch.AttentionMask[.., ..(int)t];
        var hidden = talker.forward(inputs, Talker.PositionIds(valid), Layers.AttentionMask.CausalWithPadding(valid)); // [B, t, H]

        // Talker: codebook 0 of the next frame (or codec_eos after the last one).
        var (batchIndex, position, label) = TalkerPairs(batch.Codec0Labels, alignment);
        var talkerLogits = ParameterUse.Linear(talker.CodecHead, hidden[batchIndex, position]); // [N, V]
        var talkerLoss = nn.functional.cross_entropy(talkerLogits.to(ScalarType.Float32), label);

        // Code predictor: codebooks 1..15 of each frame.
        var (frameBatch, framePosition, conditionPosition) = SubTalkerFrames(batch.CodecMask, alignment);
        var codes = batch.CodecIds[frameBatch, framePosition]; // [F, 16]
        var condition = hidden[frameBatch, conditionPosition];  // [F, H]
        var subLoss = SubTalkerLoss(talker, condition, codes, alignment);

        var loss = talkerLoss + subTalkerWeight * subLoss;
        long subTokens = codes.shape[0] * SubTalkerPairs(codes.shape[1], alignment).Count;
        return new SftLoss(loss.MoveToOuterDisposeScope(), talkerLoss.MoveToOuterDisposeScope(), subLoss.MoveToOuterDisposeScope(),
            label.shape[0], subTokens);
    }

    /// <summary>text channel + codec channel + codebooks 1..15 at the frame positions, as the reference sums them.</summary>
    public static Tensor InputEmbeddings(Talker talker, SftBatch batch, Tensor speakerEmbeddings, LossAlignment alignment)
    {
        using var scope = NewDisposeScope();
        var textIds = batch.InputIds[.., .., 0];
        var codecIds = batch.InputIds[.., .., 1];
        Tensor text;
        if (alignment == LossAlignment.Fixed)
            text = talker.EmbedText(textIds); // generation always projects text embeddings (#120)
        else
        {
            if (talker.Config.TextHiddenSize != talker.Config.HiddenSize)
                throw new InvalidOperationException(
                    $"--loss-alignment upstream skips text_projection as the reference script does, which cannot work when text_hidden_size " +
                    $"({talker.Config.TextHiddenSize}) differs from hidden_size ({talker.Config.HiddenSize}), e.g. 0.6B (QwenLM/Qwen3-TTS #120). Use the fixed alignment.");
            text = ParameterUse.Embedding(talker.Model.TextEmbedding, textIds);
        }
        text = text * batch.TextEmbeddingMask.to(text.dtype);
        var codec = ParameterUse.Embedding(talker.Model.CodecEmbedding, codecIds) * batch.CodecEmbeddingMask.to(text.dtype);
        // The speaker slot (position 6, or 7 after a language tag) carries the speaker embedding (masked to zero above).
        var slot = batch.SpeakerMask.to(codec.dtype) * speakerEmbeddings.to(codec.dtype).unsqueeze(1);
        var sum = text + codec + slot;
        // Every frame in the input, target or ICL reference, carries all 16 codebooks (as generation feeds them).
        var frames = batch.RefFrameMask is null ? batch.CodecMask : batch.CodecMask.logical_or(batch.RefFrameMask);
        var frameMask = frames.unsqueeze(-1).to(text.dtype);
        for (int i = 1; i < talker.Config.NumCodeGroups; i++)
            sum = sum + ParameterUse.Embedding(talker.CodePredictor.Model.CodecEmbedding(i), batch.CodecIds[.., .., i]) * frameMask;
        return sum.MoveToOuterDisposeScope();
    }

    /// <summary>The talker's scored (batch, logit position, label) triples, in input coordinates
    /// (the model sees positions 0..T-2). Fixed: position p against codec_0_labels[p+1]. Upstream: labels are
    /// passed as codec_0_labels[:, 1:] and the causal-LM loss shifts once more, so p is scored against [p+2].</summary>
    public static (Tensor Batch, Tensor Position, Tensor Label) TalkerPairs(Tensor codec0Labels, LossAlignment alignment)
    {
        using var scope = NewDisposeScope();
        long t = codec0Labels.shape[1];
        int shift = alignment == LossAlignment.Fixed ? 1 : 2;
        var labels = codec0Labels[.., shift..];               // label for logit position p = labels[:, p]
        var keep = labels.ne(IgnoreIndex).nonzero();           // [N, 2]: (b, p)
        var b = keep[.., 0];
        var p = keep[.., 1];
        return (b.MoveToOuterDisposeScope(), p.MoveToOuterDisposeScope(), labels[b, p].MoveToOuterDisposeScope());
    }

    /// <summary>Frames for the code predictor: (batch, frame position, position of the talker hidden state it is
    /// conditioned on). Fixed: the position before the frame (it predicted the frame's codebook 0, and is what
    /// generation passes as past_hidden). Upstream: the frame's own position, whose input already holds the frame.</summary>
    public static (Tensor Batch, Tensor Position, Tensor Condition) SubTalkerFrames(Tensor codecMask, LossAlignment alignment)
    {
        using var scope = NewDisposeScope();
        var frames = codecMask.nonzero(); // [F, 2]
        var b = frames[.., 0];
        var q = frames[.., 1];
        var condition = alignment == LossAlignment.Fixed ? q - 1 : q.clone();
        return (b.MoveToOuterDisposeScope(), q.MoveToOuterDisposeScope(), condition.MoveToOuterDisposeScope());
    }

    /// <summary>For a code-predictor input of 16 positions [condition, cb0, cb1, ..., cb14]: which (position,
    /// head, codebook label) triples are scored. Fixed: position i through head i against codebook i, i = 1..15.
    /// Upstream: head i at position i against codebook i+1 (the causal-LM shift), i = 1..14.</summary>
    public static IReadOnlyList<(int Position, int Head, int Codebook)> SubTalkerPairs(long groups, LossAlignment alignment)
    {
        var pairs = new List<(int, int, int)>();
        for (int i = 1; i < groups; i++)
        {
            int codebook = alignment == LossAlignment.Fixed ? i : i + 1;
            if (codebook < groups) pairs.Add((i, i, codebook));
        }
        return pairs;
    }

    static Tensor SubTalkerLoss(Talker talker, Tensor condition, Tensor codes, LossAlignment alignment)
    {
        using var scope = NewDisposeScope();
        long groups = codes.shape[1];
        // [F, 16, H]: the conditioning hidden state, codebook 0 through the talker's codec embedding,
        // codebooks 1..14 through the code predictor's embeddings (codebook 15 is never an input).
        var parts = new List<Tensor> { condition.unsqueeze(1), ParameterUse.Embedding(talker.Model.CodecEmbedding, codes[.., 0..1]) };
        for (int i = 1; i < groups - 1; i++)
            parts.Add(ParameterUse.Embedding(talker.CodePredictor.Model.CodecEmbedding(i), codes[.., i..(i + 1)]));
        var hidden = talker.CodePredictor.forward(cat(parts, 1)); // [F, 16, cp_hidden]

        var logits = new List<Tensor>();
        var labels = new List<Tensor>();
        foreach (var (position, head, codebook) in SubTalkerPairs(groups, alignment))
        {
            logits.Add(ParameterUse.Linear(talker.CodePredictor.LmHead(head), hidden[.., position]));
            labels.Add(codes[.., codebook]);
        }
        var allLogits = cat(logits, 0).to(ScalarType.Float32);
        return nn.functional.cross_entropy(allLogits, cat(labels, 0)).MoveToOuterDisposeScope();
    }
}
