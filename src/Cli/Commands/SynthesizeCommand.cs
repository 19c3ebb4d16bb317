using Qwen3Tts.Entry;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Codec;
using Qwen3Tts.Model.Generation;
using Qwen3Tts.Model.Text;
using Qwen3Tts.Rank.Training;
using static TorchSharp.torch;

namespace Qwen3Tts.Cli.Commands;

/// <summary><c>qwen3tts synthesize</c>: text to 12 Hz codec codes (and, once the decoder is wired, to WAV) with a
/// named speaker, a cloned voice (x-vector or ICL) or none; one utterance from flags or many from a requests file.</summary>
public static class SynthesizeCommand
{
    /// <summary>The sampling flags, named as generation_config.json names them; null keeps the file's value.</summary>
    public sealed record SamplingOverrides(
        bool? DoSample = null, int? TopK = null, double? TopP = null, double? Temperature = null, double? RepetitionPenalty = null,
        bool? SubtalkerDoSample = null, int? SubtalkerTopK = null, double? SubtalkerTopP = null, double? SubtalkerTemperature = null,
        int? MaxNewTokens = null, int? MinNewTokens = null)
    {
        public GenerationConfig Apply(GenerationConfig c) => (c with
        {
            DoSample = DoSample ?? c.DoSample,
            TopK = TopK ?? c.TopK,
            TopP = TopP ?? c.TopP,
            Temperature = Temperature ?? c.Temperature,
            RepetitionPenalty = RepetitionPenalty ?? c.RepetitionPenalty,
            SubtalkerDoSample = SubtalkerDoSample ?? c.SubtalkerDoSample,
            SubtalkerTopK = SubtalkerTopK ?? c.SubtalkerTopK,
            SubtalkerTopP = SubtalkerTopP ?? c.SubtalkerTopP,
            SubtalkerTemperature = SubtalkerTemperature ?? c.SubtalkerTemperature,
            MaxNewTokens = MaxNewTokens ?? c.MaxNewTokens,
            MinNewTokens = MinNewTokens ?? c.MinNewTokens,
        }).Validate("the sampling flags");
    }

