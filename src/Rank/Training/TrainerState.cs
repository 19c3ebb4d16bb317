using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Qwen3Tts.Rank.Training;

/// <summary>The learning-rate schedule a run uses, by name ("constant", "linear", "cosine") and its numbers
/// ("lr", "warmup_steps", "total_steps", ...), so a resumed run can check it continues the same schedule.</summary>
public sealed record LrScheduleState(string Name, IReadOnlyDictionary<string, double> Params);

/// <summary>One logged metric value (eval loss, ...), kept so a resumed run continues the same history.</summary>
public sealed record MetricPoint(long Step, string Name, double Value);

/// <summary>A speaker's running embedding sum (fp64) and row count; see <see cref="SpeakerEmbeddingMean"/>.</summary>
public sealed record SpeakerEmbeddingSum(string Speaker, long Count, IReadOnlyList<double> Sum);

/// <summary>Everything besides weights and optimizer tensors that a resumed run needs to continue exactly where the
/// checkpoint was taken: <c>training_state/trainer_state.json</c>. Holds counters, the schedule, the seed and RNG
/// states, the metric history and the speaker embedding sums: nothing from the environment, so no secret
/// (an API key, a token) can reach a checkpoint through it.</summary>
public sealed record TrainerState
{
    public const int CurrentFormatVersion = 1;

    public int FormatVersion { get; init; } = CurrentFormatVersion;

    /// <summary>Optimizer updates done so far across epochs (the step checkpoint-{step} is named after).</summary>
    public required long GlobalStep { get; init; }

    /// <summary>The epoch in progress (0-based).</summary>
    public required int Epoch { get; init; }

    /// <summary>The data cursor: batches of <see cref="Epoch"/> already consumed; resuming skips these.</summary>
    public required long BatchInEpoch { get; init; }

    /// <summary>The optimizer's own step count (AdamW bias correction); differs from <see cref="GlobalStep"/>
    /// when steps were skipped (non-finite gradients).</summary>
    public required long OptimizerStep { get; init; }

    /// <summary>The lowest eval loss so far and the step it was reached at; null before the first eval.</summary>
    public double? BestEvalLoss { get; init; }
    public long? BestEvalStep { get; init; }

    public required LrScheduleState LrSchedule { get; init; }

    public required ulong Seed { get; init; }

    /// <summary>How the run cut its data (per-rank batch, world size, accumulation); a resume at another world size keeps
    /// its global batch (<see cref="ResumeGeometry"/>). Null in checkpoints written before it existed.</summary>
    public BatchGeometry? Batch { get; init; }

    /// <summary>--zero_stage of the run that wrote it (for the record: the files are the same at every stage).</summary>
    public int? ZeroStage { get; init; }

    /// <summary>The base model the run started from (absolute path): where synthesis finds the 12 Hz codec
    /// (speech_tokenizer/), which checkpoints do not copy. Null in checkpoints written before it existed.</summary>
    public string? BaseModel { get; init; }

    /// <summary>Opaque RNG states by name (a generator's state as base64, a counter): each value a string or a long.</summary>
    [JsonConverter(typeof(RngStateConverter))]
    public IReadOnlyDictionary<string, object> RngStates { get; init; } = new Dictionary<string, object>();

    /// <summary>Metric values logged so far (the caller decides which: typically eval losses).</summary>
    public IReadOnlyList<MetricPoint> MetricHistory { get; init; } = [];

    /// <summary>Records already appended to the metrics log when the checkpoint was taken: a resumed run drops
    /// later ones (logged after this checkpoint, then lost to the crash) before appending.</summary>
    public long MetricsLogCursor { get; init; }

    /// <summary>Per-speaker embedding sums for the exported voice; see <see cref="SpeakerEmbeddingMean.ToState"/>.</summary>
    public IReadOnlyList<SpeakerEmbeddingSum> SpeakerEmbeddings { get; init; } = [];

    static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        RespectNullableAnnotations = true,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Options) + "\n";

    public static TrainerState FromJson(string json, string source)
    {
        TrainerState? state;
        try { state = JsonSerializer.Deserialize<TrainerState>(json, Options); }
        catch (JsonException e) { throw new TrainingCheckpointException($"{source}: not a valid trainer state: {e.Message}", e); }
        if (state is null) throw new TrainingCheckpointException($"{source}: not a valid trainer state: null");
        if (state.FormatVersion != CurrentFormatVersion)
            throw new TrainingCheckpointException($"{source}: format_version is {state.FormatVersion}; this build reads {CurrentFormatVersion}");
        return state;
    }

    /// <summary>True when both serialize identically (records compare collections by reference).</summary>
    public bool SameAs(TrainerState other) => ToJson() == other.ToJson();

    /// <summary>Strings and longs only, read back as string and long.</summary>
    sealed class RngStateConverter : JsonConverter<IReadOnlyDictionary<string, object>>
    {
        public override IReadOnlyDictionary<string, object> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            if (reader.TokenType != JsonTokenType.StartObject) throw new JsonException("rng_states must be an object");
            var result = new SortedDictionary<string, object>(StringComparer.Ordinal);
            while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
            {
                string key = reader.GetString()!;
                reader.Read();
                result[key] = reader.TokenType switch
                {
                    JsonTokenType.String => reader.GetString()!,
                    JsonTokenType.Number when reader.TryGetInt64(out long v) => v,
                    _ => throw new JsonException($"rng_states.{key} must be a string or an integer"),
                };
            }
            return result;
        }

        public override void Write(Utf8JsonWriter writer, IReadOnlyDictionary<string, object> value, JsonSerializerOptions options)
        {
            writer.WriteStartObject();
            foreach (var (key, v) in value.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                switch (v)
                {
                    case string s: writer.WriteString(key, s); break;
                    case long or int or uint: writer.WriteNumber(key, Convert.ToInt64(v, System.Globalization.CultureInfo.InvariantCulture)); break;
                    default: throw new JsonException($"rng_states.{key} is a {v?.GetType().Name ?? "null"}; only strings and integers are stored");
                }
            }
            writer.WriteEndObject();
        }
    }
}

/// <summary>A training checkpoint that cannot be written, found or read; the message names the folder or file.</summary>
public sealed class TrainingCheckpointException : Qwen3Tts.Model.UserInputException
{
    public TrainingCheckpointException(string message) : base(message) { }
    public TrainingCheckpointException(string message, Exception inner) : base(message, inner) { }
}
