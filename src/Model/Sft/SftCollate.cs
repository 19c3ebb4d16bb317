using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Generation;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Sft;

/// <summary>The reference fine-tuning collate (finetuning/dataset.py, collate_fn) and the frozen speaker
/// encoder pass that feeds the talker's speaker slot (sft_12hz.py).</summary>
/// <remarks>
/// Layout of one sample, with L = text ids after dropping the trailing 5 and F = audio frames
/// (positions are row indices; T = max over the batch of (L + F) + 8; everything past 8 + L + F is padding):
/// <code>
/// pos          0..2     3..6      7        8..L+4     L+5      L+6      L+7 .. L+6+F   L+7+F
/// text  ch 0   ids[:3]  tts_pad   tts_bos  ids[3:]    tts_eos  tts_pad  tts_pad        tts_pad
/// codec ch 1   0        nothink,  pad      codec_pad  pad      bos      codes[:, 0]    codec_eos
///                       think_bos, think_eos, 0 (speaker slot at 6)
/// labels       -100 ...                                                 codes[:, 0]    codec_eos
/// </code>
/// The talker sees rows [0, T-1) and is scored against labels [1, T), so the row holding codec_bos predicts
/// the first code and the last code predicts codec_eos. A sample with a language (<see cref="SftSample.LanguageId"/>)
/// carries the four tags [think, think_bos, language, think_eos] of <see cref="Generation.CodecPrefix"/> in rows 3..6
/// instead of three, so its speaker slot is row 7 and everything after it one row later, exactly as generation
/// builds the prompt.
/// </remarks>
public static class SftCollate
{
    /// <summary>Rows before the text: 3 chat-prefix ids, 4 tts_pad (codec: nothink, think_bos, think_eos, speaker), tts_bos (codec_pad).</summary>
    public const int PrefixRows = 8;

    /// <summary>Ids the reference drops from the end of the chat text: "&lt;|im_end|&gt;\n&lt;|im_start|&gt;assistant\n".</summary>
    public const int TrailingChatIds = 5;

    /// <summary>Fewest chat ids a sample may have: the 3-id assistant prefix, one text id, and the 5 trailing ids.</summary>
    public const int MinTextIds = 3 + 1 + TrailingChatIds;

    /// <summary>The speaker-embedding row of the codec channel without a language (one row later with one).</summary>
    public const int SpeakerRow = 6;

    /// <summary>Rows before the text for a sample with or without a language tag.</summary>
    public static int PrefixRowsOf(bool language) => PrefixRows + (language ? 1 : 0);

    /// <summary>Rows of the talker sequence a sample takes: its chat ids less the trailing ones, its frames, the prefix.</summary>
    public static int SequenceLength(int textIds, int frames, bool language = false) => textIds - TrailingChatIds + frames + PrefixRowsOf(language);

    /// <summary>Rows of an ICL sample (<see cref="Layout"/>): the prefix, codec_bos, the reference frames, the target frames,
    /// codec_eos. The texts ride on those rows (streaming), so their lengths do not add to it.</summary>
    public static int IclSequenceLength(int refFrames, int frames, bool language = false) => PrefixRowsOf(language) + 1 + refFrames + frames + 1;

    /// <summary>A sample's prompt, from the layout synthesis shares (<see cref="PromptLayout"/>): for an x-vector sample the
    /// reference fine-tuning layout, which is generation's non-streaming one; for an ICL sample the streaming ICL layout
    /// synthesis clones with by default. The target frames follow it, each with its trailing text (tts_pad once spent).</summary>
    public static (List<PromptPosition> Positions, List<string> Trailing) Layout(SftSample sample)
    {
        ArgumentNullException.ThrowIfNull(sample);
        List<string> tags = [.. CodecPrefix.Tags(sample.LanguageId), "x_vector", "codec_pad", "codec_bos"];
        return PromptLayout.Of(sample.TextIds, tags, refChatIds: sample.RefTextIds, refFrames: sample.RefCodes?.GetLength(0) ?? 0, nonStreaming: !sample.IsIcl);
    }