    /// <summary>Everything one invocation does. <see cref="OutDir"/> set means the batch form.</summary>
    public sealed record Settings(
        string ModelDir, IReadOnlyList<SynthesisInput> Inputs, string? Out, string? OutDir, string? CodesOut, bool CodesOnly,
        SamplingOverrides Sampling, ulong Seed, bool UseKvCache = true, string Dtype = "fp32")
    {
        /// <summary>The 12 Hz codec folder; null: the model's speech_tokenizer/ (training checkpoints do not copy it: point
        /// this at the base model's).</summary>
        public string? SpeechTokenizerDir { get; init; }
    }

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "model directory (config.json, weights, tokenizer files, generation_config.json), or its id in the Hugging Face cache", HelpName = "DIR", Required = true };
        var text = new Option<string?>("--text") { Description = "the text to speak (or --requests)" };
        var requests = new Option<string?>("--requests") { Description = "JSONL of requests, one {\"text\", \"id\"?, \"language\"?, \"speaker\"?, \"ref_audio\"?, \"ref_text\"?, \"xvector_only\"?, \"ref_codes\"?|\"ref_codes_file\"?, \"speaker_embedding\"?, \"instruct\"?, \"non_streaming\"?, \"seed\"?} a line; needs --out-dir", HelpName = "REQ.jsonl" };
        var speaker = new Option<string?>("--speaker") { Description = "a named speaker of a custom_voice model (config talker_config.spk_id)", HelpName = "NAME" };
        var refAudio = new Option<string?>("--ref_audio", "--ref-audio") { Description = "clone the voice of this WAV (Base models): its x-vector fills the speaker slot", HelpName = "WAV" };
        var refText = new Option<string?>("--ref_text", "--ref-text") { Description = "transcript of --ref_audio: clones in context (ICL) with the clip's 12 Hz codes" };
        var xvectorOnly = new Option<bool>("--xvector_only", "--x_vector_only_mode") { Description = "clone from the x-vector alone (no ref_text, no codes)" };
        var refCodes = new Option<string?>("--ref_codes", "--ref-codes") { Description = "JSONL with one {\"audio_codes\": [[16 ints]...]} record: the reference clip's 12 Hz codes for ICL (default: --ref_audio encoded with the model's 12 Hz codec)", HelpName = "FILE.jsonl" };
        var speakerEmbedding = new Option<string?>("--speaker_embedding", "--speaker-embedding") { Description = "a precomputed x-vector (safetensors, from `qwen3tts speaker-embedding`) instead of computing it from --ref_audio", HelpName = "FILE" };
        var language = new Option<string>("--language") { Description = "auto, or one of the model's codec_language_id keys (english, chinese, ...)", DefaultValueFactory = _ => "auto" };
        var instruct = new Option<string?>("--instruct") { Description = "an instruction (voice design, or a 1.7B custom voice's style)" };
        var nonStreaming = new Option<bool?>("--non_streaming", "--non_streaming_mode") { Description = "true: all text in the prompt; false: text fed along with the frames (default: false when cloning, true otherwise, as the reference)" };
        var output = new Option<string?>("--out") { Description = "24 kHz WAV to write (decoded by the 12 Hz codec)", HelpName = "OUT.wav" }.ForFile();
        var speechTokenizerDir = new Option<string?>("--speech_tokenizer", "--speech-tokenizer") { Description = "the 12 Hz codec folder (default: MODEL/speech_tokenizer; a training checkpoint has none: give the base model's)", HelpName = "DIR" }.ForFolder();
        var outDir = new Option<string?>("--out-dir", "--out_dir") { Description = "batch output folder: codes.jsonl and ID.wav per request", HelpName = "DIR" };
        var codesOut = new Option<string?>("--codes_out", "--codes-out") { Description = "JSONL to write the generated codes to: {\"text\", \"audio_codes\": [[16 ints]...]}", HelpName = "OUT.jsonl" };
        var codesOnly = new Option<bool>("--codes_only", "--codes-only") { Description = "batch form: write only OUT_DIR/codes.jsonl, no WAVs" };
        var seed = new Option<ulong>("--seed") { Description = "sampling seed (request i of a batch uses seed + i unless it sets its own)", DefaultValueFactory = _ => 0 };
        var noCache = new Option<bool>("--no_kv_cache", "--no-kv-cache") { Description = "recompute every sequence in full each step (slow; for checking)" };
        var dtype = new Option<string>("--dtype") { Description = "fp32 or bf16", DefaultValueFactory = _ => "fp32" };
        dtype.AcceptOnlyFromAmong("fp32", "bf16");
        var doSample = new Option<bool?>("--do_sample") { Description = "sample codebook 0 (true) or take the argmax (false)" };
        var topK = new Option<int?>("--top_k") { Description = "top-k for codebook 0 (0 = off)" };
        var topP = new Option<double?>("--top_p") { Description = "top-p for codebook 0 (1.0 = off)" };
        var temperature = new Option<double?>("--temperature") { Description = "temperature for codebook 0" };
        var repetitionPenalty = new Option<double?>("--repetition_penalty") { Description = "repetition penalty over the codebook-0 tokens so far (1.0 = off)" };
        var maxNewTokens = new Option<int?>("--max_new_tokens") { Description = "most codebook-0 tokens to generate (12.5 per second of audio)" };
        var minNewTokens = new Option<int?>("--min_new_tokens") { Description = "fewest codebook-0 tokens before eos may come (reference: 2)" };
        var subDoSample = new Option<bool?>("--subtalker_dosample") { Description = "sample codebooks 1..15 (true) or take the argmax (false)" };
        var subTopK = new Option<int?>("--subtalker_top_k") { Description = "top-k for codebooks 1..15" };
        var subTopP = new Option<double?>("--subtalker_top_p") { Description = "top-p for codebooks 1..15" };
        var subTemperature = new Option<double?>("--subtalker_temperature") { Description = "temperature for codebooks 1..15" };

        var command = new Command("synthesize", "Speak text with a Qwen3-TTS-12Hz model: a 24 kHz WAV (--out) through the 12 Hz codec, and/or the codes (--codes_out). " +
            "Sampling defaults come from the model's generation_config.json.")
        {
            model, text, requests, speaker, refAudio, refText, xvectorOnly, refCodes, speakerEmbedding, language, instruct, nonStreaming,
            output, speechTokenizerDir, outDir, codesOut, codesOnly, seed, noCache, dtype,
            doSample, topK, topP, temperature, repetitionPenalty, maxNewTokens, minNewTokens, subDoSample, subTopK, subTopP, subTemperature,
        };
        command.Validators.Add(r =>
        {
            bool batch = r.GetValue(requests) is not null;
            if (batch == (r.GetValue(text) is not null)) r.AddError("give either --text (one utterance) or --requests REQ.jsonl (a batch)");
            else if (batch && r.GetValue(outDir) is null) r.AddError("--requests writes into --out-dir DIR");
            else if (batch && (r.GetValue(output) ?? r.GetValue(codesOut)) is not null) r.AddError("with --requests, outputs go to --out-dir (codes.jsonl and ID.wav), not --out/--codes_out");
            else if (!batch && r.GetValue(output) is null && r.GetValue(codesOut) is null) r.AddError("say where the result goes: --out OUT.wav and/or --codes_out OUT.jsonl");
            else if (!batch && r.GetValue(outDir) is not null) r.AddError("--out-dir is for --requests; use --out and/or --codes_out");
        });
        command.SetAction(parse =>
        {
            var inputs = parse.GetValue(requests) is { } file
                ? SynthesisInputs.ReadRequests(file)
                : [new SynthesisInput
                {
                    Id = "0000",
                    Text = parse.GetValue(text)!,
                    Language = parse.GetValue(language)!,
                    Speaker = parse.GetValue(speaker),
                    RefAudio = parse.GetValue(refAudio),
                    RefText = parse.GetValue(refText),
                    XVectorOnly = parse.GetValue(xvectorOnly),
                    RefCodesFile = parse.GetValue(refCodes),
                    SpeakerEmbeddingFile = parse.GetValue(speakerEmbedding),
                    Instruct = parse.GetValue(instruct),
                    NonStreaming = parse.GetValue(nonStreaming),
                }];
            var sampling = new SamplingOverrides(parse.GetValue(doSample), parse.GetValue(topK), parse.GetValue(topP), parse.GetValue(temperature),
                parse.GetValue(repetitionPenalty), parse.GetValue(subDoSample), parse.GetValue(subTopK), parse.GetValue(subTopP), parse.GetValue(subTemperature),
                parse.GetValue(maxNewTokens), parse.GetValue(minNewTokens));
            return Run(new Settings(Qwen3Tts.Entry.Hub.HubPaths.Model(parse.GetValue(model)!), inputs, parse.GetValue(output), parse.GetValue(outDir), parse.GetValue(codesOut),
                parse.GetValue(codesOnly), sampling, parse.GetValue(seed), !parse.GetValue(noCache), parse.GetValue(dtype)!) { SpeechTokenizerDir = parse.GetValue(speechTokenizerDir) },
                parse.InvocationConfiguration.Output, parse.InvocationConfiguration.Error);
        });
        return command;
    }

    public static int Run(Settings s, TextWriter output, TextWriter error)
    {
        bool batch = s.OutDir is not null;
        bool wantWav = batch ? !s.CodesOnly : s.Out is not null;
        var generation = s.Sampling.Apply(GenerationConfig.FromModelDirectory(s.ModelDir));
        var tokenizer = Qwen3TextTokenizer.FromModelDirectory(s.ModelDir);
        using var model = LoadModel(s, s.Dtype == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32);
        model.eval();
        var synthesizer = new Synthesizer(model, tokenizer) { UseKvCache = s.UseKvCache };
        var xvectors = new Dictionary<string, float[]>(StringComparer.Ordinal);
        string speechTokenizer = s.SpeechTokenizerDir ?? CodecFolder(s.ModelDir);
        if (wantWav && !Directory.Exists(speechTokenizer))
            throw new ArgumentException($"{speechTokenizer}: no such folder; audio needs the 12 Hz codec (a training checkpoint has none: pass the base model's with " +
                "--speech_tokenizer), or write codes only with --codes_out / --codes_only");
        var encoder = new Lazy<SpeechTokenizer>(() => SpeechTokenizer.Load(speechTokenizer)); // ICL: reference clips to codes
        var refCodesByClip = new Dictionary<string, long[,]>(StringComparer.Ordinal);

        if (batch) Directory.CreateDirectory(s.OutDir!);
        string? codesPath = batch ? Path.Combine(s.OutDir!, "codes.jsonl") : s.CodesOut;
        using var codes = codesPath is null ? null : new StreamWriter(codesPath, append: false, new System.Text.UTF8Encoding(false));
        for (int i = 0; i < s.Inputs.Count; i++)
        {
            var input = s.Inputs[i];
            SynthesisRequest request;
            try { request = ToRequest(input, model, xvectors, wav => EncodeOnce(wav)); }
            catch (ArgumentException e) { throw new ArgumentException($"{input.Source}: {e.Message}", e); }
            ulong seed = input.Seed ?? s.Seed + (ulong)i;
            var clock = Stopwatch.StartNew();
            SynthesisResult result;
            try { result = synthesizer.Synthesize(request, generation, seed); }
            catch (ArgumentException e) { throw new ArgumentException($"{input.Source}: {e.Message}", e); }
            double seconds = clock.Elapsed.TotalSeconds;
            if (codes is not null)
            {
                codes.WriteLine(SynthesisInputs.CodesLine(batch ? input.Id : null, input.Text, result.Codes));
                codes.Flush();
            }
            if (wantWav)
                Waveform.WriteWaveform(result.Codes, speechTokenizer, batch ? Path.Combine(s.OutDir!, input.Id + ".wav") : s.Out!, request.RefCodes);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{input.Id}: {result.Frames} frames ({result.AudioSeconds:F2} s of audio), {(result.ReachedEos ? "ended at eos" : "stopped at max_new_tokens")}, " +
                $"{seconds:F2} s wall, {result.AudioSeconds / Math.Max(seconds, 1e-9):F2} s of audio per second, seed {seed}"));
        }
        return 0;

        long[,] EncodeOnce(string wav)
        {
            if (!refCodesByClip.TryGetValue(wav, out var c)) refCodesByClip[wav] = c = encoder.Value.EncodeFile(wav);
            return c;
        }
    }

    /// <summary>The model; a training checkpoint asked for a speaker by name loads as the custom voice its export would
    /// be (its speaker table, <see cref="CheckpointVoices"/>), so best/, last/, epoch-N/ and checkpoint-N/ all speak.</summary>
    static Qwen3TtsModel LoadModel(Settings s, ScalarType dtype)
    {
        if (s.Inputs.Any(i => i.Speaker is not null) && CheckpointVoices.LoadSpeaking(s.ModelDir, dtype) is { } speaking) return speaking;
        return ModelDirectory.Load(s.ModelDir, dtype);
    }

    /// <summary>The model's speech_tokenizer/, or for a training checkpoint (which does not copy the codec) the one of the
    /// base model its training_state/trainer_state.json names.</summary>
    public static string CodecFolder(string modelDir)
    {
        string own = Path.Combine(modelDir, "speech_tokenizer");
        if (Directory.Exists(own)) return own;
        bool checkpoint = File.Exists(Path.Combine(modelDir, TrainingCheckpoint.StateFolder, TrainingCheckpoint.StateFile));
        if (checkpoint && TrainingCheckpoint.ReadState(modelDir).BaseModel is { Length: > 0 } baseModel
            && Directory.Exists(Path.Combine(baseModel, "speech_tokenizer")))
            return Path.Combine(baseModel, "speech_tokenizer");
        return own;
    }

    /// <summary>The voice sources of an input turned into a request: an x-vector from --speaker_embedding or --ref_audio
    /// (each WAV embedded once), ICL when cloning without --xvector_only (ref_text and the clip's codes required, as the
    /// reference requires ref_text).</summary>
    static SynthesisRequest ToRequest(SynthesisInput input, Qwen3TtsModel model, Dictionary<string, float[]> xvectors, Func<string, long[,]> encodeClip)
    {
        float[]? xvector = null;
        if (input.SpeakerEmbeddingFile is { } file) xvector = SpeakerEmbeddings.Load(file);
        else if (input.RefAudio is { } wav)
        {
            if (!xvectors.TryGetValue(wav, out xvector)) xvectors[wav] = xvector = SpeakerEmbeddings.FromWav(model, wav);
        }
        if (xvector is null)
        {
            if (input.XVectorOnly || input.RefText is not null || input.RefCodes is not null || input.RefCodesFile is not null)
                throw new ArgumentException("ref_text, ref_codes and xvector_only clone a voice: give the reference clip (ref_audio) or its speaker_embedding");
            return new SynthesisRequest { Text = input.Text, Language = input.Language, Speaker = input.Speaker, Instruct = input.Instruct, NonStreaming = input.NonStreaming };
        }
        if (input.XVectorOnly)
            return new SynthesisRequest { Text = input.Text, Language = input.Language, SpeakerEmbedding = xvector, Instruct = input.Instruct, NonStreaming = input.NonStreaming };
        if (string.IsNullOrEmpty(input.RefText))
            throw new ArgumentException("ref_text is required when cloning in context (the default with a reference clip); give the clip's transcript, or use xvector_only");
        // The clip's codes: given, or encoded by the model's 12 Hz speech tokenizer as the reference does.
        var refCodes = input.RefCodes ?? (input.RefCodesFile is { } codesFile ? SynthesisInputs.ReadCodesFile(codesFile)
            : input.RefAudio is { } clip ? encodeClip(clip)
            : throw new ArgumentException("in-context cloning from a speaker_embedding needs the reference clip's codes: give ref_audio (encoded with the model's speech_tokenizer/) or ref_codes, or use xvector_only"));
        return new SynthesisRequest
        {
            Text = input.Text, Language = input.Language, SpeakerEmbedding = xvector, RefText = input.RefText, RefCodes = refCodes,
            Instruct = input.Instruct, NonStreaming = input.NonStreaming,
        };
    }
}

