using System.Buffers;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;
using Qwen3Tts.Model.Config;

namespace Qwen3Tts.Model.Text;

/// <summary>The text tokenizer of the Qwen3-TTS checkpoints, giving the ids of Hugging Face's Qwen2Tokenizer:
/// <list type="number">
/// <item>the added tokens of tokenizer_config.json (&lt;|im_start|&gt; 151644 … &lt;tts_pad&gt; 151671 …) are cut out of
/// the raw text first, matched literally wherever they occur (leftmost, then longest);</item>
/// <item>each remaining segment is NFC-normalized (<see cref="NfcNormalizer"/>),</item>
/// <item>split by the Qwen2 pre-tokenizer regex (<see cref="CodePointRegexPreTokenizer"/>),</item>
/// <item>and each piece is encoded by byte-level BPE from vocab.json and merges.txt
/// (Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/>, which also does steps 2 and 3 through its options).</item>
/// </list>
/// Building one reads a 151k-token vocabulary (a few hundred ms): build it once and share it; encoding and
/// decoding are thread-safe.</summary>
public sealed partial class Qwen3TextTokenizer
{
    /// <summary>The pre-tokenizer regex of Qwen2Tokenizer (transformers' PRETOKENIZE_REGEX).</summary>
    public const string DefaultPreTokenizerPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public const string VocabFileName = "vocab.json";
    public const string MergesFileName = "merges.txt";
    public const string TokenizerConfigFileName = "tokenizer_config.json";

    /// <summary>The embedded reference files (assets/reference) that <see cref="FromEmbeddedReference"/> reads.</summary>
    const string ReferenceVocab = "qwen3-text-tokenizer/vocab.json";
    const string ReferenceMerges = "qwen3-text-tokenizer/merges.txt";
    const string ReferenceTokenizerConfig = "Qwen3-TTS-12Hz-1.7B-Base/tokenizer_config.json";

    [GeneratedRegex(DefaultPreTokenizerPattern, RegexOptions.CultureInvariant)]
    private static partial Regex DefaultPreTokenizerRegex();

    readonly BpeTokenizer _bpe;
    readonly Dictionary<string, int> _vocab;
    readonly Dictionary<string, int> _addedTokens;
    readonly Dictionary<int, string> _addedTokenById;
    readonly SearchValues<string>? _addedTokenSearch;

    Qwen3TextTokenizer(Dictionary<string, int> vocab, IReadOnlyList<string> merges, Dictionary<string, int> addedTokens,
        Regex preTokenizer, string source)
    {
        _vocab = vocab;
        _addedTokens = addedTokens;
        _addedTokenById = addedTokens.ToDictionary(kv => kv.Value, kv => kv.Key);
        _addedTokenSearch = addedTokens.Count == 0 ? null : SearchValues.Create(addedTokens.Keys.ToArray(), StringComparison.Ordinal);
        try
        {
            _bpe = BpeTokenizer.Create(new BpeOptions(vocab)
            {
                Merges = merges,
                ByteLevel = true,
                Normalizer = NfcNormalizer.Instance,
                PreTokenizer = new CodePointRegexPreTokenizer(preTokenizer),
                // Encoding never meets these (they are cut out before BPE); decoding writes them back as text.
                SpecialTokens = addedTokens,
            });
        }
        catch (InvalidOperationException e) // e.g. a merge whose parts or result are not in the vocabulary
        {
            throw new ConfigException($"{source}: {e.Message}");
        }
    }

    /// <summary>The tokenizer of a Qwen3-TTS model directory: vocab.json, merges.txt and tokenizer_config.json.</summary>
    /// <param name="preTokenizerPattern">A .NET regex replacing <see cref="DefaultPreTokenizerPattern"/>.</param>
    public static Qwen3TextTokenizer FromModelDirectory(string dir, string? preTokenizerPattern = null)
    {
        ArgumentNullException.ThrowIfNull(dir);
        if (!Directory.Exists(dir))
            throw new DirectoryNotFoundException($"model directory '{dir}' does not exist");
        string[] names = [VocabFileName, MergesFileName, TokenizerConfigFileName];
        var missing = names.Where(name => !File.Exists(Path.Combine(dir, name))).ToList();
        if (missing.Count > 0)
            throw new FileNotFoundException(
                $"model directory '{dir}' has no {string.Join(" and no ", missing)}: the text tokenizer needs " +
                $"{VocabFileName}, {MergesFileName} and {TokenizerConfigFileName} (as in the released Qwen3-TTS checkpoints)",
                Path.Combine(dir, missing[0]));
        return Load(name => File.OpenRead(Path.Combine(dir, name)),
            VocabFileName, MergesFileName, TokenizerConfigFileName, name => Path.Combine(dir, name), preTokenizerPattern);
    }

