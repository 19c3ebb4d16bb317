using System.Runtime.InteropServices;
using TorchSharp;

namespace Qwen3Tts.Model;

/// <summary>Process-wide libtorch settings an executable applies once at start.</summary>
public static class TorchRuntime
{
    static int configured;

    /// <summary>Turns NNPACK off. libtorch considers it for some CPU convolutions and, on CPUs NNPACK does not support,
    /// logs "Could not initialize NNPACK! Reason: Unsupported hardware" each time (a dozen lines per synthesize);
    /// oneDNN serves those convolutions either way. TorchSharp exposes no switch, so the C++ one is called:
    /// at::globalContext().setUserEnabledNNPACK(false). A libtorch without the symbols keeps its default.</summary>
    public static void Configure()
    {
        if (Interlocked.Exchange(ref configured, 1) == 1) return;
        try
        {
            torch.InitializeDeviceType(DeviceType.CPU); // loads libtorch through TorchSharp's own resolution
            SetUserEnabledNnpack(GlobalContext(), false);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException) { }
    }

    /// <summary>Whether libtorch would consider NNPACK (at::globalContext().userEnabledNNPACK()).</summary>
    public static bool NnpackEnabled => UserEnabledNnpack(GlobalContext());

    // Itanium C++ ABI: a member function takes `this` as its first argument.
    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at13globalContextEv")]
    static extern IntPtr GlobalContext();

    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at7Context20setUserEnabledNNPACKEb")]
    static extern void SetUserEnabledNnpack(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    [DllImport("libtorch_cpu", EntryPoint = "_ZNK2at7Context17userEnabledNNPACKEv")]
    [return: MarshalAs(UnmanagedType.U1)]
    static extern bool UserEnabledNnpack(IntPtr context);
}
