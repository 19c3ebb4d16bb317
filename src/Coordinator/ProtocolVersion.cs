namespace Qwen3Tts.Coordinator;

/// <summary>The coordinator/rank protocol version this build speaks (see src/Protocol/coordinator.proto).</summary>
public static class ProtocolVersion
{
    public const int Current = 1;
}