    /// <summary>Why a sample of these chat ids and frames cannot train on this model, as (field, reason); null when it
    /// can. Checked for every record before the first step, so no batch is built (or allocated) for a record the model
    /// cannot take: ids outside the text vocabulary, too few ids, a sequence beyond max_position_embeddings.</summary>
    /// <param name="refTextIds">for an ICL sample: the reference transcript's turn ids; <paramref name="refFrames"/> its clip's frames.</param>
    public static (string Field, string Reason)? Problem(IReadOnlyList<int> textIds, int frames, Qwen3TtsConfig config, bool language = false,
        IReadOnlyList<int>? refTextIds = null, int refFrames = 0)
    {
        ArgumentNullException.ThrowIfNull(textIds);
        ArgumentNullException.ThrowIfNull(config);
        int vocab = config.Talker.TextVocabSize;
        for (int k = 0; k < textIds.Count; k++)
            if (textIds[k] < 0 || textIds[k] >= vocab) return ($"text_ids[{k}]", $"is {textIds[k]}, outside the text vocabulary [0, {vocab})");
        if (textIds.Count < MinTextIds) return ("text", $"has {textIds.Count} chat ids, fewer than the {MinTextIds} a sample needs (the text is empty)");
        int limit = config.Talker.MaxPositionEmbeddings;
        if (refTextIds is not null)
        {
            for (int k = 0; k < refTextIds.Count; k++)
                if (refTextIds[k] < 0 || refTextIds[k] >= vocab) return ("ref_text", $"token {k} is {refTextIds[k]}, outside the text vocabulary [0, {vocab})");
            if (refTextIds.Count <= PromptBuilder.RoleIds + PromptBuilder.RefTrailingIds) return ("ref_text", "is empty (an ICL sample needs the reference clip's transcript)");
            if (refFrames < 1) return ("ref_codes", "has no frames");
            int icl = IclSequenceLength(refFrames, frames, language);
            if (icl > limit)
                return ("ref_codes", $"the ICL training sequence is {icl} positions ({refFrames} reference frames + {frames} target frames + " +
                    $"{PrefixRowsOf(language) + 2} prompt rows), above the talker's max_position_embeddings {limit}");
            return null;
        }
        int length = SequenceLength(textIds.Count, frames, language);
        if (length > limit)
            return ("audio_codes", $"the training sequence is {length} positions ({textIds.Count - TrailingChatIds - 3} text tokens + {frames} frames + " +
                $"{PrefixRowsOf(language) + 3} prompt rows), above the talker's max_position_embeddings {limit}");
        return null;
    }

    /// <summary>Label value ignored by the cross-entropy.</summary>
    public const long IgnoreLabel = -100;

