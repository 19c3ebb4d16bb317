using Grpc.Core;
using Qwen3Tts.Protocol.V1;
using V1 = Qwen3Tts.Protocol.V1;

namespace Qwen3Tts.Coordinator;

/// <summary>The gRPC edge of <see cref="CoordinatorState"/>: maps proto messages to domain calls and back. Version checks,
/// authentication and the mapping of <see cref="CoordinatorException"/> to status codes are interceptors
/// (<see cref="ProtocolVersionInterceptor"/>, <see cref="BearerTokenInterceptor"/>, <see cref="ErrorMappingInterceptor"/>).</summary>
public sealed class CoordinatorService(CoordinatorState state) : V1.Coordinator.CoordinatorBase
{
    public override async Task<RegisterReply> Register(RegisterRequest request, ServerCallContext context)
    {
        var (run, position) = await state.RegisterAsync(request.Rank, request.WorldSize, string.IsNullOrEmpty(request.Host) ? context.Peer : request.Host,
            request.Start is { } start ? FromProto(start) : null);
        return new RegisterReply
        {
            RunId = run.RunId,
            ProtocolVersion = ProtocolVersion.Current,
            Run = ToProto(run),
            Position = ToProto(position),
        };
    }

    public override Task<HeartbeatReply> Heartbeat(HeartbeatRequest request, ServerCallContext context)
    {
        string? reason = state.Heartbeat(request.Rank);
        return Task.FromResult(new HeartbeatReply { Stop = reason is not null, StopReason = reason ?? "", RankFailed = reason is not null && state.RankFailed });
    }

    public override Task<EpochPlanReply> GetEpochPlan(GetEpochPlanRequest request, ServerCallContext context)
    {
        var plan = state.Plan(request.Epoch);
        var reply = new EpochPlanReply { Run = ToProto(state.Identity), Epoch = request.Epoch };
        foreach (var batch in plan) reply.Batches.Add(new GlobalBatch { Samples = { batch } });
        return Task.FromResult(reply);
    }

    public override Task<LeaseBatchesReply> LeaseBatches(LeaseBatchesRequest request, ServerCallContext context)
    {
        var lease = state.LeaseBatches(request.Rank, request.Epoch, request.HasFromBatch ? request.FromBatch : null, request.MaxBatches);
        var reply = new LeaseBatchesReply
        {
            Stop = lease.StopReason is not null,
            StopReason = lease.StopReason ?? "",
            EpochDone = lease.EpochDone,
            BatchesInEpoch = lease.BatchesInEpoch,
            RankFailed = lease.StopReason is not null && state.RankFailed,
        };
        foreach (var batch in lease.Batches) reply.Batches.Add(new V1.LeasedBatch { Index = batch.Index, Samples = { batch.Samples }, GlobalBatch = { batch.GlobalBatch } });
        return Task.FromResult(reply);
    }

    public override async Task<ReportStepReply> ReportStep(ReportStepRequest request, ServerCallContext context)
    {
        string? reason = await state.ReportStepAsync(request.Rank, request.Step, request.Metrics, request.Position is { } p ? FromProto(p) : null);
        return new ReportStepReply { Stop = reason is not null, StopReason = reason ?? "", RankFailed = reason is not null && state.RankFailed };
    }

    public override async Task<CommitCheckpointReply> CommitCheckpoint(CommitCheckpointRequest request, ServerCallContext context)
    {
        if (request.Position is null) throw new RpcException(new Status(StatusCode.InvalidArgument, "CommitCheckpoint needs the plan position the checkpoint resumes from"));
        await state.CommitCheckpointAsync(request.Step, request.Dir, FromProto(request.Position));
        return new CommitCheckpointReply();
    }

    public override Task<StopReply> Stop(StopRequest request, ServerCallContext context)
    {
        state.Stop(request.Reason);
        return Task.FromResult(new StopReply());
    }

    static V1.RunIdentity ToProto(RunIdentity run) => new()
    {
        RunId = run.RunId, WorldSize = run.WorldSize, SampleCount = run.SampleCount, Seed = run.Seed, GlobalBatch = run.GlobalBatch,
        BucketWindow = run.BucketWindow, DataFingerprint = run.DataFingerprint,
    };

    static V1.PlanPosition ToProto(PlanPosition position) => new() { Epoch = position.Epoch, NextBatch = position.NextBatch };

    static PlanPosition FromProto(V1.PlanPosition position) => new(position.Epoch, position.NextBatch);
}
