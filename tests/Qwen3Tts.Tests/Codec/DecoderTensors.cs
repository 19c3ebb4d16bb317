using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Codec;

static class DecoderTensors
{
    /// <summary>Overwrites the parameter <paramref name="name"/> (state-dict name) with <paramref name="values"/> in
    /// row-major order.</summary>
    public static void Set(nn.Module module, string name, params float[] values)
    {
        using var noGrad = no_grad();
        var p = module.named_parameters().Single(x => x.name == name).parameter;
        Assert.Equal(p.numel(), values.Length);
        p.copy_(tensor(values).view(p.shape));
    }

    public static double[] Values(nn.Module module, string name) =>
        module.named_parameters().Single(x => x.name == name).parameter.to(ScalarType.Float64).reshape(-1).data<double>().ToArray();

    /// <summary>[1, C, T] from rows.</summary>
    public static Tensor Signal(params float[][] channels) =>
        tensor(channels.SelectMany(c => c).ToArray()).view(1, channels.Length, channels[0].Length);

    public static float[] Row(Tensor x, int channel) => x[0, channel].data<float>().ToArray();
}
