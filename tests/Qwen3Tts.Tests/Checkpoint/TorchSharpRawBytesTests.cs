using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Checkpoint;

/// <summary>The TorchSharp 0.107 behaviours the checkpoint code relies on, pinned so an upgrade that changes
/// them fails here first.</summary>
public class TorchSharpRawBytesTests
{
    [Fact]
    public void Bfloat16_memory_is_the_top_half_of_the_float32_bits()
    {
        using var t = tensor(new float[] { 1f, -3f, 3.140625f }).to_type(ScalarType.BFloat16);
        Assert.Equal(HandWritten.UShorts(0x3F80, 0xC040, 0x4049), Raw.Of(t));
    }

    [Fact]
    public void Float32_to_bfloat16_rounds_to_nearest_even()
    {
        // 0x3F808000 is exactly halfway between 0x3F80 and 0x3F81: ties go to the even 0x3F80.
        // 0x3F818000 is halfway between 0x3F81 and 0x3F82: ties go to the even 0x3F82. 0x3F808001 is above halfway.
        var bits = new uint[] { 0x3F808000, 0x3F818000, 0x3F808001, 0x3F80FFFF };
        using var f = tensor(bits.Select(BitConverter.UInt32BitsToSingle).ToArray());
        using var b = f.to_type(ScalarType.BFloat16);
        Assert.Equal(HandWritten.UShorts(0x3F80, 0x3F82, 0x3F81, 0x3F81), Raw.Of(b));
    }

    [Fact]
    public void Bytes_setter_reinterprets_while_frombuffer_of_a_byte_array_converts_values()
    {
        var bytes = HandWritten.UShorts(0x3F80, 0xC040);
        using var reinterpreted = Raw.Tensor(bytes, ScalarType.BFloat16, 2);
        using var widened = reinterpreted.to_type(ScalarType.Float32);
        Assert.Equal(new[] { 1f, -3f }, widened.data<float>().ToArray());

        // frombuffer(byte[], dtype) reads the array as uint8 values and then casts: 4 elements 128, 63, 64, 192.
        using var converted = frombuffer(bytes, ScalarType.BFloat16);
        Assert.Equal(4, converted.numel());
        using var values = converted.to_type(ScalarType.Float32);
        Assert.Equal(new[] { 128f, 63f, 64f, 192f }, values.data<float>().ToArray());
    }

    [Fact]
    public void Bytes_of_a_narrowed_view_address_that_view_only()
    {
        using var t = arange(6, dtype: ScalarType.Int32);
        using var part = t.narrow(0, 2, 3);
        Assert.Equal(new[] { 2, 3, 4 }, part.bytes.ToArray().Chunk(4).Select(c => BitConverter.ToInt32(c)).ToArray());
        part.bytes = new byte[12];
        Assert.Equal(new[] { 0, 1, 0, 0, 0, 5 }, t.data<int>().ToArray());
    }
}
