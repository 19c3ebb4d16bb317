using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Layers;

/// <summary>Told, for every read of a trainable parameter in a forward pass that autograd records, that the read
/// happened, and later, in backward, the gradient of that one read. A parameter read k times (the codec embeddings
/// feed both the talker's input and the code predictor's) reports k gradients whose sum is what autograd adds to
/// its <c>.grad</c>. Knows nothing about what the caller does with them (a gradient reducer starts reducing a
/// bucket once all its parameters are final).</summary>
public interface IParameterUseObserver
{
    /// <summary>Forward read <paramref name="parameter"/>: one more gradient for it will come in backward.</summary>
    void Used(Parameter parameter);

    /// <summary>Backward computed the gradient of one read: <paramref name="grad"/> has the parameter's shape and
    /// dtype. May run on an autograd worker thread (CUDA). The tensor belongs to autograd: copy what you need and do
    /// not keep it or modify it. Must not throw: an exception here escapes through native autograd and ends the
    /// process; record it and report it after backward.</summary>
    /// <returns>true when the observer took the gradient: autograd then adds nothing to the parameter's <c>.grad</c>
    /// for this read (so a gradient reducer need not hold a second whole copy); false leaves autograd as it is.</returns>
    bool GradientReady(Parameter parameter, Tensor grad);
}

/// <summary>Every trainable parameter is read in forward through here (<c>F.linear(x, Of(weight), Of(bias))</c>, the
/// embedding table, the norm scale). With no observer (the default) <see cref="Of"/> is the parameter itself and the
/// helpers call the modules' own forward: zero overhead, bit-identical outputs. With one set by
/// <see cref="Observe"/> on the current thread, each read goes through an identity autograd function whose
/// backward reports the read's gradient and returns it unchanged.
///
/// Why a per-read identity and not a hook: TorchSharp 0.107 has neither tensor hooks nor AccumulateGrad hooks, and a
/// Parameter is always a leaf, so only a non-leaf that forward actually consumes can observe its gradient. The
/// observer is per thread (ambient, like no_grad) so that in-process ranks in tests, one thread each, each see their
/// own; the tap captures it at forward time, so backward on another thread reports to the right one.</summary>
public static class ParameterUse
{
    [ThreadStatic] static IParameterUseObserver? current;
    // Gradient checkpointing (Recompute): a layer's first forward runs without recording but its reads are counted; the
    // recompute in backward records and taps them without counting them again.
    [ThreadStatic] static bool countWithoutRecording, recomputing;

    /// <summary>The observer of this thread's forward passes, or null.</summary>
    public static IParameterUseObserver? Observer => current;

    /// <summary>Sets <paramref name="observer"/> for forward passes on this thread until the returned scope is
    /// disposed (which restores the previous one).</summary>
    public static IDisposable Observe(IParameterUseObserver observer)
    {
        ArgumentNullException.ThrowIfNull(observer);
        var previous = current;
        current = observer;
        return new Restore(() => current = previous);
    }

    /// <summary>The parameter as forward should read it: itself, or, when observed and autograd is recording, an
    /// identity of it that reports its gradient.</summary>
    public static Tensor Of(Parameter parameter)
    {
        var observer = current;
        if (observer is null || !parameter.requires_grad) return parameter;
        if (!is_grad_enabled())
        {
            if (countWithoutRecording) observer.Used(parameter);
            return parameter;
        }
        if (!recomputing) observer.Used(parameter);
        return Tap.apply(parameter, new TapData(parameter, observer));
    }

    /// <summary>For the scope, reads on this thread are counted even where autograd does not record (a checkpointed
    /// layer's first forward: its gradients come from the recompute).</summary>
    internal static IDisposable CountReads()
    {
        bool previous = countWithoutRecording;
        countWithoutRecording = true;
        return new Restore(() => countWithoutRecording = previous);
    }

    /// <summary>For the scope, this thread's forward reads report to <paramref name="observer"/> (captured when the layer
    /// first ran; null: none) without being counted again.</summary>
    internal static IDisposable Recomputing(IParameterUseObserver? observer)
    {
        var (previousObserver, previousRecomputing) = (current, recomputing);
        (current, recomputing) = (observer, true);
        return new Restore(() => (current, recomputing) = (previousObserver, previousRecomputing));
    }

    sealed class Restore(Action restore) : IDisposable
    {
        public void Dispose() => restore();
    }

    /// <summary><paramref name="linear"/>(x) with its weight and bias read through <see cref="Of"/>.</summary>
    public static Tensor Linear(Linear linear, Tensor x)
    {
        if (current is null) return linear.forward(x);
        var bias = linear.bias is { } b ? Of(b) : null;
        return nn.functional.linear(x, Of(linear.weight!), bias);
    }

    /// <summary><paramref name="embedding"/>(ids) with its table read through <see cref="Of"/>: ids [...] → [..., dim].</summary>
    public static Tensor Embedding(Embedding embedding, Tensor ids)
    {
        if (current is null) return embedding.forward(ids);
        using var scope = NewDisposeScope();
        // Embedding is a native module: its .weight getter wraps the tensor anew on every call, while the registered
        // Parameter (what named_parameters() and the optimizer hold) is one object; observers key on that one.
        var weight = embedding.get_parameter("weight") ?? throw new InvalidOperationException("an Embedding without a registered 'weight' parameter");
        var table = Of(weight); // [V, dim]
        // TorchSharp 0.107 has no functional embedding; a row gather has the same value and the same gradient
        // (rows scatter-added into the table).
        var rows = table.index_select(0, ids.reshape(-1)); // [N, dim]
        return rows.view([.. ids.shape, table.shape[1]]).MoveToOuterDisposeScope();
    }

    sealed record TapData(Parameter Parameter, IParameterUseObserver Observer);

    /// <summary>y = x; dL/dx = dL/dy, reported to the observer first (and none at all when the observer took it).</summary>
    sealed class Tap : autograd.SingleTensorFunction<Tap>
    {
        const string Key = "use";

        public override string Name => "ParameterUseTap";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            ctx.save_data(Key, vars[1]);
            return ((Tensor)vars[0]).alias();
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        {
            var use = (TapData)ctx.get_data(Key);
            bool taken = use.Observer.GradientReady(use.Parameter, grad_output);
            // One gradient per argument of apply; the second is the non-tensor TapData. An undefined gradient (null) is
            // autograd's "zero": nothing reaches the parameter's .grad.
            return [taken ? null! : grad_output, null!];
        }
    }
}
