using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Qwen3Tts.Coordinator.Data;
using Qwen3Tts.Coordinator.Observability;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Codec;
using Qwen3Tts.Model.Generation;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Model.Text;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Training;

/// <summary>One fixed sentence of --eval_sentences: a line of plain text, or a JSONL line {"text", "language"?}.</summary>
public sealed record EvalSentence(string Text, string Language);

/// <summary>What users listen to when comparing runs: at each evaluation rank 0 speaks the --eval_sentences with the
/// current weights in the training voice (the mean speaker embedding of the first training clips; the speaker encoder is
/// frozen, so it is computed once), with a fixed seed so only the weights change between evaluations, and writes
/// OUTPUT/samples/step-S/NN.wav (+ codes.jsonl). A run that trains the ICL prompt (--train_prompt icl or mixed) also
/// clones each sentence in context from its first ICL record (that clip's x-vector, transcript and codes: the prompt
/// synthesize --ref_audio --ref_text builds) as NN-icl.wav; with icl alone those are the only samples. The clips go to
/// WandB as audio in the evaluation's row.</summary>
public sealed class EvalSamples
{
    public const string Folder = "samples", VoiceFile = "voice.safetensors";
    /// <summary>Training clips whose speaker embeddings are averaged for the voice.</summary>
    const int VoiceClips = 32;

    readonly IReadOnlyList<EvalSentence> sentences;
    readonly GenerationConfig generation;
    readonly SpeechTokenizerDecoder decoder;
    readonly Qwen3TextTokenizer tokenizer;
    readonly ulong seed;
    float[]? voice;
    (float[] XVector, string RefText, long[,] RefCodes)? reference;

    EvalSamples(IReadOnlyList<EvalSentence> sentences, GenerationConfig generation, SpeechTokenizerDecoder decoder, Qwen3TextTokenizer tokenizer, ulong seed) =>
        (this.sentences, this.generation, this.decoder, this.tokenizer, this.seed) = (sentences, generation, decoder, tokenizer, seed);

    /// <summary>Reads the sentences and loads the base model's generation settings and 12 Hz decoder; errors name the file and line.</summary>
    public static EvalSamples Open(string sentencesFile, string baseModelDir, Qwen3TextTokenizer tokenizer, double maxSeconds, long seed)
    {
        if (!File.Exists(sentencesFile)) throw new ArgumentException($"--eval_sentences {sentencesFile}: no such file");
        if (!(maxSeconds > 0)) throw new ArgumentException($"--eval_sample_max_seconds must be positive, got {maxSeconds}");
        var sentences = ReadSentences(sentencesFile);
        string codec = Path.Combine(baseModelDir, SpeechTokenizerConfig.FolderName);
        if (!Directory.Exists(codec))
            throw new ArgumentException($"--eval_sentences needs the 12 Hz codec to make audio, and {baseModelDir} has no {SpeechTokenizerConfig.FolderName}/");
        var generation = GenerationConfig.FromModelDirectory(baseModelDir);
        // max_new_tokens bounds the clip: 12.5 codebook-0 tokens per second (+1: the last token yields no frame).
        generation = generation with { MaxNewTokens = Math.Min(generation.MaxNewTokens, (int)Math.Ceiling(maxSeconds * SynthesisResult.FramesPerSecond) + 1) };
        return new EvalSamples(sentences, generation, SpeechTokenizerDecoderFiles.Load(codec).Decoder, tokenizer, (ulong)seed);
    }

    public static IReadOnlyList<EvalSentence> ReadSentences(string path)
    {
        var result = new List<EvalSentence>();
        int line = 0;
        foreach (var raw in File.ReadLines(path))
        {
            line++;
            string text = raw.Trim();
            if (text.Length == 0) continue;
            if (!text.StartsWith('{')) { result.Add(new EvalSentence(text, "auto")); continue; }
            JsonObject obj;
            try { obj = JsonNode.Parse(text) as JsonObject ?? throw new JsonException("not an object"); }
            catch (JsonException e) { throw new ArgumentException($"{path}:{line}: not a JSON object ({e.Message})"); }
            string? t = obj["text"] is JsonValue v && v.TryGetValue<string>(out var s) ? s.Trim() : null;
            if (string.IsNullOrEmpty(t)) throw new ArgumentException($"{path}:{line}: text: missing or empty");
            string language = obj["language"] is JsonValue l && l.TryGetValue<string>(out var lang) ? lang : "auto";
            result.Add(new EvalSentence(t, language));
        }
        if (result.Count == 0) throw new ArgumentException($"--eval_sentences {path}: no sentences");
        return result;
    }

