using System.Text;
using Microsoft.ML.Tokenizers;

namespace Qwen3Tts.Model.Text;

/// <summary>Unicode Normalization Form C, the normalizer of the Qwen2 tokenizer, as a
/// Microsoft.ML.Tokenizers <see cref="Normalizer"/> (the library has none of its own). Uses the
/// runtime's ICU, so the build must not set InvariantGlobalization (where string.Normalize is a no-op).</summary>
public sealed class NfcNormalizer : Normalizer
{
    public static NfcNormalizer Instance { get; } = new();

    NfcNormalizer() { }

    public override string Normalize(string original) =>
        original.IsNormalized(NormalizationForm.FormC) ? original : original.Normalize(NormalizationForm.FormC);

    public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
}
