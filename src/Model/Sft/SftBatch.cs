using static TorchSharp.torch;

namespace Qwen3Tts.Model.Sft;

/// <summary>One training sample before collation.</summary>
/// <param name="TextIds">ids of the full chat text <c>&lt;|im_start|&gt;assistant\n{text}&lt;|im_end|&gt;\n&lt;|im_start|&gt;assistant\n</c>
/// (the reference keeps all but the last 5: the trailing "&lt;|im_end|&gt;\n&lt;|im_start|&gt;assistant\n").</param>
/// <param name="AudioCodes">[frames, 16] codec ids of the target audio, each in [0, 2048).</param>
/// <param name="RefMel">[mel frames, 128] log-mel of the reference clip (24 kHz).</param>
/// <param name="LanguageId">the language's codec row (codec_language_id), or null for the no-language ("auto") prefix.</param>
/// <param name="RefTextIds">for an ICL sample: the ids of the reference transcript's turn
/// (<see cref="Generation.PromptBuilder.RefChatText"/>), whose clip's codes are <paramref name="RefCodes"/>.</param>
/// <param name="RefCodes">for an ICL sample: [frames, 16] codes of the reference clip, in the prompt before the target.</param>
public sealed record SftSample(IReadOnlyList<int> TextIds, long[,] AudioCodes, Tensor RefMel, int? LanguageId = null,
    IReadOnlyList<int>? RefTextIds = null, long[,]? RefCodes = null)
{
    /// <summary>Trained on the ICL cloning prompt (reference text and codes before the target) rather than the x-vector one.</summary>
    public bool IsIcl => RefCodes is not null;
}

/// <summary>Collated tensors, each named (in the comment) by the reference collate's key.</summary>
public sealed record SftBatch(
    Tensor InputIds,           // input_ids            [B, T, 2] int64: channel 0 text ids, channel 1 codec ids
    Tensor CodecIds,           // codec_ids            [B, T, 16] int64: all codebooks at the codec positions, else 0
    Tensor RefMels,            // ref_mels             [B, F, 128] float32, right-padded with zeros to the longest clip
    Tensor RefMelFrames,       // (ours)               [B] int64: valid mel frames per sample (clips may differ in length)
    Tensor AttentionMask,      // attention_mask       [B, T] int64
    Tensor TextEmbeddingMask,  // text_embedding_mask  [B, T, 1] bool
    Tensor CodecEmbeddingMask, // codec_embedding_mask [B, T, 1] bool (false at the speaker slot)
    Tensor Codec0Labels,       // codec_0_labels       [B, T] int64, -100 where there is no label
    Tensor CodecMask,          // codec_mask           [B, T] bool: positions holding a codec frame
    Tensor SpeakerMask,        // (ours)               [B, T, 1] bool: the speaker slot (position 6, or 7 after a language tag)
    Tensor? RefFrameMask = null) // (ours)             [B, T] bool: ICL reference frames: all 16 codebooks in, never scored; null without ICL
    : IDisposable
{
    /// <summary>Every tensor of the batch, in declaration order.</summary>
    public IReadOnlyList<Tensor> Tensors => RefFrameMask is null
        ? [InputIds, CodecIds, RefMels, RefMelFrames, AttentionMask, TextEmbeddingMask, CodecEmbeddingMask, Codec0Labels, CodecMask, SpeakerMask]
        : [InputIds, CodecIds, RefMels, RefMelFrames, AttentionMask, TextEmbeddingMask, CodecEmbeddingMask, Codec0Labels, CodecMask, SpeakerMask, RefFrameMask];

    /// <summary>The same batch on <paramref name="device"/> (dtypes kept): a new batch the caller owns and disposes
    /// besides this one. Batches are collated on the CPU and moved once, before the forward.</summary>
    public SftBatch To(Device device)
    {
        using var scope = NewDisposeScope();
        Tensor Move(Tensor t) => t.to(device).MoveToOuterDisposeScope();
        return new SftBatch(Move(InputIds), Move(CodecIds), Move(RefMels), Move(RefMelFrames), Move(AttentionMask),
            Move(TextEmbeddingMask), Move(CodecEmbeddingMask), Move(Codec0Labels), Move(CodecMask), Move(SpeakerMask),
            RefFrameMask is null ? null : Move(RefFrameMask));
    }

    public void Dispose()
    {
        foreach (var t in Tensors) t.Dispose();
    }
}
