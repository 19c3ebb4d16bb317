using System.Text.Json;
using System.Text.Json.Nodes;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Text;

namespace Qwen3Tts.Tests.Text;

/// <summary>One case of tests/data/expected_ids.json.</summary>
public sealed record ReferenceCase(int Index, string Text, int[] Ids);

/// <summary>Shared tokenizers (built once: each reads a 151k-token vocabulary) and the reference ids.</summary>
public static class TextTestSupport
{
    /// <summary>The ids in expected_ids.json come from the Qwen3 text tokenizer (its "source" says so), whose added
    /// tokens end at &lt;/think&gt; 151668. Qwen3-TTS adds 151669..151675 (&lt;|audio_start|&gt;, &lt;tts_pad&gt;, ...):
    /// there those strings are single tokens, in the reference they were plain text.</summary>
    public const int LastQwen3AddedTokenId = 151668;

    static readonly Lazy<Qwen3TextTokenizer> s_qwen3Tts = new(() => Qwen3TextTokenizer.FromEmbeddedReference());
    static readonly Lazy<Qwen3TextTokenizer> s_qwen3 = new(() =>
    {
        using var dir = new TempModelDirectory(config =>
        {
            var decoder = config["added_tokens_decoder"]!.AsObject();
            foreach (var key in decoder.Select(kv => kv.Key).Where(k => int.Parse(k) > LastQwen3AddedTokenId).ToList())
                decoder.Remove(key);
        });
        return Qwen3TextTokenizer.FromModelDirectory(dir.Path);
    });
    static readonly Lazy<JsonDocument> s_reference = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "data", "expected_ids.json"))));

    /// <summary>The tokenizer of the Qwen3-TTS checkpoints (the product).</summary>
    public static Qwen3TextTokenizer Qwen3Tts => s_qwen3Tts.Value;

    /// <summary>The same vocabulary and merges with only the added tokens of the Qwen3 text tokenizer.</summary>
    public static Qwen3TextTokenizer Qwen3 => s_qwen3.Value;

    public static string ReferencePattern => s_reference.Value.RootElement.GetProperty("pre_tokenizer_pattern").GetString()!;

    public static IReadOnlyList<ReferenceCase> ReferenceCases =>
        s_reference.Value.RootElement.GetProperty("cases").EnumerateArray()
            .Select((c, i) => new ReferenceCase(i, c.GetProperty("text").GetString()!,
                c.GetProperty("ids").EnumerateArray().Select(id => id.GetInt32()).ToArray()))
            .ToList();

    /// <summary>The added tokens Qwen3-TTS has and the Qwen3 text tokenizer had not.</summary>
    public static IEnumerable<string> TtsOnlyAddedTokens =>
        Qwen3Tts.AddedTokens.Where(kv => kv.Value > LastQwen3AddedTokenId).Select(kv => kv.Key);
}

/// <summary>A temporary model directory holding the reference vocab.json, merges.txt and tokenizer_config.json;
/// deleted on Dispose.</summary>
public sealed class TempModelDirectory : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("qwen3tts-tokenizer-").FullName;

    public TempModelDirectory(Action<JsonObject>? editConfig = null, bool withMerges = true)
    {
        File.WriteAllText(FilePath("vocab.json"), Presets.ReadReference("qwen3-text-tokenizer/vocab.json"));
        if (withMerges) File.WriteAllText(FilePath("merges.txt"), Presets.ReadReference("qwen3-text-tokenizer/merges.txt"));
        var config = JsonNode.Parse(Presets.ReadReference("Qwen3-TTS-12Hz-1.7B-Base/tokenizer_config.json"))!.AsObject();
        editConfig?.Invoke(config);
        File.WriteAllText(FilePath("tokenizer_config.json"), config.ToJsonString());
    }

    public string FilePath(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
