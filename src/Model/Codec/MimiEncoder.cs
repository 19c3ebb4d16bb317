using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Codec;

/// <summary>SEANet residual block: ELU, causal conv (dim → dim / compress, residual kernel, dilation), ELU, 1x1 conv back
/// to dim, plus the identity shortcut. <c>block</c> keeps the ELUs at indices 0 and 2 so the convs are
/// <c>block.1</c> and <c>block.3</c>, as in the checkpoint.</summary>
public sealed class MimiResnetBlock : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<nn.Module<Tensor, Tensor>> block;

    public MimiResnetBlock(EncoderConfig config, long dim, long dilation, Device? device = null, ScalarType? dtype = null) : base(nameof(MimiResnetBlock))
    {
        long hidden = dim / config.Compress;
        block = new ModuleList<nn.Module<Tensor, Tensor>>(
            nn.ELU(),
            new MimiConv1d(dim, hidden, config.ResidualKernelSize, dilation: dilation, padMode: config.PadMode, device: device, dtype: dtype),
            nn.ELU(),
            new MimiConv1d(hidden, dim, 1, padMode: config.PadMode, device: device, dtype: dtype));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x;
        foreach (var layer in block) h = layer.forward(h);
        return (x + h).MoveToOuterDisposeScope();
    }
}

/// <summary>The SEANet encoder (transformers' MimiEncoder): a kernel-7 conv from 1 to num_filters channels, then per
/// stride r in reversed(upsampling_ratios) (4, 5, 6, 8 released) a residual block and ELU + a stride-r conv
/// (kernel 2r) doubling the channels, then ELU + a last conv to hidden_size. Audio [B, 1, L] becomes
/// [B, hidden, ceil(L / hop)] at 25 Hz. Layer indices (<c>layers.0</c>, <c>layers.1.block.1</c>, <c>layers.3</c>, ...,
/// <c>layers.14</c>) count the ELUs, as the checkpoint does.</summary>
public sealed class MimiEncoder : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<nn.Module<Tensor, Tensor>> layers;

    public MimiEncoder(EncoderConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(MimiEncoder))
    {
        var model = new List<nn.Module<Tensor, Tensor>>
        {
            new MimiConv1d(config.AudioChannels, config.NumFilters, config.KernelSize, padMode: config.PadMode, device: device, dtype: dtype),
        };
        int stage = 0;
        foreach (int ratio in config.UpsamplingRatios.Reverse())
        {
            long channels = config.SeanetChannels(stage);
            for (int j = 0; j < config.NumResidualLayers; j++)
                model.Add(new MimiResnetBlock(config, channels, (long)Math.Pow(config.DilationGrowthRate, j), device, dtype));
            model.Add(nn.ELU());
            model.Add(new MimiConv1d(channels, channels * 2, ratio * 2, stride: ratio, padMode: config.PadMode, device: device, dtype: dtype));
            stage++;
        }
        model.Add(nn.ELU());
        model.Add(new MimiConv1d(config.SeanetChannels(stage), config.HiddenSize, config.LastKernelSize, padMode: config.PadMode, device: device, dtype: dtype));
        layers = new ModuleList<nn.Module<Tensor, Tensor>>(model.ToArray());
        RegisterComponents();
    }

    /// <summary>The causal convs in order, for frame-count arithmetic.</summary>
    public IEnumerable<MimiConv1d> Convs() => layers.SelectMany(l => l switch
    {
        MimiConv1d conv => new[] { conv },
        MimiResnetBlock block => block.modules().OfType<MimiConv1d>(),
        _ => Array.Empty<MimiConv1d>(),
    });

    /// <param name="x">[B, 1, L] audio</param>
    /// <returns>[B, hidden, ceil(L / hop)]</returns>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x;
        foreach (var layer in layers) h = layer.forward(h);
        return h.MoveToOuterDisposeScope();
    }
}
