using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Layers;
using Qwen3Tts.Model.Sft;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Sft;

/// <summary>Which position predicts which label, on a crafted one-sample batch laid out as the reference
/// collate lays it out: 5 text ids after [:-5] (L = 5) and 3 frames, so T = 5 + 3 + 8 = 16; codec_bos at
/// 8+L-2 = 11; frames at 12, 13, 14; codec_eos label at 15.</summary>
public class AlignmentTests
{
    const int Bos = 11;
    static readonly long[] Frame0 = Enumerable.Range(0, 16).Select(i => 100L + i).ToArray();
    static readonly long[] Frame1 = Enumerable.Range(0, 16).Select(i => 200L + i).ToArray();
    static readonly long[] Frame2 = Enumerable.Range(0, 16).Select(i => 300L + i).ToArray();

    static SftBatch CraftedBatch(Qwen3TtsConfig c)
    {
        const int t = 16;
        var labels = full(1, t, SftObjective.IgnoreIndex, dtype: ScalarType.Int64);
        labels[0, 12] = Frame0[0]; labels[0, 13] = Frame1[0]; labels[0, 14] = Frame2[0]; labels[0, 15] = c.Talker.CodecEosTokenId;
        var codecIds = zeros(1, t, 16, dtype: ScalarType.Int64);
        codecIds[0, 12] = tensor(Frame0); codecIds[0, 13] = tensor(Frame1); codecIds[0, 14] = tensor(Frame2);
        var codecMask = zeros(1, t, dtype: ScalarType.Bool);
        codecMask[0, TensorIndex.Slice(12, 15)] = true;
        var inputIds = zeros(1, t, 2, dtype: ScalarType.Int64);
        inputIds[0, TensorIndex.Colon, 0] = c.TtsPadTokenId;
        inputIds[0, TensorIndex.Colon, 1] = c.Talker.CodecPadId;
        var attention = ones(1, t, dtype: ScalarType.Int64);
        var textMask = ones(1, t, 1, dtype: ScalarType.Bool);
        var codecEmbMask = ones(1, t, 1, dtype: ScalarType.Bool);
        codecEmbMask[0, 6] = false;
        var speakerMask = zeros(1, t, 1, dtype: ScalarType.Bool);
        speakerMask[0, SftCollate.SpeakerRow, 0] = true;
        return new SftBatch(inputIds, codecIds, zeros(1, 10, 128), tensor(new long[] { 10 }), attention, textMask, codecEmbMask, labels, codecMask, speakerMask);
    }

    [Fact]
    public void Fixed_talker_scores_each_position_against_the_next_label_once()
    {
        var c = Presets.Config("tiny");
        using var batch = CraftedBatch(c);
        var (b, p, label) = SftObjective.TalkerPairs(batch.Codec0Labels, LossAlignment.Fixed);
        // The codec_bos position predicts the first frame's codebook 0; the last frame predicts eos.
        Assert.Equal(new long[] { Bos, Bos + 1, Bos + 2, Bos + 3 }, p.data<long>().ToArray());
        Assert.Equal(new long[] { Frame0[0], Frame1[0], Frame2[0], c.Talker.CodecEosTokenId }, label.data<long>().ToArray());
        Assert.All(b.data<long>().ToArray(), x => Assert.Equal(0, x));
    }

    [Fact]
    public void Upstream_talker_is_shifted_twice()
    {
        var c = Presets.Config("tiny");
        using var batch = CraftedBatch(c);
        var (_, p, label) = SftObjective.TalkerPairs(batch.Codec0Labels, LossAlignment.Upstream);
        // Position 10 (before codec_bos) is asked for the first frame: the bos position's own prediction is never trained.
        Assert.Equal(new long[] { Bos - 1, Bos, Bos + 1, Bos + 2 }, p.data<long>().ToArray());
        Assert.Equal(new long[] { Frame0[0], Frame1[0], Frame2[0], c.Talker.CodecEosTokenId }, label.data<long>().ToArray());
    }

    [Fact]
    public void Sub_talker_conditions_on_the_previous_position_and_scores_unshifted()
    {
        var c = Presets.Config("tiny");
        using var batch = CraftedBatch(c);
        var (_, q, fixedCondition) = SftObjective.SubTalkerFrames(batch.CodecMask, LossAlignment.Fixed);
        Assert.Equal(new long[] { 12, 13, 14 }, q.data<long>().ToArray());
        Assert.Equal(new long[] { 11, 12, 13 }, fixedCondition.data<long>().ToArray()); // generation's past_hidden
        var (_, _, upstreamCondition) = SftObjective.SubTalkerFrames(batch.CodecMask, LossAlignment.Upstream);
        Assert.Equal(new long[] { 12, 13, 14 }, upstreamCondition.data<long>().ToArray()); // the frame's own hidden (#337)

        var fixedPairs = SftObjective.SubTalkerPairs(16, LossAlignment.Fixed);
        Assert.Equal(15, fixedPairs.Count);
        Assert.Equal((1, 1, 1), fixedPairs[0]);   // position of codebook 0 → head 1 → codebook 1
        Assert.Equal((15, 15, 15), fixedPairs[^1]);
        var upstreamPairs = SftObjective.SubTalkerPairs(16, LossAlignment.Upstream);
        Assert.Equal(14, upstreamPairs.Count);
        Assert.Equal((1, 1, 2), upstreamPairs[0]); // head 1 trained on codebook 2 (#371)
        Assert.DoesNotContain(upstreamPairs, x => x.Head == 15);
    }