    /// <summary>The tokenizer of the released checkpoints, from the reference files embedded in Qwen3Tts.Model
    /// (vocab.json and merges.txt, identical in all three checkpoints; tokenizer_config.json of 1.7B-Base).</summary>
    public static Qwen3TextTokenizer FromEmbeddedReference(string? preTokenizerPattern = null) =>
        Load(Presets.OpenReference, ReferenceVocab, ReferenceMerges, ReferenceTokenizerConfig,
            name => $"embedded reference file '{name}'", preTokenizerPattern);

    static Qwen3TextTokenizer Load(Func<string, Stream> open, string vocabName, string mergesName, string configName,
        Func<string, string> describe, string? preTokenizerPattern)
    {
        var regex = PreTokenizerRegex(preTokenizerPattern);
        Dictionary<string, int> vocab;
        using (var stream = open(vocabName)) vocab = ReadVocab(stream, describe(vocabName));
        List<string> merges;
        using (var stream = open(mergesName)) merges = ReadMerges(stream, describe(mergesName));
        JsonNode? config;
        using (var stream = open(configName)) config = ParseJson(stream, describe(configName));
        var addedTokens = ReadAddedTokens(config, describe(configName));
        return new Qwen3TextTokenizer(vocab, merges, addedTokens, regex, $"{describe(vocabName)} with {describe(mergesName)}");
    }

