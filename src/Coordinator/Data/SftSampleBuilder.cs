using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Sft;
using Qwen3Tts.Model.Text;
using static TorchSharp.torch;

namespace Qwen3Tts.Coordinator.Data;

/// <summary>Turns a <see cref="TrainingRecord"/> into an <see cref="SftSample"/>, as the reference dataset's __getitem__:
/// the chat ids (the record's <c>text_ids</c>, else the tokenized chat text) and the reference clip's log-mel.</summary>
public sealed class SftSampleBuilder
{
    readonly Qwen3TextTokenizer tokenizer;
    readonly Func<TrainingRecord, float[]> loadMono24k;
    readonly MelSpectrogram mel;
    readonly Func<TrainingRecord, int?> language;
    readonly Func<TrainingRecord, (IReadOnlyList<int> RefTextIds, long[,] RefCodes)?> icl;

    /// <param name="tokenizer">tokenizes <see cref="TrainingRecord.Text"/> when the record has no text_ids.</param>
    /// <param name="loadMono24k">reads a clip file (<see cref="TrainingRecord.RefAudio"/>) as mono float samples at
    /// 24 kHz (the mel front end's rate), resampling if needed.</param>
    /// <param name="mel">the mel front end; the reference's 24 kHz, 128-band settings by default.</param>
    public SftSampleBuilder(Qwen3TextTokenizer tokenizer, Func<string, float[]> loadMono24k, MelSpectrogram? mel = null)
        : this(tokenizer, mel, r => loadMono24k(r.RefAudio), null, null) { }

    SftSampleBuilder(Qwen3TextTokenizer tokenizer, MelSpectrogram? mel, Func<TrainingRecord, float[]> loadMono24k, Func<TrainingRecord, int?>? language,
        Func<TrainingRecord, (IReadOnlyList<int>, long[,])?>? icl)
    {
        this.tokenizer = tokenizer;
        this.loadMono24k = loadMono24k;
        this.mel = mel ?? new MelSpectrogram();
        this.language = language ?? (_ => null);
        this.icl = icl ?? (_ => null);
    }

    /// <summary>A builder that loads each record's clip itself, so clips carried inline
    /// (<see cref="TrainingRecord.RefAudioBytes"/>) work: <see cref="LoadMono24k(TrainingRecord)"/> is the usual loader.</summary>
    /// <param name="language">the codec language row each record trains with (<see cref="LanguageChoice.IdOf(TrainingRecord)"/>);
    /// null: every record without (the auto prefix).</param>
    /// <param name="icl">for a record that trains on the ICL prompt, its reference transcript's turn ids and its clip's codes; null otherwise.</param>
    public static SftSampleBuilder ForRecords(Qwen3TextTokenizer tokenizer, Func<TrainingRecord, float[]> loadMono24k, MelSpectrogram? mel = null,
        Func<TrainingRecord, int?>? language = null, Func<TrainingRecord, (IReadOnlyList<int> RefTextIds, long[,] RefCodes)?>? icl = null) =>
        new(tokenizer, mel, loadMono24k, language, icl);

    /// <summary>The clip of a record as mono 24 kHz samples: its inline WAV/FLAC/MP3 bytes, else the file at RefAudio.</summary>
    public static float[] LoadMono24k(TrainingRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        return record.RefAudioBytes is null
            ? AudioFile.LoadMono24k(record.RefAudio).Samples
            : AudioFile.DecodeMono24k(record.RefAudioBytes, record.RefAudio).Samples;
    }

    /// <summary>Names a record's clip for caching: its path, or for inline bytes a hash of them (rows of one speaker
    /// usually carry the same clip).</summary>
    public static string ClipKey(TrainingRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        return record.RefAudioBytes is null ? record.RefAudio
            : "sha256:" + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(record.RefAudioBytes));
    }

    /// <summary>The sample for <paramref name="record"/>; its RefMel is [frames, 128] float32 on the CPU, owned by the caller.
    /// Throws <see cref="DataException"/> naming the record when the reference clip cannot be read or is too short.</summary>
    public SftSample Build(TrainingRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        var ids = record.TextIds ?? tokenizer.EncodeChat(record.Text);

        float[] wav;
        try { wav = loadMono24k(record); }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or NotSupportedException)
        {
            // The audio readers' messages already start with the file; say it once.
            string why = e.Message.StartsWith(record.RefAudio, StringComparison.Ordinal) ? e.Message[record.RefAudio.Length..].TrimStart(':', ' ') : e.Message;
            throw new DataException(record.Source, record.Line, "ref_audio", $"cannot read '{record.RefAudio}': {why}");
        }
        if (wav.Length < mel.Settings.MinSamples)
            throw new DataException(record.Source, record.Line, "ref_audio",
                $"'{record.RefAudio}' has {wav.Length} samples; the mel front end needs at least {mel.Settings.MinSamples} at {mel.Settings.SampleRate} Hz");

        using var scope = NewDisposeScope();
        // [1, samples] -> [1, 128, frames] -> [frames, 128]
        var refMel = mel.Compute(tensor(wav).unsqueeze(0)).squeeze(0).transpose(0, 1).contiguous();
        var reference = icl(record);
        return new SftSample(ids, record.AudioCodes.ToArray(), refMel.MoveToOuterDisposeScope(), language(record), reference?.RefTextIds, reference?.RefCodes);
    }
}
