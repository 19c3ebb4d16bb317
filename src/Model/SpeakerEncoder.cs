using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model;

// ECAPA-TDNN (Desplanques et al. 2020) as Qwen3-TTS's Qwen3TTSSpeakerEncoder builds it. Field names are the
// checkpoint's key segments (blocks.1.res2net_block.blocks.0.conv.weight, asp.tdnn.conv.weight, fc.weight ...).
// Activations (ReLU, Tanh, Sigmoid) carry no weights, so they are applied functionally rather than held as fields.
// Tensors are [batch, channels, time] throughout, as in the reference.

/// <summary>Conv1d with padding="same", padding_mode="reflect", as every conv in the reference's speaker encoder.
/// TorchSharp 0.107's Conv1d(Padding.Same, padding_mode: Reflect) reflect-pads d * (k - 1) split as PyTorch does
/// (left = total / 2, right = total - left) before a valid convolution. A kernel of 1 needs no padding at all, so it
/// gets a plain unpadded conv: identical output and weights, without a copy of the input per call.</summary>
static class SameReflectConv
{
    public static Conv1d Create(long inChannels, long outChannels, long kernelSize, long dilation, Device? device, ScalarType? dtype) =>
        kernelSize == 1
            ? nn.Conv1d(inChannels, outChannels, 1, device: device, dtype: dtype)
            : nn.Conv1d(inChannels, outChannels, kernelSize, Padding.Same, dilation: dilation, padding_mode: PaddingModes.Reflect, device: device, dtype: dtype);
}

/// <summary>Conv1d ("same", reflect) then ReLU.</summary>
public sealed class TimeDelayNetBlock : nn.Module<Tensor, Tensor>
{
    readonly Conv1d conv;

    public TimeDelayNetBlock(long inChannels, long outChannels, long kernelSize, long dilation, Device? device = null, ScalarType? dtype = null) : base(nameof(TimeDelayNetBlock))
    {
        conv = SameReflectConv.Create(inChannels, outChannels, kernelSize, dilation, device, dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => nn.functional.relu(BatchedConv.Forward(conv, x, groups: 1));
}

/// <summary>Res2Net: the channels are cut into <c>scale</c> chunks; chunk 0 passes through, chunk 1 goes through
/// blocks[0], and chunk i &gt;= 2 goes through blocks[i - 1] after adding the previous chunk's output.</summary>
public sealed class Res2NetBlock : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<TimeDelayNetBlock> blocks;
    readonly int scale;

    public Res2NetBlock(long inChannels, long outChannels, int scale, long kernelSize, long dilation, Device? device = null, ScalarType? dtype = null) : base(nameof(Res2NetBlock))
    {
        this.scale = scale;
        blocks = new ModuleList<TimeDelayNetBlock>(Enumerable.Range(0, scale - 1)
            .Select(_ => new TimeDelayNetBlock(inChannels / scale, outChannels / scale, kernelSize, dilation, device, dtype)).ToArray());
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var parts = x.chunk(scale, dim: 1); // scale x [B, C / scale, T]
        var outputs = new Tensor[parts.Length];
        outputs[0] = parts[0];
        for (int i = 1; i < parts.Length; i++)
            outputs[i] = blocks[i - 1].forward(i == 1 ? parts[i] : parts[i] + outputs[i - 1]);
        return cat(outputs, dim: 1);
    }
}

/// <summary>Squeeze-and-excitation over channels: gate = sigmoid(conv2(relu(conv1(mean over time)))), output x * gate.</summary>
public sealed class SqueezeExcitationBlock : nn.Module<Tensor, Tensor>
{
    readonly Conv1d conv1;
    readonly Conv1d conv2;

    public SqueezeExcitationBlock(long inChannels, long seChannels, long outChannels, Device? device = null, ScalarType? dtype = null) : base(nameof(SqueezeExcitationBlock))
    {
        conv1 = SameReflectConv.Create(inChannels, seChannels, 1, 1, device, dtype);
        conv2 = SameReflectConv.Create(seChannels, outChannels, 1, 1, device, dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var squeezed = x.mean(new long[] { 2 }, keepdim: true); // [B, C, 1]
        var gate = BatchedConv.Forward(conv2, nn.functional.relu(BatchedConv.Forward(conv1, squeezed, groups: 1)), groups: 1).sigmoid();
        return x * gate;
    }
}

/// <summary>Attentive statistics pooling: attention over time from [x, global mean, global std], then the
/// attention-weighted mean and std per channel, concatenated as [B, 2C, 1].</summary>
public sealed class AttentiveStatisticsPooling : nn.Module<Tensor, Tensor>
{
    const double Eps = 1e-12;

