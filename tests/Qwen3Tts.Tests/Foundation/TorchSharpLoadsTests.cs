using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Foundation;

/// <summary>TorchSharp's native library must load on the build machine (Debian 12 included, see
/// build/WeakenGlibcxxVersion.cs) and compute: a hand-checkable matmul and an autograd gradient.</summary>
public class TorchSharpLoadsTests
{
    [Fact]
    public void Matmul_and_autograd_run_natively()
    {
        var a = tensor(new float[] { 1, 2, 3, 4 }).reshape(2, 2);
        var b = tensor(new float[] { 5, 6, 7, 8 }).reshape(2, 2);
        var c = a.matmul(b);
        Assert.Equal(new float[] { 19, 22, 43, 50 }, c.data<float>().ToArray());

        var x = tensor(new float[] { 3f }, requires_grad: true);
        var y = (x * x * x).sum(); // dy/dx = 3x^2 = 27
        y.backward();
        Assert.Equal(27f, x.grad!.item<float>());
    }

    [Fact]
    public void Output_library_is_patched_only_where_the_system_libstdcxx_lacks_the_version()
    {
        string lib = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        if (!OperatingSystem.IsLinux() || !File.Exists(lib)) return;
        string system = new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6" }
            .First(File.Exists);
        bool systemHas = System.Text.Encoding.ASCII.GetString(File.ReadAllBytes(system)).Contains("GLIBCXX_3.4.32\0");
        var weak = ElfVersionNeeds.WeakFlags(File.ReadAllBytes(lib));
        Assert.True(weak.ContainsKey("GLIBCXX_3.4.32"), "the TorchSharp build no longer asks for GLIBCXX_3.4.32; revisit build/WeakenGlibcxxVersion.cs");
        Assert.Equal(!systemHas, weak["GLIBCXX_3.4.32"]);
        // Every other requirement is left as shipped.
        Assert.All(weak.Where(kv => kv.Key != "GLIBCXX_3.4.32"), kv => Assert.False(kv.Value, kv.Key));
    }
}
