using Qwen3Tts.Model;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Model;

public class TalkerTests
{
    [Fact]
    public void Interleaved_mrope_axis_map_matches_the_reference_slicing()
    {
        // Reference: x_t = x[0]; x_t[..., 1:60:3] = x[1]; x_t[..., 2:60:3] = x[2] for sections [24, 20, 20].
        var axis = Rotary.AxisOfFrequency(64, new[] { 24, 20, 20 }, interleaved: true);
        for (int j = 0; j < 64; j++)
        {
            long expected = j < 60 && j % 3 == 1 ? 1 : j < 60 && j % 3 == 2 ? 2 : 0;
            Assert.Equal(expected, axis[j]);
        }
        Assert.Equal(24, axis.Count(a => a == 0));
        Assert.Equal(20, axis.Count(a => a == 1));
        // Contiguous sections: [t x24][h x20][w x20].
        var plain = Rotary.AxisOfFrequency(64, new[] { 24, 20, 20 }, interleaved: false);
        Assert.Equal(Enumerable.Repeat(0L, 24).Concat(Enumerable.Repeat(1L, 20)).Concat(Enumerable.Repeat(2L, 20)), plain);
    }

    [Fact]
    public void Multimodal_rope_uses_each_axis_positions_where_the_map_says()
    {
        var inv = Rotary.InverseFrequencies(16, 10000);
        // Axes carry different positions so we can tell which one each frequency used.
        var positions = stack(new[] { tensor(new long[] { 5 }), tensor(new long[] { 7 }), tensor(new long[] { 11 }) }).view(3, 1, 1);
        var (cos, _) = Rotary.Multimodal(positions, inv, new[] { 4, 2, 2 }, interleaved: true, ScalarType.Float32);
        var c = cos.view(-1).data<float>().ToArray();
        var axis = Rotary.AxisOfFrequency(8, new[] { 4, 2, 2 }, true);
        long[] pos = { 5, 7, 11 };
        for (int j = 0; j < 8; j++)
        {
            float expected = (float)Math.Cos(pos[axis[j]] * inv[j]);
            Assert.Equal(expected, c[j], 5);
            Assert.Equal(expected, c[j + 8], 5); // second half repeats the first
        }
    }

    [Fact]
    public void Rope_rotation_preserves_norm_and_matches_the_hand_formula()
    {
        // Head dim 4: pairs (x0, x2) and (x1, x3) rotate by angles p*inv0 and p*inv1.
        var inv = Rotary.InverseFrequencies(4, 100);
        Assert.Equal(new[] { 1f, 0.1f }, inv);
        var (cos, sin) = Rotary.Standard(tensor(new long[] { 3 }).view(1, 1), inv, ScalarType.Float32);
        var x = tensor(new float[] { 1, 2, 3, 4 }).view(1, 1, 1, 4);
        var y = Rotary.Apply(x, cos, sin).view(-1).data<float>().ToArray();
        double a0 = 3 * 1.0, a1 = 3 * 0.1;
        Assert.Equal(1 * Math.Cos(a0) - 3 * Math.Sin(a0), y[0], 5);
        Assert.Equal(2 * Math.Cos(a1) - 4 * Math.Sin(a1), y[1], 5);
        Assert.Equal(3 * Math.Cos(a0) + 1 * Math.Sin(a0), y[2], 5);
        Assert.Equal(4 * Math.Cos(a1) + 2 * Math.Sin(a1), y[3], 5);
    }

    [Fact]
    public void Talker_is_causal_and_shapes_follow_the_config()
    {
        using var scope = NewDisposeScope();
        var c = Presets.Config("tiny").Talker;
        manual_seed(1);
        var talker = new Talker(c);
        var x = randn(2, 7, c.HiddenSize);
        var h = talker.forward(x, null, null);
        Assert.Equal(new long[] { 2, 7, c.HiddenSize }, h.shape);
        Assert.Equal(new long[] { 2, 7, c.VocabSize }, talker.CodecHead.forward(h).shape);
        Assert.Equal(new long[] { 2, 7, c.HiddenSize }, talker.EmbedText(zeros(2, 7, dtype: ScalarType.Int64)).shape);

        // Changing the last position must not change any earlier output.
        var x2 = x.clone();
        x2[TensorIndex.Colon, 6] = randn(2, c.HiddenSize);
        var h2 = talker.forward(x2, null, null);
        Close.Assert(h[TensorIndex.Colon, ..6], h2[TensorIndex.Colon, ..6], "positions 0..5 after changing position 6");
        Assert.False(h[TensorIndex.Colon, 6].allclose(h2[TensorIndex.Colon, 6]));
    }

    [Fact]
    public void Right_padding_with_a_mask_leaves_valid_positions_unchanged()
    {
        using var scope = NewDisposeScope();
        var c = Presets.Config("tiny").Talker;
        manual_seed(2);
        var talker = new Talker(c);
        var a = randn(1, 5, c.HiddenSize);
        var alone = talker.forward(a, null, null);

        var padded = cat(new[] { a, randn(1, 3, c.HiddenSize) }, 1); // 3 garbage pad positions
        var valid = tensor(new long[] { 1, 1, 1, 1, 1, 0, 0, 0 }).view(1, 8);
        var h = talker.forward(padded, Talker.PositionIds(valid), AttentionMask.CausalWithPadding(valid));
        Assert.True(h[TensorIndex.Colon, ..5].allclose(alone, rtol: 1e-5, atol: 1e-5));
        Assert.False(h.isnan().any().item<bool>());
    }

    [Fact]
    public void Left_padding_gets_reference_position_ids()
    {
        var valid = tensor(new long[] { 0, 0, 1, 1, 1 }).view(1, 5);
        var p = Talker.PositionIds(valid);
        Assert.Equal(new long[] { 3, 1, 5 }, p.shape);
        Assert.Equal(new long[] { 1, 1, 0, 1, 2 }, p[0, 0].data<long>().ToArray());
    }

    [Fact]
    public void Code_predictor_projection_exists_only_when_widths_differ()
    {
        var tiny = Presets.Config("tiny").Talker;
        var names = new CodePredictor(tiny.CodePredictor, tiny.HiddenSize, new Device("meta")).named_parameters().Select(p => p.name).ToList();
        Assert.Contains("small_to_mtp_projection.weight", names);
        Assert.Contains("small_to_mtp_projection.bias", names);

        var same = new CodePredictor(tiny.CodePredictor, tiny.CodePredictor.HiddenSize, new Device("meta"));
        Assert.DoesNotContain(same.named_parameters(), p => p.name.StartsWith("small_to_mtp_projection"));
        using var scope = NewDisposeScope();
        var cpu = new CodePredictor(tiny.CodePredictor, tiny.HiddenSize);
        var hidden = cpu.forward(randn(3, 16, tiny.HiddenSize));
        Assert.Equal(new long[] { 3, 16, tiny.CodePredictor.HiddenSize }, hidden.shape);
        Assert.Equal(new long[] { 3, 16, 2048 }, cpu.LmHead(15).forward(hidden).shape);
    }
}
