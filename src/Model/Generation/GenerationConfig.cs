using System.Text.Json;
using System.Text.Json.Nodes;
using Qwen3Tts.Model.Config;

namespace Qwen3Tts.Model.Generation;

/// <summary>Sampling controls of generation_config.json, with the keys' names. A key the file lacks takes the
/// reference wrapper's hard default (qwen3_tts_model.py, _merge_generate_kwargs: max_new_tokens 2048 there, while
/// the released files say 8192). Keys other than these are ignored, as the reference ignores them.
/// <see cref="MinNewTokens"/> is hard-coded to 2 by the reference's generate; the file may override it here.</summary>
public sealed record GenerationConfig(
    bool DoSample = true,
    int TopK = 50,
    double TopP = 1.0,
    double Temperature = 0.9,
    double RepetitionPenalty = 1.05,
    bool SubtalkerDoSample = true,
    int SubtalkerTopK = 50,
    double SubtalkerTopP = 1.0,
    double SubtalkerTemperature = 0.9,
    int MaxNewTokens = 2048,
    int MinNewTokens = 2)
{
    public const string FileName = "generation_config.json";

    /// <summary>The talker's sampling settings (codebook 0).</summary>
    public SamplingSettings Talker => new(DoSample, TopK, TopP, Temperature, RepetitionPenalty);

    /// <summary>The code predictor's (codebooks 1..15): no repetition penalty, as its own generation config has 1.0.</summary>
    public SamplingSettings Subtalker => new(SubtalkerDoSample, SubtalkerTopK, SubtalkerTopP, SubtalkerTemperature, 1.0);

    /// <summary>Reads generation_config.json; errors name the file and key.</summary>
    public static GenerationConfig Load(string path)
    {
        if (!File.Exists(path)) throw new ConfigException($"{path}: no such generation config");
        JsonNode? node;
        try { node = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new ConfigException($"{path}: not valid JSON (line {e.LineNumber + 1}): {e.Message}"); }
        if (node is not JsonObject obj) throw new ConfigException($"{path}: the top level must be a JSON object");
        return Parse(obj, path);
    }

    /// <summary>The model directory's generation_config.json, or the defaults when it has none.</summary>
    public static GenerationConfig FromModelDirectory(string dir)
    {
        string path = Path.Combine(dir, FileName);
        return File.Exists(path) ? Load(path) : new GenerationConfig();
    }

    public static GenerationConfig Parse(JsonObject obj, string source)
    {
        var f = new JsonFields(obj, "", source);
        var d = new GenerationConfig();
        var c = new GenerationConfig(
            DoSample: f.BoolOr("do_sample", d.DoSample),
            TopK: f.IntOr("top_k", d.TopK),
            TopP: f.DoubleOr("top_p", d.TopP),
            Temperature: f.DoubleOr("temperature", d.Temperature),
            RepetitionPenalty: f.DoubleOr("repetition_penalty", d.RepetitionPenalty),
            SubtalkerDoSample: f.BoolOr("subtalker_dosample", d.SubtalkerDoSample),
            SubtalkerTopK: f.IntOr("subtalker_top_k", d.SubtalkerTopK),
            SubtalkerTopP: f.DoubleOr("subtalker_top_p", d.SubtalkerTopP),
            SubtalkerTemperature: f.DoubleOr("subtalker_temperature", d.SubtalkerTemperature),
            MaxNewTokens: f.IntOr("max_new_tokens", d.MaxNewTokens),
            MinNewTokens: f.IntOr("min_new_tokens", d.MinNewTokens));
        c.Validate(source);
        return c;
    }

    /// <summary>Throws a <see cref="ConfigException"/> naming <paramref name="source"/> and the first bad key.</summary>
    public GenerationConfig Validate(string source)
    {
        void Check(bool ok, string key, object value, string rule)
        {
            if (!ok) throw new ConfigException($"{source}: '{key}' is {value}; {rule}");
        }
        Check(TopK >= 0, "top_k", TopK, "it must be 0 (off) or positive");
        Check(SubtalkerTopK >= 0, "subtalker_top_k", SubtalkerTopK, "it must be 0 (off) or positive");
        Check(TopP > 0 && TopP <= 1, "top_p", TopP, "it must be in (0, 1]");
        Check(SubtalkerTopP > 0 && SubtalkerTopP <= 1, "subtalker_top_p", SubtalkerTopP, "it must be in (0, 1]");
        Check(Temperature > 0 && double.IsFinite(Temperature), "temperature", Temperature, "it must be positive");
        Check(SubtalkerTemperature > 0 && double.IsFinite(SubtalkerTemperature), "subtalker_temperature", SubtalkerTemperature, "it must be positive");
        Check(RepetitionPenalty > 0 && double.IsFinite(RepetitionPenalty), "repetition_penalty", RepetitionPenalty, "it must be positive (1.0 = off)");
        Check(MaxNewTokens >= 1, "max_new_tokens", MaxNewTokens, "it must be at least 1");
        Check(MinNewTokens >= 0, "min_new_tokens", MinNewTokens, "it must not be negative");
        return this;
    }
}

/// <summary>What one sampler does with a logits row (transformers' processors and warpers, in their order):
/// repetition penalty, then, when sampling, temperature, top-k (0 = off) and top-p (1.0 = off).</summary>
public sealed record SamplingSettings(bool DoSample, int TopK, double TopP, double Temperature, double RepetitionPenalty);