    /// <summary>Builds the batch exactly as the reference collate, except that reference mels of different lengths
    /// are right-padded with zeros (the reference concatenates them and fails unless all are equal) and their
    /// lengths kept in <see cref="SftBatch.RefMelFrames"/>. Token tensors are on the CPU; RefMels on the first mel's device.</summary>
    public static SftBatch Collate(IReadOnlyList<SftSample> samples, Qwen3TtsConfig config)
    {
        ArgumentNullException.ThrowIfNull(samples);
        ArgumentNullException.ThrowIfNull(config);
        if (samples.Count == 0) throw new ArgumentException("cannot collate an empty batch", nameof(samples));
        for (int i = 0; i < samples.Count; i++) Validate(samples[i], i, config);

        var talker = config.Talker;
        int groups = talker.NumCodeGroups;
        int b = samples.Count;
        var layouts = samples.Select(Layout).ToList();
        int t = Enumerable.Range(0, b).Max(i => layouts[i].Positions.Count + samples[i].AudioCodes.GetLength(0) + 1);

        var inputIds = new long[b * t * 2];
        var codecIds = new long[b * t * groups];
        var attention = new long[b * t];
        var textMask = new bool[b * t];
        var codecEmbMask = new bool[b * t];
        var speakerMask = new bool[b * t];
        var codecMask = new bool[b * t];
        var refFrameMask = samples.Any(s => s.IsIcl) ? new bool[b * t] : null;
        var labels = new long[b * t];
        Array.Fill(labels, IgnoreLabel);

        for (int i = 0; i < b; i++)
        {
            var (positions, trailing) = layouts[i];
            var codes = samples[i].AudioCodes;
            int frames = codes.GetLength(0);
            int prompt = positions.Count;
            int end = prompt + frames + 1; // the prompt, the frames, codec_eos
            int row0 = i * t;
            void Text(int row, string slot) => inputIds[(row0 + row) * 2] = PromptLayout.TextId(slot, config);
            void Codec(int row, long id)
            {
                inputIds[(row0 + row) * 2 + 1] = id;
                codecEmbMask[row0 + row] = true;
            }
            void Frame(int row, long[,] grid, int f)
            {
                Codec(row, grid[f, 0]);
                for (int g = 0; g < groups; g++) codecIds[(row0 + row) * groups + g] = grid[f, g];
            }

            // The prompt: each position's text and codec channel (none, a tag, the speaker slot, or an ICL reference frame).
            for (int r = 0; r < prompt; r++)
            {
                var (text, codec) = (positions[r].Text, positions[r].Codec);
                Text(r, text);
                if (codec.Length == 0) continue;
                if (codec == "x_vector") speakerMask[row0 + r] = true; // replaced by the speaker embedding; codec id 0, not embedded
                else if (PromptLayout.RefFrame(codec) is int f)
                {
                    Frame(r, samples[i].RefCodes!, f);
                    refFrameMask![row0 + r] = true;
                }
                else Codec(r, PromptLayout.CodecId(codec, talker));
            }
            // The target: frame f (then codec_eos) with trailing text f, each scored by the row before it.
            for (int f = 0; f <= frames; f++)
            {
                int row = prompt + f;
                Text(row, f < trailing.Count ? trailing[f] : "tts_pad");
                if (f < frames)
                {
                    Frame(row, codes, f);
                    labels[row0 + row] = codes[f, 0];
                    codecMask[row0 + row] = true;
                }
                else
                {
                    Codec(row, talker.CodecEosTokenId);
                    labels[row0 + row] = talker.CodecEosTokenId;
                }
            }
            for (int r = 0; r < end; r++)
            {
                textMask[row0 + r] = true;
                attention[row0 + r] = 1;
            }
        }

        var (refMels, refMelFrames) = PadMels(samples);
        return new SftBatch(
            InputIds: tensor(inputIds, new long[] { b, t, 2 }),
            CodecIds: tensor(codecIds, new long[] { b, t, groups }),
            RefMels: refMels,
            RefMelFrames: refMelFrames,
            AttentionMask: tensor(attention, new long[] { b, t }),
            TextEmbeddingMask: tensor(textMask, new long[] { b, t, 1 }),
            CodecEmbeddingMask: tensor(codecEmbMask, new long[] { b, t, 1 }),
            Codec0Labels: tensor(labels, new long[] { b, t }),
            CodecMask: tensor(codecMask, new long[] { b, t }),
            SpeakerMask: tensor(speakerMask, new long[] { b, t, 1 }),
            RefFrameMask: refFrameMask is null ? null : tensor(refFrameMask, new long[] { b, t }));
    }

