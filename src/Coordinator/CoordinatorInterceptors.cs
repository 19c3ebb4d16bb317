using System.Security.Cryptography;
using System.Text;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Qwen3Tts.Protocol.V1;

namespace Qwen3Tts.Coordinator;

/// <summary>Every call must carry <c>authorization: Bearer &lt;token&gt;</c> with the run's token, compared in constant time.
/// Neither the expected nor the presented token ever appears in a status message or a log line.</summary>
public sealed class BearerTokenInterceptor(CoordinatorToken token) : Interceptor
{
    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, context);
    }

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(requestStream, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, responseStream, context);
    }

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(requestStream, responseStream, context);
    }

    void Check(ServerCallContext context)
    {
        string? header = context.RequestHeaders.GetValue("authorization");
        if (string.IsNullOrEmpty(header))
            throw new RpcException(new Status(StatusCode.Unauthenticated,
                $"no bearer token: send 'authorization: Bearer <token>' with the run's token (set {CoordinatorEnvVars.Token} on every rank)"));
        const string scheme = "Bearer ";
        if (!header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase) || !token.Matches(header[scheme.Length..].Trim()))
            throw new RpcException(new Status(StatusCode.Unauthenticated,
                $"the bearer token is not this run's token; check {CoordinatorEnvVars.Token} on this rank against the coordinator's"));
    }
}

/// <summary>The run's shared secret. <see cref="ToString"/> never shows it.</summary>
public sealed class CoordinatorToken
{
    readonly byte[] utf8;

    public CoordinatorToken(string value)
    {
        if (string.IsNullOrWhiteSpace(value)) throw new ArgumentException("the coordinator token is empty", nameof(value));
        Value = value;
        utf8 = Encoding.UTF8.GetBytes(value);
    }

    /// <summary>The secret itself: hand it to ranks, never to a log.</summary>
    public string Value { get; }

    /// <summary>256 random bits as 64 hex characters.</summary>
    public static CoordinatorToken Generate() => new(RandomNumberGenerator.GetHexString(64, lowercase: true));

    public bool Matches(string presented) => CryptographicOperations.FixedTimeEquals(utf8, Encoding.UTF8.GetBytes(presented));

    public override string ToString() => "<coordinator token>";
}

/// <summary>Refuses a request whose protocol_version is not this coordinator's, naming both.</summary>
public sealed class ProtocolVersionInterceptor : Interceptor
{
    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        if (request is IVersionedRequest versioned && versioned.ProtocolVersion != ProtocolVersion.Current)
        {
            string theirs = versioned.ProtocolVersion == 0 ? "0 (not set)" : versioned.ProtocolVersion.ToString(System.Globalization.CultureInfo.InvariantCulture);
            throw new RpcException(new Status(StatusCode.FailedPrecondition,
                $"the client speaks coordinator protocol version {theirs}, this coordinator speaks version {ProtocolVersion.Current}; " +
                "run ranks and coordinator from the same build"));
        }
        return continuation(request, context);
    }
}

/// <summary>Maps the domain's refusals to status codes at the edge; anything else is a bug and stays Internal (gRPC's default).</summary>
public sealed class ErrorMappingInterceptor : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(request, context);
        }
        catch (CoordinatorException e)
        {
            var code = e.Kind switch
            {
                CoordinatorErrorKind.InvalidArgument => StatusCode.InvalidArgument,
                _ => StatusCode.FailedPrecondition,
            };
            throw new RpcException(new Status(code, e.Message));
        }
    }
}
