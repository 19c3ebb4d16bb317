using System.Text;
using Microsoft.ML.Tokenizers;

namespace Qwen3Tts.Model.Text;

/// <summary>Unicode Normalization Form C (UAX #15: canonical decomposition, canonical ordering, canonical
/// composition), the normalizer of the Qwen2 tokenizer, as a Microsoft.ML.Tokenizers <see cref="Normalizer"/>.</summary>
/// <remarks>Own code because neither .NET nor Microsoft.ML.Tokenizers can do it here: this repository builds
/// with InvariantGlobalization=true (Directory.Build.props), where .NET has no ICU and string.Normalize returns
/// its input unchanged ("e\u0301" stays two chars), and Microsoft.ML.Tokenizers has no NFC normalizer of its own.
/// Tables: NfcData.g.cs, written by tools/gen_nfc_data.py. Lone surrogates pass through unchanged.</remarks>
public sealed class NfcNormalizer : Normalizer
{
    public static NfcNormalizer Instance { get; } = new();

    /// <summary>The Unicode version of the tables.</summary>
    public static string UnicodeVersion => NfcData.UnicodeVersion;

    // Hangul syllables compose and decompose arithmetically (The Unicode Standard, section 3.12).
    const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    readonly Dictionary<int, byte> _combiningClass = new();
    readonly Dictionary<int, (int First, int Second)> _decomposition = new();
    readonly Dictionary<long, int> _composition = new();

    /// <summary>Code points that can make a text differ from its NFC: a non-zero combining class, a possible
    /// second half of a composition, or a decomposition that does not recompose (NFC_Quick_Check != Yes).
    /// A text without any of them is already in NFC.</summary>
    readonly HashSet<int> _unstable = new();
    readonly int _firstUnstable;

    NfcNormalizer()
    {
        var runs = NfcData.CombiningClassRuns;
        for (int i = 0; i < runs.Length; i += 3)
            for (int cp = runs[i]; cp <= runs[i + 1]; cp++)
            {
                _combiningClass[cp] = (byte)runs[i + 2];
                _unstable.Add(cp);
            }

        var excluded = new HashSet<int>();
        foreach (int cp in NfcData.CompositionExclusions) excluded.Add(cp);

        var decompositions = NfcData.Decompositions;
        for (int i = 0; i < decompositions.Length; i += 3)
        {
            int cp = decompositions[i], first = decompositions[i + 1], second = decompositions[i + 2];
            _decomposition[cp] = (first, second);
            if (second != 0 && !excluded.Contains(cp))
            {
                _composition[PairKey(first, second)] = cp;
                _unstable.Add(second);
            }
            else
            {
                _unstable.Add(cp); // a singleton or an exclusion never survives NFC
            }
        }
        for (int v = VBase; v < VBase + VCount; v++) _unstable.Add(v);
        for (int t = TBase + 1; t < TBase + TCount; t++) _unstable.Add(t);
        _firstUnstable = _unstable.Min();
    }

    public override string Normalize(string original)
    {
        ArgumentNullException.ThrowIfNull(original);
        return IsSurelyNormalized(original) ? original : Compose(original);
    }

    public override string Normalize(ReadOnlySpan<char> original) =>
        IsSurelyNormalized(original) ? original.ToString() : Compose(original);

    bool IsSurelyNormalized(ReadOnlySpan<char> text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c < _firstUnstable) continue;
            int cp = c;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                cp = char.ConvertToUtf32(c, text[++i]);
            if (_unstable.Contains(cp)) return false;
        }
        return true;
    }

    string Compose(ReadOnlySpan<char> text)
    {
        // 1. Full canonical decomposition.
        var cps = new List<int>(text.Length + 8);
        for (int i = 0; i < text.Length; i++)
        {
            int cp = text[i];
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                cp = char.ConvertToUtf32(text[i], text[++i]);
            Decompose(cp, cps);
        }

        // 2. Canonical ordering: a stable sort by combining class of every run of non-starters.
        for (int i = 1; i < cps.Count; i++)
        {
            int cp = cps[i], ccc = CombiningClass(cp);
            if (ccc == 0) continue;
            int j = i;
            for (; j > 0 && CombiningClass(cps[j - 1]) > ccc; j--) cps[j] = cps[j - 1];
            cps[j] = cp;
        }

        // 3. Canonical composition. Every code point after the last starter is a non-starter, and they are
        // ordered, so a code point is blocked from the starter exactly when the one before it is a
        // non-starter of the same or a higher class (or it is itself a starter and not adjacent).
        int count = 0, starter = -1;
        for (int i = 0; i < cps.Count; i++)
        {
            int cp = cps[i], ccc = CombiningClass(cp);
            if (starter >= 0 && (count - 1 == starter || CombiningClass(cps[count - 1]) < ccc)
                && TryCompose(cps[starter], cp, out int composite))
            {
                cps[starter] = composite;
                continue;
            }
            if (ccc == 0) starter = count;
            cps[count++] = cp;
        }

        var sb = new StringBuilder(count + 4);
        for (int i = 0; i < count; i++)
        {
            int cp = cps[i];
            if (cp <= 0xFFFF) sb.Append((char)cp); // BMP, or a lone surrogate kept as it was
            else sb.Append(char.ConvertFromUtf32(cp));
        }
        return sb.ToString();
    }

    void Decompose(int cp, List<int> into)
    {
        int s = cp - SBase;
        if (s >= 0 && s < SCount)
        {
            into.Add(LBase + s / NCount);
            into.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) into.Add(TBase + s % TCount);
        }
        else if (_decomposition.TryGetValue(cp, out var d))
        {
            Decompose(d.First, into);
            if (d.Second != 0) Decompose(d.Second, into);
        }
        else
        {
            into.Add(cp);
        }
    }

    bool TryCompose(int first, int second, out int composite)
    {
        int l = first - LBase, v = second - VBase;
        if (l >= 0 && l < LCount && v >= 0 && v < VCount)
        {
            composite = SBase + (l * VCount + v) * TCount;
            return true;
        }
        int s = first - SBase, t = second - TBase;
        if (s >= 0 && s < SCount && s % TCount == 0 && t > 0 && t < TCount)
        {
            composite = first + t;
            return true;
        }
        return _composition.TryGetValue(PairKey(first, second), out composite);
    }

    int CombiningClass(int cp) => cp < _firstUnstable ? 0 : _combiningClass.GetValueOrDefault(cp);

    static long PairKey(int first, int second) => ((long)first << 21) | (uint)second;
}
