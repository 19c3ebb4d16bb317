namespace Qwen3Tts.Coordinator;

/// <summary>Environment variables the coordinator reads (the rank side lists the same name in Rank's EnvVars).</summary>
public static class CoordinatorEnvVars
{
    /// <summary>The run's bearer token: every call to the coordinator carries it; never logged.</summary>
    public const string Token = "QWEN3TTS_COORDINATOR_TOKEN";
    /// <summary>Password of the --tls_certificate .pfx (kept off the command line).</summary>
    public const string TlsCertificatePassword = "QWEN3TTS_COORDINATOR_TLS_PASSWORD";
}