    static Regex PreTokenizerRegex(string? pattern)
    {
        if (pattern is null || pattern == DefaultPreTokenizerPattern) return DefaultPreTokenizerRegex();
        try
        {
            return new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"pre-tokenizer pattern is not a valid .NET regex: {e.Message}", nameof(pattern), e);
        }
    }

    /// <summary>vocab.json: {"token": id}, ids 0..N-1 (Decode relies on that to reject unknown ids).</summary>
    static Dictionary<string, int> ReadVocab(Stream stream, string source)
    {
        Dictionary<string, int>? vocab;
        try
        {
            vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(stream);
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{source}: expected one JSON object of token: integer id; {e.Message}");
        }
        if (vocab is null || vocab.Count == 0) throw new ConfigException($"{source}: the vocabulary is empty");
        var seen = new bool[vocab.Count];
        foreach (var (token, id) in vocab)
        {
            if (id < 0 || id >= vocab.Count || seen[id])
                throw new ConfigException($"{source}: token '{token}' has id {id}; the ids of a byte-level BPE vocabulary " +
                                          $"are 0..{vocab.Count - 1}, each once");
            seen[id] = true;
        }
        return vocab;
    }

    /// <summary>merges.txt: one "left right" pair a line, by rank; an optional "#version" header; blank lines ignored.</summary>
    static List<string> ReadMerges(Stream stream, string source)
    {
        var merges = new List<string>();
        using var reader = new StreamReader(stream);
        int lineNumber = 0;
        while (reader.ReadLine() is { } line)
        {
            lineNumber++;
            if (line.Length == 0 || (lineNumber == 1 && line.StartsWith("#version", StringComparison.Ordinal))) continue;
            int space = line.IndexOf(' ');
            if (space <= 0 || space == line.Length - 1 || line.IndexOf(' ', space + 1) >= 0)
                throw new ConfigException($"{source}, line {lineNumber}: expected two tokens separated by one space, found '{line}'");
            merges.Add(line);
        }
        return merges;
    }

    static JsonNode? ParseJson(Stream stream, string source)
    {
        try
        {
            return JsonNode.Parse(stream);
        }
        catch (JsonException e)
        {
            throw new ConfigException($"{source}: not valid JSON; {e.Message}");
        }
    }

    /// <summary>tokenizer_config.json's "added_tokens_decoder": {"151644": {"content": "&lt;|im_start|&gt;", ...}}.</summary>
    static Dictionary<string, int> ReadAddedTokens(JsonNode? config, string source)
    {
        if (config is not JsonObject root) throw new ConfigException($"{source}: expected a JSON object");
        var decoder = new JsonFields(root, "", source).Child("added_tokens_decoder", required: false);
        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (key, _) in decoder.Object)
        {
            if (!int.TryParse(key, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id))
                throw decoder.Invalid(key, "is not a token id (a non-negative integer)");
            var token = decoder.Child(key);
            string content = token.String("content");
            if (content.Length == 0) throw token.Invalid("content", "is empty");
            // Hugging Face can also strip spaces around an added token, match it only as a whole word, or match it
            // in the normalized text; the Qwen3-TTS checkpoints use none of that, so it is not implemented.
            foreach (var flag in new[] { "lstrip", "rstrip", "single_word", "normalized" })
                if (token.BoolOr(flag, false))
                    throw token.Invalid(flag, $"is true for '{content}'; only literal matching (lstrip, rstrip, single_word " +
                                              "and normalized all false, as in the Qwen3-TTS checkpoints) is implemented");
            if (!added.TryAdd(content, id))
                throw decoder.Invalid(key, $"repeats the content '{content}' of token {added[content]}");
        }
        return added;
    }

    /// <summary>The added tokens (content → id), matched literally in the text before anything else.</summary>
    public IReadOnlyDictionary<string, int> AddedTokens => _addedTokens;

    /// <summary>Number of ids of the byte-level BPE vocabulary (vocab.json); added tokens come on top.</summary>
    public int VocabularySize => _vocab.Count;

    /// <summary>The ids of the text, as Hugging Face's tokenizer(text)["input_ids"] (no BOS/EOS are added).</summary>
    /// <exception cref="ArgumentException">The text has a lone surrogate, so it is not Unicode text (Hugging Face
    /// cannot take it either; byte-level BPE would encode invented bytes).</exception>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        ThrowOnLoneSurrogate(text);
        // Added tokens are cut out here, not by BpeTokenizer: it normalizes the whole text before its pre-tokenizer
        // looks for special tokens, so NFC could fuse a token's '>' with a following U+0338 into '≯' and lose the
        // token. Hugging Face matches added tokens in the raw text and normalizes only what lies between them.
        var ids = new List<int>(text.Length / 3 + 4);
        ReadOnlySpan<char> rest = text;
        while (!rest.IsEmpty)
        {
            int at = _addedTokenSearch is null ? -1 : rest.IndexOfAny(_addedTokenSearch);
            var segment = at < 0 ? rest : rest[..at];
            if (!segment.IsEmpty) ids.AddRange(_bpe.EncodeToIds(segment, considerPreTokenization: true, considerNormalization: true));
            if (at < 0) break;
            var (token, id) = LongestAddedTokenAt(rest[at..]);
            ids.Add(id);
            rest = rest[(at + token.Length)..];
        }
        return ids;
    }

    static void ThrowOnLoneSurrogate(string text)
    {
        int i = text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF');
        if (i < 0) return;
        for (; i < text.Length; i++)
        {
            if (!char.IsSurrogate(text[i])) continue;
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            throw new ArgumentException($"text has a lone surrogate U+{(int)text[i]:X4} at index {i}; it is not valid Unicode text", nameof(text));
        }
    }

    (string Token, int Id) LongestAddedTokenAt(ReadOnlySpan<char> text)
    {
        (string Token, int Id) best = ("", -1);
        foreach (var (token, id) in _addedTokens)
            if (token.Length > best.Token.Length && text.StartsWith(token, StringComparison.Ordinal))
                best = (token, id);
        return best;
    }

    /// <summary>The text of the ids, added tokens included, invalid UTF-8 replaced by U+FFFD (Hugging Face's
    /// decode with skip_special_tokens=False and errors="replace").</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is neither in the vocabulary nor an added token.</exception>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var list = ids as IReadOnlyList<int> ?? ids.ToList();
        foreach (int id in list)
            if ((uint)id >= (uint)_vocab.Count && !_addedTokenById.ContainsKey(id))
                throw new ArgumentOutOfRangeException(nameof(ids), id,
                    $"token id {id} is neither in the vocabulary (0..{_vocab.Count - 1}) nor an added token");
        return _bpe.Decode(list, considerSpecialTokens: true);
    }

    /// <summary>The text Qwen3-TTS feeds the talker for one utterance: an assistant turn left open for speech.</summary>
    public static string ChatText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return $"<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n";
    }

    /// <summary><see cref="Encode"/> of <see cref="ChatText"/>.</summary>
    public IReadOnlyList<int> EncodeChat(string text) => Encode(ChatText(text));

    /// <summary>The id of an added token or a vocabulary token (byte-level form, e.g. "Ġthe"); null if neither.</summary>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (_addedTokens.TryGetValue(token, out int id) || _vocab.TryGetValue(token, out id)) return id;
        return null;
    }
}
