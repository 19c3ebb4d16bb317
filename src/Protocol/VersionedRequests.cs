namespace Qwen3Tts.Protocol.V1;

/// <summary>A request that carries the protocol version its sender speaks; the coordinator checks it once, in an
/// interceptor, for every call.</summary>
public interface IVersionedRequest
{
    int ProtocolVersion { get; }
}

public sealed partial class RegisterRequest : IVersionedRequest;
public sealed partial class HeartbeatRequest : IVersionedRequest;
public sealed partial class GetEpochPlanRequest : IVersionedRequest;
public sealed partial class LeaseBatchesRequest : IVersionedRequest;
public sealed partial class ReportStepRequest : IVersionedRequest;
public sealed partial class CommitCheckpointRequest : IVersionedRequest;
public sealed partial class StopRequest : IVersionedRequest;
