using Qwen3Tts.Model;
using Qwen3Tts.Model.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Training;

/// <summary>--mixed_precision: what dtype the forward and backward run in. The optimizer always steps fp32.</summary>
public enum MixedPrecision
{
    Fp32,
    Bf16,
}

/// <summary>The model as training sees it: fp32 master weights for the optimizer, a compute talker for forward
/// and backward, and the frozen fp32 speaker encoder.
///
/// TorchSharp has no autocast, so bf16 is built by hand as apex's O2 / DeepSpeed's bf16 mode do. The master is the
/// caller's fp32 <see cref="Qwen3TtsModel"/>, kept whole so saving it writes the released layout and the speaker
/// encoder stays in it, fp32 and frozen. The compute copy is a second <see cref="Talker"/> only (the talker is all
/// that is trained; a whole second model would also carry a bf16 speaker encoder nobody should use), built in bf16
/// on the master's device. A second module rather than converting the master in place: both copies must live at
/// once, and Module.to(dtype) replaces parameter objects, which would orphan the optimizer's references.
/// Per step: backward on the compute talker → <see cref="AccumulateGradsToMaster"/> (bf16 grads added into fp32
/// master grads, compute grads dropped, so accumulation over micro-steps is in fp32) → sync/clip/step the masters
/// → <see cref="CopyMasterToCompute"/> (round the masters to bf16). Norms, softmax and the losses already upcast to
/// fp32 in the model code. An update far below bf16's resolution (lr·g ≈ 1e-6 on a weight ≈ 1) is kept in the
/// master and accumulates until it shows in the rounded copy.
///
/// In fp32 mode the master talker is the compute talker and both grad and weight copies are no-ops.
/// The trainable masters and the compute weights each live in one flat buffer (<see cref="FlatBuffer"/>), the parameters
/// views of it: the cast to bf16 is one op over contiguous memory. The fp32 master gradients are views of a third.
/// Memory with bf16, per trainable parameter: 4 (master) + 4 (master grad) + 2 (compute) + 2 (compute grad) + 8 (AdamW) bytes.</summary>
public sealed class TrainableModel : IDisposable
{
    const string SpeakerEncoderPrefix = "speaker_encoder.";
    const string TalkerPrefix = "talker.";

    readonly (string Name, Parameter Parameter)[] master;
    readonly (string Name, Parameter Parameter)[] compute;
    readonly Talker? ownedCompute;
    // The trainable fp32 masters and the bf16 compute weights each in one contiguous buffer, the parameters views of it.
    Tensor? masterBuffer;
    readonly Tensor? computeBuffer;
    // bf16: the masters' fp32 gradients, views of one buffer made at the first accumulation (with several ranks the
    // synchronizer's buckets hold them instead, and this is never made).
    Tensor? gradientBuffer;
    Tensor[]? gradientViews;

    public TrainableModel(Qwen3TtsModel model, MixedPrecision precision)
    {
        var all = model.named_parameters().ToList();
        var wrong = all.FirstOrDefault(p => p.parameter.dtype != ScalarType.Float32);
        if (wrong.parameter is not null)
            throw new ArgumentException($"the master model must be fp32, but '{wrong.name}' is {wrong.parameter.dtype}; load the checkpoint into an fp32 model " +
                "(bf16 training keeps fp32 masters and makes its own bf16 copy)", nameof(model));

        Master = model;
        Precision = precision;
        // Frozen: the speaker encoder only computes embeddings; it gets no grads and no optimizer state.
        foreach (var p in all.Where(p => p.name.StartsWith(SpeakerEncoderPrefix, StringComparison.Ordinal)))
            p.parameter.requires_grad = false;
        master = all.Where(p => !p.name.StartsWith(SpeakerEncoderPrefix, StringComparison.Ordinal)).Select(p => (p.name, p.parameter)).ToArray();
        masterBuffer = FlatBuffer.Adopt(master.Select(p => (Tensor)p.Parameter).ToArray());

        if (precision == MixedPrecision.Fp32)
        {
            ComputeTalker = model.Talker;
            compute = master;
            return;
        }

        var device = master[0].Parameter.device;
        ownedCompute = new Talker(model.Config.Talker, device, ScalarType.BFloat16);
        ComputeTalker = ownedCompute;
        compute = ownedCompute.named_parameters().Select(p => (TalkerPrefix + p.name, p.parameter)).ToArray();
        for (int i = 0; i < Math.Max(master.Length, compute.Length); i++)
        {
            var m = i < master.Length ? master[i] : default;
            var c = i < compute.Length ? compute[i] : default;
            if (m.Name != c.Name || !m.Parameter.shape.SequenceEqual(c.Parameter.shape))
                throw new InvalidOperationException($"master and compute parameters diverge at #{i}: '{m.Name}' vs '{c.Name}'; " +
                    "the trainable part of Qwen3TtsModel must be exactly its talker");
        }
        computeBuffer = FlatBuffer.Adopt(compute.Select(p => (Tensor)p.Parameter).ToArray());
        CopyMasterToCompute();
    }

    /// <summary>Parses the --mixed_precision flag.</summary>
    public static MixedPrecision ParsePrecision(string value) => value switch
    {
        "bf16" => MixedPrecision.Bf16,
        "fp32" => MixedPrecision.Fp32,
        _ => throw new ArgumentException($"--mixed_precision '{value}' is not one of: bf16, fp32"),
    };

