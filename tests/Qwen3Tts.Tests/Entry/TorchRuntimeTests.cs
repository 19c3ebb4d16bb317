using Qwen3Tts.Model;

namespace Qwen3Tts.Tests.Entry;

public class TorchRuntimeTests
{
    [Fact]
    public void Configure_turns_nnpack_off_so_unsupported_cpus_log_no_warnings()
    {
        TorchRuntime.Configure();
        Assert.False(TorchRuntime.NnpackEnabled); // libtorch's default is on
    }
}