    readonly TimeDelayNetBlock tdnn;
    readonly Conv1d conv;

    public AttentiveStatisticsPooling(long channels, long attentionChannels, Device? device = null, ScalarType? dtype = null) : base(nameof(AttentiveStatisticsPooling))
    {
        tdnn = new TimeDelayNetBlock(channels * 3, attentionChannels, 1, 1, device, dtype);
        conv = SameReflectConv.Create(attentionChannels, channels, 1, 1, device, dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        long time = x.shape[2];
        // The reference builds a length mask from lengths = 1 for every clip, so every frame counts: the first
        // statistics use uniform weights 1 / T and the -inf masked_fill before the softmax changes nothing.
        var uniform = full(new long[] { x.shape[0], 1, time }, 1.0 / time, dtype: x.dtype, device: x.device);
        var (mean, std) = Statistics(x, uniform); // [B, C] each
        var context = cat(new[] { x, mean.unsqueeze(2).expand(-1, -1, time), std.unsqueeze(2).expand(-1, -1, time) }, dim: 1); // [B, 3C, T]
        var attention = BatchedConv.Forward(conv, tdnn.forward(context).tanh(), groups: 1).softmax(2); // [B, C, T], sums to 1 over time
        (mean, std) = Statistics(x, attention);
        return cat(new[] { mean, std }, dim: 1).unsqueeze(2); // [B, 2C, 1]
    }

    // Weighted mean and std over time; the variance is clamped at 1e-12 before the root.
    static (Tensor Mean, Tensor Std) Statistics(Tensor x, Tensor weights)
    {
        var mean = (weights * x).sum(2);
        var variance = (weights * (x - mean.unsqueeze(2)).pow(2)).sum(2);
        return (mean, variance.clamp_min(Eps).sqrt());
    }
}

/// <summary>One ECAPA block: TDNN (k=1) -> Res2Net -> TDNN (k=1) -> squeeze-excitation, plus the input (residual).</summary>
public sealed class SqueezeExcitationRes2NetBlock : nn.Module<Tensor, Tensor>
{
    readonly TimeDelayNetBlock tdnn1;
    readonly Res2NetBlock res2net_block;
    readonly TimeDelayNetBlock tdnn2;
    readonly SqueezeExcitationBlock se_block;

    public SqueezeExcitationRes2NetBlock(long inChannels, long outChannels, int res2netScale, long seChannels, long kernelSize, long dilation, Device? device = null, ScalarType? dtype = null)
        : base(nameof(SqueezeExcitationRes2NetBlock))
    {
        tdnn1 = new TimeDelayNetBlock(inChannels, outChannels, 1, 1, device, dtype);
        res2net_block = new Res2NetBlock(outChannels, outChannels, res2netScale, kernelSize, dilation, device, dtype);
        tdnn2 = new TimeDelayNetBlock(outChannels, outChannels, 1, 1, device, dtype);
        se_block = new SqueezeExcitationBlock(outChannels, seChannels, outChannels, device, dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) =>
        se_block.forward(tdnn2.forward(res2net_block.forward(tdnn1.forward(x)))) + x;
}

/// <summary>Qwen3-TTS's speaker encoder: log-mels [B, frames, mel_dim] to a speaker embedding [B, enc_dim], which
/// fills the talker's speaker slot. blocks[0] is a TDNN, blocks[1 .. n-2] are SE-Res2Net blocks, mfa aggregates
/// their concatenated outputs, asp pools over time and fc (a k=1 conv) projects to enc_dim.</summary>
public sealed class SpeakerEncoder : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<nn.Module<Tensor, Tensor>> blocks;
    readonly TimeDelayNetBlock mfa;
    readonly AttentiveStatisticsPooling asp;
    readonly Conv1d fc;
    readonly MelSpectrogram mel;
    readonly int minFrames;

