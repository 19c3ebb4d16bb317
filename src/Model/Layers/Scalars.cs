using TorchSharp;

namespace Qwen3Tts.Model.Layers;

/// <summary>Scalars that outlive the native calls they are passed to. TorchSharp turns every number argument (and the
/// implicit alpha of <c>add_(tensor)</c>) into a temporary <see cref="Scalar"/> whose finalizer frees the native value;
/// the temporary is unreachable as soon as its handle is read, so a garbage collection started by another thread during
/// the call can free it while libtorch still reads it (seen as "c10::Scalar::toFloat" on a corrupted value when several
/// threads run tensor code). Code that runs beside other threads (gradient hooks, communication) passes these instead.</summary>
public static class Scalars
{
    /// <summary>1, for <c>a.add_(b, Scalars.One)</c> in place of <c>a.add_(b)</c>.</summary>
    public static readonly Scalar One = 1.ToScalar();
}