    [Theory]
    [InlineData(LossAlignment.Fixed)]
    [InlineData(LossAlignment.Upstream)]
    public void The_loss_scores_exactly_the_hand_listed_pairs(LossAlignment alignment)
    {
        using var scope = NewDisposeScope();
        var c = Presets.ConfigJson("tiny");
        c["talker_config"]!["text_hidden_size"] = 64; // upstream skips text_projection, so widths must match
        var config = Qwen3TtsConfig.Parse(c, "tiny with text width 64");
        using var model = new Qwen3TtsModel(config);
        ModelInit.Initialize(model, 11, 0.5);
        using var batch = CraftedBatch(config);
        var speaker = randn(1, config.Talker.HiddenSize);
        var loss = SftObjective.Compute(model.Talker, batch, speaker, alignment);

        // Recompute by hand with literal positions.
        var embeds = SftObjective.InputEmbeddings(model.Talker, batch, speaker, alignment);
        var hidden = model.Talker.forward(embeds[.., ..15], null, null);
        var logits = model.Talker.CodecHead.forward(hidden)[0];
        long[] positions = alignment == LossAlignment.Fixed ? new long[] { 11, 12, 13, 14 } : new long[] { 10, 11, 12, 13 };
        long[] labels = { Frame0[0], Frame1[0], Frame2[0], config.Talker.CodecEosTokenId };
        var talker = nn.functional.cross_entropy(logits[tensor(positions)], tensor(labels));
        Assert.Equal((double)talker.item<float>(), loss.TalkerLoss.item<float>(), tolerance: 1e-4);
        Assert.Equal(4, loss.TalkerTokens);

        long[] conditions = alignment == LossAlignment.Fixed ? new long[] { 11, 12, 13 } : new long[] { 12, 13, 14 };
        var frames = new[] { Frame0, Frame1, Frame2 };
        var terms = new List<Tensor>();
        for (int f = 0; f < 3; f++)
        {
            var codes = tensor(frames[f]).view(1, 16);
            var parts = new List<Tensor> { hidden[0, conditions[f]].view(1, 1, -1), model.Talker.Model.CodecEmbedding.forward(codes[.., 0..1]) };
            for (int i = 1; i < 15; i++) parts.Add(model.Talker.CodePredictor.Model.CodecEmbedding(i).forward(codes[.., i..(i + 1)]));
            var h = model.Talker.CodePredictor.forward(cat(parts, 1));
            int last = alignment == LossAlignment.Fixed ? 15 : 14;
            for (int i = 1; i <= last; i++)
            {
                long target = alignment == LossAlignment.Fixed ? frames[f][i] : frames[f][i + 1];
                terms.Add(nn.functional.cross_entropy(model.Talker.CodePredictor.LmHead(i).forward(h[.., i]), tensor(new[] { target })));
            }
        }
        var sub = stack(terms).mean();
        Assert.Equal((double)sub.item<float>(), loss.SubTalkerLoss.item<float>(), tolerance: 1e-4);
        Assert.Equal((double)(talker.item<float>() + 0.3f * sub.item<float>()), loss.Loss.item<float>(), tolerance: 1e-4);
        Assert.Equal(alignment == LossAlignment.Fixed ? 45 : 42, loss.SubTalkerTokens);
    }

    [Fact]
    public void Upstream_refuses_0_6B_widths_with_the_issue_number()
    {
        using var scope = NewDisposeScope();
        var config = Presets.Config("tiny"); // text width 32 != hidden 64, like 0.6B's 2048 vs 1024
        using var model = new Qwen3TtsModel(config);
        using var batch = CraftedBatch(config);
        var e = Assert.Throws<InvalidOperationException>(() => SftObjective.Compute(model.Talker, batch, zeros(1, 64), LossAlignment.Upstream));
        Assert.Contains("#120", e.Message);
        var ok = SftObjective.Compute(model.Talker, batch, zeros(1, 64), LossAlignment.Fixed);
        Assert.True(float.IsFinite(ok.Loss.item<float>()));
    }

    [Fact]
    public void Loss_gradients_never_reach_the_speaker_encoder()
    {
        using var scope = NewDisposeScope();
        var config = Presets.Config("tiny");
        using var model = new Qwen3TtsModel(config);
        ModelInit.Initialize(model, 3, 0.02);
        using var batch = CraftedBatch(config);
        Tensor speaker;
        using (no_grad()) speaker = model.SpeakerEncoder!.forward(randn(1, 20, 128));
        SftObjective.Compute(model.Talker, batch, speaker, LossAlignment.Fixed).Loss.backward();
        Assert.All(model.SpeakerEncoder!.parameters(), p => Assert.Null(p.grad));
        Assert.NotNull(model.Talker.CodecHead.weight!.grad);
    }
}