/// <summary><c>qwen3tts speaker-embedding --model DIR --ref_audio WAV --out FILE</c>: a clip's x-vector, saved for reuse.</summary>
public static class SpeakerEmbeddingCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "a Base model directory (it has the speaker encoder)", HelpName = "DIR", Required = true };
        var refAudio = new Option<string>("--ref_audio", "--ref-audio") { Description = "the voice's reference clip (any WAV)", HelpName = "WAV", Required = true };
        var output = new Option<string>("--out") { Description = "safetensors file to write (one fp32 tensor \"speaker_embedding\")", HelpName = "FILE", Required = true }.ForFile();
        var command = new Command("speaker-embedding", "Compute a reference clip's speaker embedding (x-vector) and save it for synthesize --speaker_embedding")
        {
            model, refAudio, output,
        };
        command.SetAction(parse =>
        {
            string dir = Qwen3Tts.Entry.Hub.HubPaths.Model(parse.GetValue(model)!), wav = parse.GetValue(refAudio)!, path = parse.GetValue(output)!;
            using var m = ModelDirectory.Load(dir);
            var embedding = SpeakerEmbeddings.FromWav(m, wav);
            SpeakerEmbeddings.Save(path, embedding, source: Path.GetFileName(wav));
            parse.InvocationConfiguration.Output.WriteLine($"{path}: speaker embedding [{embedding.Length}] of {wav}");
            return 0;
        });
        return command;
    }
}