    public SpeakerEncoder(SpeakerEncoderConfig config, Device? device = null, ScalarType? dtype = null) : base(nameof(SpeakerEncoder))
    {
        Config = config;
        var ch = config.EncChannels;
        var k = config.EncKernelSizes;
        var d = config.EncDilations;
        int last = ch.Count - 1;
        for (int i = 1; i < last; i++)
            if (ch[i] != ch[i - 1])
                throw new ArgumentException($"speaker_encoder_config.enc_channels[{i}] is {ch[i]} but enc_channels[{i - 1}] is {ch[i - 1]}: " +
                    "each SE-Res2Net block adds its input back, so enc_channels[0 .. n-2] must all be equal");
        int aggregated = ch.Skip(1).Take(last - 1).Sum();
        if (aggregated != ch[last])
            throw new ArgumentException($"speaker_encoder_config.enc_channels[{last}] is {ch[last]}, but the aggregation layer receives the " +
                $"SE-Res2Net blocks' outputs concatenated, {aggregated} channels (sum of enc_channels[1 .. {last - 1}])");

        var layers = new List<nn.Module<Tensor, Tensor>> { new TimeDelayNetBlock(config.MelDim, ch[0], k[0], d[0], device, dtype) };
        for (int i = 1; i < last; i++)
            layers.Add(new SqueezeExcitationRes2NetBlock(ch[i - 1], ch[i], config.EncRes2NetScale, config.EncSeChannels, k[i], d[i], device, dtype));
        blocks = new ModuleList<nn.Module<Tensor, Tensor>>(layers.ToArray());
        mfa = new TimeDelayNetBlock(ch[last], ch[last], k[last], d[last], device, dtype);
        asp = new AttentiveStatisticsPooling(ch[last], config.EncAttentionChannels, device, dtype);
        fc = SameReflectConv.Create(ch[last] * 2, config.EncDim, 1, 1, device, dtype);
        mel = new MelSpectrogram(MelSettings.Default with { NMels = config.MelDim });
        // Reflect padding needs more frames than its wider (right) side: d * (k - 1) - d * (k - 1) / 2.
        minFrames = 1 + Enumerable.Range(0, ch.Count).Max(i => d[i] * (k[i] - 1) - d[i] * (k[i] - 1) / 2);
        RegisterComponents();
    }

    public SpeakerEncoderConfig Config { get; }

    /// <summary>[B, frames, mel_dim] log-mels to [B, enc_dim].</summary>
    public override Tensor forward(Tensor mels)
    {
        if (mels.dim() != 3 || mels.shape[2] != Config.MelDim)
            throw new ArgumentException($"expected mels shaped [batch, frames, {Config.MelDim}], got [{string.Join(", ", mels.shape)}]", nameof(mels));
        if (mels.shape[1] < minFrames)
            throw new ArgumentException($"{mels.shape[1]} mel frames are too few: the dilated convs reflect-pad, which needs at least {minFrames} " +
                $"frames (about {minFrames * mel.Settings.HopLength} samples of audio)", nameof(mels));
        var x = mels.transpose(1, 2); // [B, mel_dim, T]
        var outputs = new List<Tensor>(blocks.Count);
        foreach (var block in blocks)
        {
            x = block.forward(x);
            outputs.Add(x);
        }
        // Multi-layer feature aggregation over the SE-Res2Net outputs (not the first TDNN's).
        x = mfa.forward(cat(outputs.Skip(1).ToArray(), dim: 1)); // [B, C_last, T]
        x = asp.forward(x);                                    // [B, 2 C_last, 1]
        return BatchedConv.Forward(fc, x, groups: 1).squeeze(-1);                     // [B, enc_dim]
    }

    /// <summary>The reference's extract_speaker_embedding for a batch: 24 kHz audio [B, samples] to [B, enc_dim].
    /// Mels are computed in float32 and cast to the encoder's dtype and device, as the reference does.</summary>
    public Tensor Embed(Tensor wav24k)
    {
        if (Config.SampleRate != mel.Settings.SampleRate)
            throw new InvalidOperationException($"speaker_encoder_config.sample_rate is {Config.SampleRate}, but speaker embeddings are " +
                $"extracted from {mel.Settings.SampleRate} Hz audio (the reference asserts sr == 24000)");
        using var scope = NewDisposeScope();
        var weight = fc.weight!;
        var mels = mel.Compute(wav24k.to(weight.device)).transpose(1, 2).to(weight.dtype); // [B, frames, mel_dim]
        return forward(mels).MoveToOuterDisposeScope();
    }
}
