using System.Reflection;
using System.Runtime.InteropServices;
using Xunit.Sdk;

[assembly: Qwen3Tts.Tests.ReleaseMemoryAfterTests]

namespace Qwen3Tts.Tests;

/// <summary>After any test that leaves the test host large, the garbage collector runs (with finalizers) and glibc
/// hands free pages back. A TorchSharp tensor left to the collector holds native memory the GC cannot see, so nothing
/// prompts a collection and the host grew test after test (9 GB over the suite); this keeps the host near the peak of
/// its largest single test. Cheap when small: one read of /proc/self/status.</summary>
[AttributeUsage(AttributeTargets.Assembly | AttributeTargets.Class | AttributeTargets.Method)]
public sealed class ReleaseMemoryAfterTestsAttribute : BeforeAfterTestAttribute
{
    const long ThresholdKiB = 1L << 20; // 1 GiB resident

    public override void After(MethodInfo methodUnderTest)
    {
        if (PeakMemoryReport.ResidentKiB() < ThresholdKiB) return;
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        MallocTrim(0);
    }

    [DllImport("libc", EntryPoint = "malloc_trim")]
    static extern int MallocTrim(nuint pad);
}
