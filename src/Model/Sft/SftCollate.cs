using Qwen3Tts.Model.Config;
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

    /// <summary>Why a sample of these chat ids and frames cannot train on this model, as (field, reason); null when it
    /// can. Checked for every record before the first step, so no batch is built (or allocated) for a record the model
    /// cannot take: ids outside the text vocabulary, too few ids, a sequence beyond max_position_embeddings.</summary>
    public static (string Field, string Reason)? Problem(IReadOnlyList<int> textIds, int frames, Qwen3TtsConfig config, bool language = false)
    {
        ArgumentNullException.ThrowIfNull(textIds);
        ArgumentNullException.ThrowIfNull(config);
        int vocab = config.Talker.TextVocabSize;
        for (int k = 0; k < textIds.Count; k++)
            if (textIds[k] < 0 || textIds[k] >= vocab) return ($"text_ids[{k}]", $"is {textIds[k]}, outside the text vocabulary [0, {vocab})");
        if (textIds.Count < MinTextIds) return ("text", $"has {textIds.Count} chat ids, fewer than the {MinTextIds} a sample needs (the text is empty)");
        int length = SequenceLength(textIds.Count, frames, language), limit = config.Talker.MaxPositionEmbeddings;
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
        int t = samples.Max(s => SequenceLength(s.TextIds.Count, s.AudioCodes.GetLength(0), s.LanguageId is not null));

        var inputIds = new long[b * t * 2];
        var codecIds = new long[b * t * groups];
        var attention = new long[b * t];
        var textMask = new bool[b * t];
        var codecEmbMask = new bool[b * t];
        var speakerMask = new bool[b * t];
        var codecMask = new bool[b * t];
        var labels = new long[b * t];
        Array.Fill(labels, IgnoreLabel);

        for (int i = 0; i < b; i++)
        {
            var ids = samples[i].TextIds;
            var codes = samples[i].AudioCodes;
            int len = ids.Count - TrailingChatIds; // L: text_ids[:, :-5]
            int frames = codes.GetLength(0);
            var tags = Generation.CodecPrefix.Ids(samples[i].LanguageId, talker);
            int prefix = PrefixRowsOf(samples[i].LanguageId is not null); // 3 chat ids, the tags, the speaker slot, tts_bos
            int speakerRow = 3 + tags.Length;
            int row0 = i * t;
            int end = prefix + len + frames;   // first row past this sample
            int firstCode = prefix + len - 1;  // row of codes[0]
            void Text(int row, long id) => inputIds[(row0 + row) * 2] = id;
            void Codec(int row, long id) => inputIds[(row0 + row) * 2 + 1] = id;

            // text channel
            for (int r = 0; r < 3; r++) Text(r, ids[r]);
            for (int r = 3; r < prefix - 1; r++) Text(r, config.TtsPadTokenId);
            Text(prefix - 1, config.TtsBosTokenId);
            for (int k = 3; k < len; k++) Text(prefix + k - 3, ids[k]);
            Text(prefix + len - 3, config.TtsEosTokenId);
            for (int r = prefix + len - 2; r < end; r++) Text(r, config.TtsPadTokenId);

            // codec channel: rows 0..2 stay 0, then the tags, the speaker slot (0 here, replaced by the embedding)
            for (int k = 0; k < tags.Length; k++) Codec(3 + k, tags[k]);
            Codec(speakerRow, 0);
            speakerMask[row0 + speakerRow] = true;
            Codec(prefix - 1, talker.CodecPadId);
            for (int r = prefix; r <= prefix + len - 3; r++) Codec(r, talker.CodecPadId);
            Codec(prefix + len - 2, talker.CodecBosId);
            for (int f = 0; f < frames; f++)
            {
                int row = firstCode + f;
                Codec(row, codes[f, 0]);
                labels[row0 + row] = codes[f, 0];
                codecMask[row0 + row] = true;
                for (int g = 0; g < groups; g++) codecIds[(row0 + row) * groups + g] = codes[f, g];
            }
            Codec(firstCode + frames, talker.CodecEosTokenId);
            labels[row0 + firstCode + frames] = talker.CodecEosTokenId;

            for (int r = 0; r < end; r++)
            {
                textMask[row0 + r] = true;
                attention[row0 + r] = 1;
                codecEmbMask[row0 + r] = r >= 3 && r != speakerRow;
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
            SpeakerMask: tensor(speakerMask, new long[] { b, t, 1 }));
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