    /// <summary>Speaks every sentence with <paramref name="model"/>'s current weights; returns the clips for WandB. With
    /// several <paramref name="speakers"/> (--multi_speaker) every sentence is spoken by each, as <c>NN-name.wav</c>.</summary>
    public (IReadOnlyList<WandbAudio> Clips, string Summary) Write(Qwen3TtsModel model, SftDataSource train, long step, string outputDir,
        IReadOnlyList<CheckpointVoice>? speakers = null)
    {
        var clock = Stopwatch.StartNew();
        voice ??= TrainingVoice(model, train);
        string dir = Path.Combine(outputDir, Folder, $"step-{step}");
        Directory.CreateDirectory(dir);
        string voiceFile = Path.Combine(outputDir, Folder, VoiceFile);
        if (!File.Exists(voiceFile)) SpeakerEmbeddings.Save(voiceFile, voice, source: "mean of the first training clips");
        var synthesizer = new Synthesizer(model, tokenizer);
        var clips = new List<WandbAudio>();
        double audioSeconds = 0;
        using var codes = new StreamWriter(Path.Combine(dir, "codes.jsonl"));
        var voices = speakers is { Count: > 1 } ? speakers.Select(v => (Name: (string?)v.Name, v.Embedding)).ToList() : [(Name: (string?)null, Embedding: voice)];
        (float[] XVector, string RefText, long[,] RefCodes)? icl = null;
        int first = Enumerable.Range(0, train.Count).FirstOrDefault(i => train.Prompt.IsIcl(train.Records[i]), -1);
        if (first >= 0) icl = reference ??= IclReference(model, train, first);
        if (icl is { } cloned)
        {
            if (train.Prompt.Kind == TrainPromptKind.Icl) voices.Clear();
            voices.Add((Name: "icl", Embedding: cloned.XVector));
        }
        for (int i = 0; i < sentences.Count; i++)
            foreach (var (name, embedding) in voices)
            {
                using var scope = NewDisposeScope();
                var request = name == "icl" && icl is { } r
                    ? new SynthesisRequest { Text = sentences[i].Text, Language = sentences[i].Language, SpeakerEmbedding = r.XVector, RefText = r.RefText, RefCodes = r.RefCodes }
                    : Request(sentences[i], embedding);
                var result = synthesizer.Synthesize(request, generation, seed + (ulong)i);
                string wav = Path.Combine(dir, name is null ? $"{i:00}.wav" : $"{i:00}-{SafeName(name)}.wav");
                WavWriter.Write(wav, Waveform.Decode(decoder, result.Codes), Waveform.SampleRate);
                codes.WriteLine(CodesLine(sentences[i].Text, result.Codes));
                clips.Add(new WandbAudio(name is null ? $"eval/sample_{i}" : $"eval/sample_{i}_{SafeName(name)}", wav, Waveform.SampleRate,
                    name is null ? sentences[i].Text : $"{name}: {sentences[i].Text}"));
                audioSeconds += result.AudioSeconds;
            }
        return (clips, string.Create(CultureInfo.InvariantCulture,
            $"eval samples: {clips.Count} clips ({audioSeconds:F1} s of audio) in {dir} ({clock.Elapsed.TotalSeconds:F1} s)"));
    }

    static string SafeName(string name) => string.Concat(name.Select(c => char.IsLetterOrDigit(c) || c is '-' or '_' ? c : '_'));

    /// <summary>{"text", "audio_codes"}: the line `qwen3tts synthesize --codes_out` writes, without an id.</summary>
    static string CodesLine(string text, long[,] codes)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("text", text);
            JsonlTrainingData.WriteCodes(json, codes);
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>The request for a sentence: the training voice's x-vector, non-streaming text (the whole sentence in the prompt).</summary>
    public static SynthesisRequest Request(EvalSentence sentence, float[] voice) =>
        new() { Text = sentence.Text, Language = sentence.Language, SpeakerEmbedding = voice, NonStreaming = true };

    /// <summary>What ICL samples clone from: an ICL record's clip (its x-vector), transcript and codes.</summary>
    static (float[] XVector, string RefText, long[,] RefCodes) IclReference(Qwen3TtsModel model, SftDataSource train, int index)
    {
        var record = train.Records[index];
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var batch = train.Batch([index]);
        var xvector = SftCollate.SpeakerEmbeddings(model.SpeakerEncoder!, batch)[0].to(ScalarType.Float32).cpu().data<float>().ToArray();
        return (xvector, record.RefText!, record.RefCodes!.ToArray());
    }

    static float[] TrainingVoice(Qwen3TtsModel model, SftDataSource train)
    {
        using var scope = NewDisposeScope();
        var mean = new SpeakerEmbeddingMean();
        using (no_grad())
        using (var batch = train.Batch(Enumerable.Range(0, Math.Min(VoiceClips, train.Count)).ToArray()))
            mean.Add("voice", SftCollate.SpeakerEmbeddings(model.SpeakerEncoder!, batch));
        return mean.Mean("voice").data<float>().ToArray();
    }
}
