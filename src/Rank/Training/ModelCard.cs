using System.Globalization;
using System.Text;

namespace Qwen3Tts.Rank.Training;

/// <summary>What a published checkpoint's card says: where it came from (base model, dataset), what it speaks (voices,
/// languages), how far it trained and how well (losses), and how it was trained (the command line, secrets left out).</summary>
/// <param name="Folder">"best" or "last".</param>
/// <param name="BaseModel">the base model's Hub id, or its folder name when it was local.</param>
/// <param name="SpeakLanguage">the language to speak with in the card's examples: the run's one language when the model has
/// a tag for it (codec_language_id), else auto (the prompt such data trained with).</param>
public sealed record ModelCardFacts(
    string RepoId,
    string Folder,
    string BaseModel,
    bool BaseModelIsId,
    string? DatasetId,
    IReadOnlyList<string> Languages,
    IReadOnlyList<string> Speakers,
    long Step,
    long TotalSteps,
    int Epoch,
    int Epochs,
    double? BestEvalLoss,
    long? BestEvalStep,
    double? LastTrainLoss,
    string Batch,
    string Schedule,
    string LossAlignment,
    string CommandLine,
    string SpeakLanguage = "auto");

/// <summary>The README.md of a published model: the Hub's YAML metadata (base_model, datasets, language, library_name,
/// pipeline_tag, tags) and a body with the voices, the training numbers and how to speak with it.</summary>
public static class ModelCard
{
    public const string FileName = "README.md";

    /// <summary>ISO 639-1 codes of the languages Qwen3-TTS names (and of Hausa, the mission's first corpus), for the
    /// card's metadata; a language without one is still named in the body.</summary>
    static readonly Dictionary<string, string> IsoCodes = new(StringComparer.OrdinalIgnoreCase)
    {
        ["chinese"] = "zh", ["english"] = "en", ["japanese"] = "ja", ["korean"] = "ko", ["german"] = "de", ["french"] = "fr",
        ["russian"] = "ru", ["portuguese"] = "pt", ["spanish"] = "es", ["italian"] = "it", ["hausa"] = "ha",
        ["beijing_dialect"] = "zh", ["sichuan_dialect"] = "zh",
    };

    public static string Render(ModelCardFacts f)
    {
        var md = new StringBuilder();
        string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
        md.Append("---\n");
        if (f.BaseModelIsId) md.Append($"base_model: {f.BaseModel}\n");
        if (f.DatasetId is { } dataset) md.Append($"datasets:\n- {dataset}\n");
        var codes = f.Languages.Select(l => IsoCodes.GetValueOrDefault(l)).OfType<string>().Distinct().ToList();
        if (codes.Count > 0) md.Append("language:\n").Append(string.Concat(codes.Select(c => $"- {c}\n")));
        md.Append("library_name: qwen-tts\npipeline_tag: text-to-speech\ntags:\n- qwen3-tts\n- text-to-speech\n- custom-voice\n- qwen3tts-distributed\n---\n\n");

        md.Append($"# {f.RepoId}\n\n");
        string from = f.BaseModelIsId ? $"[{f.BaseModel}](https://huggingface.co/{f.BaseModel})" : $"`{f.BaseModel}`";
        string on = f.DatasetId is { } id ? $" on [{id}](https://huggingface.co/datasets/{id})" : "";
        string which = f.Folder == CheckpointRotation.Best
            ? Inv($"the checkpoint with the lowest validation loss ({f.BestEvalLoss:F4}, step {f.BestEvalStep})")
            : Inv($"the weights at the end of training (step {f.Step})");
        md.Append($"A Qwen3-TTS-12Hz custom-voice model fine-tuned from {from}{on} with Qwen3Tts.Distributed: {which}. ");
        md.Append("It speaks by speaker name, with no reference clip.\n\n");

        md.Append("## Voices\n\n");
        md.Append(string.Concat(f.Speakers.Select(s => $"- `{s}`\n")));
        if (f.Languages.Count > 0) md.Append($"\nTrained on {string.Join(", ", f.Languages)} speech.\n");

        md.Append("\n## Training\n\n| | |\n|---|---|\n");
        md.Append(Inv($"| checkpoint | {f.Folder}/ at step {f.Step} of {f.TotalSteps} (epoch {Math.Min(f.Epoch + 1, f.Epochs)} of {f.Epochs}) |\n"));
        if (f.BestEvalLoss is { } eval) md.Append(Inv($"| validation loss | {eval:F4} (best, step {f.BestEvalStep}) |\n"));
        if (f.LastTrainLoss is { } train) md.Append(Inv($"| training loss | {train:F4} (last step) |\n"));
        md.Append($"| batch | {f.Batch} |\n| learning rate | {f.Schedule} |\n| loss alignment | {f.LossAlignment} |\n");

        string speaker = f.Speakers.FirstOrDefault() ?? "";
        string language = f.SpeakLanguage;
        md.Append("\n## Use\n\nWith the `qwen-tts` package:\n\n```python\nimport soundfile as sf\nfrom qwen_tts import Qwen3TTSModel\n\n");
        md.Append($"model = Qwen3TTSModel.from_pretrained(\"{f.RepoId}\")\n");
        md.Append($"wavs, sr = model.generate_custom_voice(text=\"...\", language=\"{language}\", speaker=\"{speaker}\")\nsf.write(\"out.wav\", wavs[0], sr)\n```\n\n");
        md.Append($"With Qwen3Tts.Distributed:\n\n```bash\nqwen3tts synthesize --model {f.RepoId} --speaker {speaker} --language {language} --text \"...\" --out out.wav\n```\n");

        md.Append($"\n## Command line\n\n```bash\n{f.CommandLine}\n```\n");
        return md.ToString();
    }
}