    /// <summary>The frozen speaker encoder on each sample's unpadded reference mel, as [B, enc_dim] in batch order,
    /// on the encoder's device and dtype. Samples of equal mel length share one call; padding never enters the
    /// encoder, whose attentive pooling has no mask and would otherwise average over the zero frames.</summary>
    public static Tensor SpeakerEmbeddings(SpeakerEncoder encoder, SftBatch batch)
    {
        ArgumentNullException.ThrowIfNull(encoder);
        ArgumentNullException.ThrowIfNull(batch);
        var weight = encoder.parameters().First();
        long[] frames;
        using (var onCpu = batch.RefMelFrames.cpu()) frames = onCpu.data<long>().ToArray();

        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var result = empty(frames.Length, encoder.Config.EncDim, dtype: weight.dtype, device: weight.device);
        foreach (var group in Enumerable.Range(0, frames.Length).GroupBy(i => frames[i]))
        {
            var rows = tensor(group.Select(i => (long)i).ToArray(), device: batch.RefMels.device);
            // [n, F, 128] -> [n, frames, 128]
            var mels = batch.RefMels.index_select(0, rows).narrow(1, 0, group.Key).to(weight.dtype).to(weight.device);
            result.index_copy_(0, rows.to(weight.device), encoder.forward(mels));
        }
        return result.MoveToOuterDisposeScope();
    }

    static void Validate(SftSample sample, int index, Qwen3TtsConfig config)
    {
        if (sample is null) throw new ArgumentException($"sample {index} is null");
        var ids = sample.TextIds ?? throw new ArgumentException($"sample {index}: text_ids is null");
        if (ids.Count < MinTextIds)
            throw new ArgumentException($"sample {index}: text_ids has {ids.Count} ids, fewer than the {MinTextIds} needed: " +
                "the chat template \"<|im_start|>assistant\\n{text}<|im_end|>\\n<|im_start|>assistant\\n\" alone is 8, so the text is empty");
        int textVocab = config.Talker.TextVocabSize;
        for (int k = 0; k < ids.Count; k++)
            if (ids[k] < 0 || ids[k] >= textVocab)
                throw new ArgumentException($"sample {index}: text_ids[{k}] is {ids[k]}, outside the text vocabulary [0, {textVocab})");

        var codes = sample.AudioCodes ?? throw new ArgumentException($"sample {index}: audio_codes is null");
        if (codes.GetLength(0) == 0) throw new ArgumentException($"sample {index}: audio_codes is empty; a sample needs at least one frame");
        CodeBounds.Of(config.Talker).Check(codes, $"sample {index}: audio_codes");

        if (sample.IsIcl)
        {
            if (sample.RefTextIds is null) throw new ArgumentException($"sample {index}: an ICL sample needs the reference transcript's ids");
            if (Problem(ids, codes.GetLength(0), config, sample.LanguageId is not null, sample.RefTextIds, sample.RefCodes!.GetLength(0)) is { } problem)
                throw new ArgumentException($"sample {index}: {problem.Field} {problem.Reason}");
            CodeBounds.Of(config.Talker).Check(sample.RefCodes, $"sample {index}: ref_codes");
        }
        else if (sample.RefTextIds is not null) throw new ArgumentException($"sample {index}: reference transcript ids without reference codes");

        var mel = sample.RefMel ?? throw new ArgumentException($"sample {index}: ref_mel is null");
        int melDim = config.SpeakerEncoder.MelDim;
        if (mel.dim() != 2 || mel.shape[1] != melDim || mel.shape[0] == 0)
            throw new ArgumentException($"sample {index}: ref_mel is shaped [{string.Join(", ", mel.shape)}]; expected [frames > 0, {melDim}]");
    }

    static (Tensor Mels, Tensor Frames) PadMels(IReadOnlyList<SftSample> samples)
    {
        var first = samples[0].RefMel;
        long longest = samples.Max(s => s.RefMel.shape[0]);
        var mels = zeros(samples.Count, longest, first.shape[1], dtype: ScalarType.Float32, device: first.device);
        using (no_grad())
            for (int i = 0; i < samples.Count; i++)
            {
                var mel = samples[i].RefMel;
                using var row = mels[i];
                using var slot = row.narrow(0, 0, mel.shape[0]); // [frames_i, 128] view of the padded row
                slot.copy_(mel);
            }
        var frames = tensor(samples.Select(s => s.RefMel.shape[0]).ToArray());
        return (mels, frames);
    }
}