    public MixedPrecision Precision { get; }

    /// <summary>The fp32 model: master weights plus the frozen speaker encoder. Save this.</summary>
    public Qwen3TtsModel Master { get; }

    /// <summary>The talker to run forward and backward on: bf16 copy or, with fp32, the master's own.</summary>
    public Talker ComputeTalker { get; }

    /// <summary>The frozen fp32 speaker encoder (null for checkpoints without one).</summary>
    public SpeakerEncoder? SpeakerEncoder => Master.SpeakerEncoder;

    /// <summary>The trainable fp32 parameters, by state-dict name ("talker.…"); speaker_encoder.* excluded. Give these to the optimizer.</summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> MasterParameters => master;

    /// <summary>The compute talker's parameters under the same names and order as <see cref="MasterParameters"/>.</summary>
    public IReadOnlyList<(string Name, Parameter Parameter)> ComputeParameters => compute;

    /// <summary>Speaker embeddings [B, enc_dim] from log-mels [B, frames, mel_dim], fp32 and without autograd.</summary>
    public Tensor EmbedSpeakers(Tensor mels)
    {
        var encoder = SpeakerEncoder ?? throw new InvalidOperationException(
            "this model has no speaker encoder (a custom_voice checkpoint); fine-tuning needs a Base checkpoint");
        using var noGrad = no_grad();
        return encoder.forward(mels.to(ScalarType.Float32));
    }

    /// <summary>Whether the fp32 talker masters are released (<see cref="ReleaseMasters"/>): ZeRO then keeps them as
    /// per-rank slices and writes the compute weights itself.</summary>
    public bool MastersReleased { get; private set; }

    /// <summary>bf16 with ZeRO: frees the whole fp32 talker masters (their parameter objects stay registered, holding no
    /// elements) once the sharded optimizer has taken its slice of them. The speaker encoder is not touched.</summary>
    public void ReleaseMasters()
    {
        if (ReferenceEquals(master, compute)) throw new InvalidOperationException("fp32 training computes with the masters: they cannot be released");
        using var noGrad = no_grad();
        foreach (var (_, p) in master)
        {
            p.grad = null;
            using var none = empty(0, ScalarType.Float32, p.device);
            p.set_(none);
        }
        masterBuffer?.Dispose(); // no view of it is left: its memory goes
        masterBuffer = null;
        MastersReleased = true;
    }

    /// <summary>Gives the released masters their shapes back, zero-filled, for the caller to fill (a checkpoint, synthesis).</summary>
    public void RestoreMasters()
    {
        if (!MastersReleased) return;
        using var noGrad = no_grad();
        var (buffer, views) = FlatBuffer.Zeros(compute.Select(p => p.Parameter.shape).ToArray(), ScalarType.Float32, compute[0].Parameter.device);
        for (int i = 0; i < master.Length; i++)
        {
            master[i].Parameter.set_(views[i]);
            views[i].Dispose();
        }
        masterBuffer = buffer;
        MastersReleased = false;
    }

    /// <summary>Adds each compute gradient into its master's fp32 <c>.grad</c> (cast) and drops the compute gradient.
    /// Call after every backward: accumulation over micro-steps then happens in fp32. A parameter without a compute
    /// gradient leaves its master's as it is (null stays null, so the optimizer skips it). No-op in fp32 mode, where
    /// autograd already accumulates into the masters.</summary>
    public void AccumulateGradsToMaster()
    {
        if (ReferenceEquals(master, compute)) return;
        if (MastersReleased) throw new InvalidOperationException("the masters are released (ZeRO): gradients accumulate in the synchronizer's buckets");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        for (int i = 0; i < master.Length; i++)
        {
            var c = compute[i].Parameter;
            var grad = c.grad;
            if (grad is null) continue;
            var m = master[i].Parameter;
            var masterGrad = m.grad;
            if (masterGrad is null)
            {
                if (gradientViews is null)
                {
                    var (buffer, views) = FlatBuffer.Zeros(master.Select(p => p.Parameter.shape).ToArray(), ScalarType.Float32, m.device);
                    (gradientBuffer, gradientViews) = (buffer, views);
                }
                m.grad = gradientViews[i].copy_(grad); // the cast to fp32 into the master's slice
            }
            else masterGrad.add_(grad, Scalars.One);
            c.grad = null;
        }
    }

    /// <summary>Rounds the fp32 masters into the compute weights (round-to-nearest-even). Call after each optimizer
    /// step (and after loading or broadcasting master weights). No-op in fp32 mode, and while the masters are released
    /// (the sharded optimizer all-gathers its slices into the compute weights itself).</summary>
    public void CopyMasterToCompute()
    {
        if (ReferenceEquals(master, compute) || MastersReleased) return;
        using var noGrad = no_grad();
        computeBuffer!.copy_(masterBuffer!); // one cast over the flat buffers: the same bits as parameter by parameter
    }

    public void Dispose()
    {
        ownedCompute?.Dispose();
        computeBuffer?.Dispose();
        masterBuffer?.Dispose();
        gradientBuffer?.Dispose();
        foreach (var view in gradientViews ?? []) view.Dispose();
    }
}
