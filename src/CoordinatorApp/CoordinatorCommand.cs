using Qwen3Tts.Entry;
using System.CommandLine;
using Qwen3Tts.Coordinator;
using Qwen3Tts.Coordinator.Data;

namespace Qwen3Tts.CoordinatorApp;

/// <summary>The flags share the trainer's names and defaults where they mean the same thing (--train_jsonl, --seed,
/// --batch_size, --max_train_samples, --skip_bad_samples, --output_model_path), so one config drives both.</summary>
public static class CoordinatorCommand
{
    public const string TokenFileName = "coordinator.token";

    public static RootCommand Create()
    {
        var train = new Option<string>("--train_jsonl", "--train_data") { Description = "training data (JSONL, Parquet file or folder of shards): its sample count fixes the plan", Required = true };
        var maxTrain = new Option<int?>("--max_train_samples") { Description = "use only the first N records, as the trainer does (default: all)" };
        var skipBad = new Option<bool>("--skip_bad_samples") { Description = "skip malformed records instead of failing, as the trainer does" };
        var model = new Option<string?>("--init_model_path") { Description = "the model the ranks train: its records are judged by the trainer's rules (text ids, context length), so the plan holds exactly the records the ranks keep" };
        var maxFrames = new Option<int?>("--max_frames") { Description = "as the trainer's --max_frames" };
        var maxSeconds = new Option<double?>("--max_seconds") { Description = "as the trainer's --max_seconds" };
        var allowAbsolute = new Option<bool>(DataPaths.AllowFlag) { Description = "as the trainer's --allow_absolute_paths" };
        var maxLine = new Option<int?>("--max_line_mb") { Description = "as the trainer's --max_line_mb" };
        var seed = new Option<long>("--seed") { Description = "seed of the data order (default 42, the trainer's)", DefaultValueFactory = _ => 42 };
        var batch = new Option<int>("--batch_size") { Description = "samples per rank per micro-step; global batch = batch_size × world_size (default 2)", DefaultValueFactory = _ => 2 };
        var window = new Option<int>("--bucket_window") { Description = "group batches by length within windows of N global batches, as the trainer does (default 32; 0: random batching)", DefaultValueFactory = _ => 32 };
        var world = new Option<int?>("--world_size") { Description = "number of ranks (default: fixed by the first rank that registers)" };
        var output = new Option<string>("--output_model_path", "--output_dir") { Description = "the run's output folder; the coordinator keeps its state there and resumes from it (default: output)", DefaultValueFactory = _ => "output" }.ForFolder();
        var trainPrompt = new Option<string>("--train_prompt") { Description = "as the trainer's: xvector (default), icl or mixed; ICL records are planned by their whole length", DefaultValueFactory = _ => "xvector" };
        var iclProbability = new Option<double>("--icl_probability") { Description = "as the trainer's (default 0.5)", DefaultValueFactory = _ => 0.5 };
        var timeout = new Option<double>("--heartbeat_timeout") { Description = "seconds a rank may stay silent before the run is stopped (default 60)", DefaultValueFactory = _ => 60 };
        var address = new Option<string>("--address") { Description = "IP address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "port to listen on (default 0: a free port, printed at start)", DefaultValueFactory = _ => 0 };
        var metricsPort = new Option<int>("--metrics-port", "--metrics_port") { Description = "serve Prometheus metrics at http://<address>:<port>/metrics (plain HTTP, no token; default 0: off)", DefaultValueFactory = _ => 0 };
        var token = new Option<string?>("--token") { Description = $"the run's bearer token (default: ${CoordinatorEnvVars.Token}; else generated and written to <output>/{TokenFileName})" };
        var cert = new Option<string?>("--tls_certificate") { Description = $"a .pfx certificate: serve TLS (its password from ${CoordinatorEnvVars.TlsCertificatePassword})" };

        var command = new RootCommand("qwen3tts-coordinator: owns a training run's data plan; ranks lease batches, report steps and heartbeat over gRPC.")
        {
            train, maxTrain, skipBad, model, maxFrames, maxSeconds, allowAbsolute, maxLine, seed, batch, window, world, output, timeout, address, port, metricsPort, token, cert,
            trainPrompt, iclProbability,
        };
        command.SetAction(async (parse, cancel) =>
        {
            {
                string outputDir = parse.GetValue(output)!;
                int? limit = RecordRules.FrameLimit(parse.GetValue(maxFrames), parse.GetValue(maxSeconds));
                bool anywhere = parse.GetValue(allowAbsolute);
                var rules = parse.GetValue(model) is { } spec ? RecordRules.ForModel(spec, limit, anywhere) : new RecordRules(null, MaxFrames: limit, AllowOutsidePaths: anywhere);
                var refusals = new Refusals(parse.GetValue(skipBad));
                // In the trainer's order: read, the first --max_train_samples, then the rules.
                var records = TrainingData.Read(parse.GetValue(train)!, refusals, bounds: rules.Bounds, maxLineBytes: JsonlTrainingData.LineLimit(parse.GetValue(maxLine)));
                if (parse.GetValue(maxTrain) is { } max) records = records.Take(max).ToList();
                records = rules.Apply(records, refusals);
                refusals.ThrowIfAny();
                if (refusals.Count > 0) Console.WriteLine($"coordinator: {refusals.Count} records refused and left out of the plan, as the ranks leave them out");
                int count = records.Count;
                // The same lengths the ranks compute from the same records: the plans are identical, and Register checks it.
                // ICL records count their reference's frames (ref_codes, or the frames the ranks' codec makes of the clip).
                var prompt = TrainPrompt.Parse(parse.GetValue(trainPrompt)!, parse.GetValue(iclProbability), parse.GetValue(seed));
                string? codecConfig = parse.GetValue(model) is { } m ? Path.Combine(m, Qwen3Tts.Model.Codec.SpeechTokenizerConfig.FolderName, "config.json") : null;
                int samplesPerFrame = codecConfig is not null && File.Exists(codecConfig) ? Qwen3Tts.Model.Codec.SpeechTokenizerConfig.Load(codecConfig).EncodeDownsampleRate : 1920;
                var plan = PlanSettings.Bucketed(prompt.PlanLengths(records, samplesPerFrame), parse.GetValue(seed), parse.GetValue(batch), parse.GetValue(window));
                var options = new CoordinatorOptions(outputDir, plan)
                {
                    WorldSize = parse.GetValue(world),
                    HeartbeatTimeout = TimeSpan.FromSeconds(parse.GetValue(timeout)),
                };
                string? secret = parse.GetValue(token) ?? NonEmpty(Environment.GetEnvironmentVariable(CoordinatorEnvVars.Token));
                bool generated = secret is null;
                await using var host = await CoordinatorHost.StartAsync(new CoordinatorHostOptions(options)
                {
                    ListenAddress = parse.GetValue(address)!,
                    Port = parse.GetValue(port),
                    MetricsPort = parse.GetValue(metricsPort),
                    Token = secret,
                    CertificatePath = parse.GetValue(cert),
                    CertificatePassword = Environment.GetEnvironmentVariable(CoordinatorEnvVars.TlsCertificatePassword),
                    Log = Console.Out,
                }, cancel);
                if (generated) Console.WriteLine($"coordinator: generated a token in {WriteToken(outputDir, host.Token)}; give it to every rank as ${CoordinatorEnvVars.Token}");
                Console.WriteLine($"coordinator: {count} samples, seed {parse.GetValue(seed)}, batch {parse.GetValue(batch)} per rank, bucket window {parse.GetValue(window)}; Ctrl+C stops");
                await host.WaitForShutdownAsync(cancel);
                return 0;
            }
        });
        return command;
    }

    static string? NonEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;

    /// <summary>Owner-only (0600) on Unix: the token is the run's only credential.</summary>
    static string WriteToken(string outputDir, string secret)
    {
        string path = Path.Combine(outputDir, TokenFileName);
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using var writer = new StreamWriter(path, new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: false), options);
        writer.Write(secret);
        return path;
    }
}
