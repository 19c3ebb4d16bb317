using Qwen3Tts.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Checkpoint;

/// <summary>Write then read gives back the same bits, dtype and shape.</summary>
public class SafetensorsRoundTripTests
{
    public static TheoryData<ScalarType> Dtypes => new()
    {
        ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16, ScalarType.Int64,
        ScalarType.Float64, ScalarType.Int32, ScalarType.Int16, ScalarType.Int8, ScalarType.Byte,
    };

    [Theory]
    [MemberData(nameof(Dtypes))]
    public void Random_bits_round_trip_bit_identically(ScalarType dtype)
    {
        using var dir = new TempDir();
        string path = dir.File("rt.safetensors");
        using var probe = empty(1, dtype: dtype);
        long[] shape = [3, 5, 7];
        // Random bytes cover NaN payloads, negative zero, subnormals and infinities of the float types.
        var bytes = Raw.RandomBytes((int)(105 * probe.ElementSize), seed: (int)dtype);
        using var t = Raw.Tensor(bytes, dtype, shape);
        using var scalar = Raw.Tensor(Raw.RandomBytes((int)probe.ElementSize, seed: 7), dtype);
        using var emptyOne = empty([0, 4], dtype: dtype);
        Safetensors.Save(path, [("t", t), ("scalar", scalar), ("empty", emptyOne)]);

        using var file = SafetensorsFile.Open(path);
        using var back = file.Read("t");
        Assert.Equal(dtype, back.dtype);
        Assert.Equal(shape, back.shape);
        Assert.Equal(bytes, Raw.Of(back));
        using var s = file.Read("scalar");
        Assert.Empty(s.shape);
        Assert.Equal(Raw.Of(scalar), Raw.Of(s));
        using var e = file.Read("empty");
        Assert.Equal(new long[] { 0, 4 }, e.shape);
        Assert.Equal(dtype, e.dtype);
    }

    [Fact]
    public void Bool_round_trips()
    {
        using var dir = new TempDir();
        string path = dir.File("bool.safetensors");
        using var mask = tensor(new[] { true, false, false, true, true });
        Safetensors.Save(path, [("mask", mask)]);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal("BOOL", file.Entry("mask").Dtype);
        using var back = file.Read("mask");
        Assert.Equal(new[] { true, false, false, true, true }, back.data<bool>().ToArray());
    }

    [Fact]
    public void Reading_past_the_256_MiB_chunk_stitches_chunks_in_order()
    {
        // 72 Mi int32 elements = 288 MiB: two chunks of the reader and writer, a boundary that must line up.
        using var dir = new TempDir();
        string path = dir.File("big.safetensors");
        long n = 72L << 20;
        using var t = arange(n, dtype: ScalarType.Int32);
        Safetensors.Save(path, [("big", t)]);
        using var file = SafetensorsFile.Open(path);
        using var back = file.Read("big");
        Assert.True(back.bytes.SequenceEqual(t.bytes));
        var boundary = back.data<int>();
        long chunk = (256L << 20) / 4;
        Assert.Equal((chunk - 1, chunk, n - 1), ((long)boundary[chunk - 1], (long)boundary[chunk], (long)boundary[n - 1]));
    }
}
