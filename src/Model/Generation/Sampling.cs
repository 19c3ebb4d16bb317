namespace Qwen3Tts.Model.Generation;

/// <summary>A small seeded generator (SplitMix64) owned by one synthesis, so a seed gives the same codes on every
/// machine and run, whatever else uses TorchSharp's global generator.</summary>
public sealed class SamplingRng(ulong seed)
{
    ulong state = seed;

    public ulong NextUInt64()
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));
}

/// <summary>The logits processors and warpers the reference's transformers generate applies, on one row of logits
/// (fp32, in place), and the final pick. Order (as transformers builds the list): repetition penalty, min-new-tokens
/// eos mask, suppressed tokens; then, only when sampling, temperature, top-k, top-p; then softmax and a draw, or
/// argmax when not sampling.</summary>
public static class Sampling
{
    /// <summary>transformers' RepetitionPenaltyLogitsProcessor: each id seen before (once, however often it occurred)
    /// has its logit divided by the penalty if positive, multiplied if negative.</summary>
    public static void ApplyRepetitionPenalty(float[] logits, IEnumerable<int> previous, double penalty)
    {
        if (penalty == 1.0) return;
        foreach (int id in previous.Distinct())
        {
            float s = logits[id];
            logits[id] = s < 0 ? (float)(s * penalty) : (float)(s / penalty);
        }
    }

    /// <summary>Sets the logits of <paramref name="ids"/> to -inf (SuppressTokensLogitsProcessor, and the eos mask
    /// of MinNewTokensLengthLogitsProcessor).</summary>
    public static void Suppress(float[] logits, IEnumerable<int> ids)
    {
        foreach (int id in ids) logits[id] = float.NegativeInfinity;
    }

    public static void ApplyTemperature(float[] logits, double temperature)
    {
        if (temperature == 1.0) return;
        for (int i = 0; i < logits.Length; i++) logits[i] = (float)(logits[i] / temperature);
    }

    /// <summary>TopKLogitsWarper: everything below the k-th largest logit becomes -inf (ties with it stay). k = 0 is off.</summary>
    public static void TopK(float[] logits, int k)
    {
        if (k <= 0 || k >= logits.Length) return;
        var sorted = (float[])logits.Clone();
        Array.Sort(sorted);
        float kth = sorted[^k];
        for (int i = 0; i < logits.Length; i++)
            if (logits[i] < kth) logits[i] = float.NegativeInfinity;
    }

    /// <summary>TopPLogitsWarper: sorted ascending, the tokens whose cumulative probability stays at or below 1 - p
    /// are removed; the most likely token always stays. p = 1 is off.</summary>
    public static void TopP(float[] logits, double p)
    {
        if (p >= 1.0) return;
        var order = Enumerable.Range(0, logits.Length).ToArray();
        var keys = (float[])logits.Clone();
        Array.Sort(keys, order); // ascending
        var probs = Softmax(keys);
        double cumulative = 0;
        for (int j = 0; j < order.Length - 1; j++) // the last (most likely) is always kept
        {
            cumulative += probs[j];
            if (cumulative <= 1 - p) logits[order[j]] = float.NegativeInfinity;
        }
    }

    /// <summary>Index of the largest logit; the first one on ties (torch.argmax).</summary>
    public static int Argmax(float[] logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }

    /// <summary>A draw from softmax(logits): inverse CDF with one uniform number.</summary>
    public static int Draw(float[] logits, SamplingRng rng)
    {
        var probs = Softmax(logits);
        double u = rng.NextDouble();
        double cumulative = 0;
        int last = -1;
        for (int i = 0; i < probs.Length; i++)
        {
            if (probs[i] <= 0) continue;
            cumulative += probs[i];
            last = i;
            if (u < cumulative) return i;
        }
        if (last < 0) throw new InvalidOperationException("every token was removed: no token has a finite logit");
        return last; // u fell past the sum's rounding
    }

    /// <summary>Applies the warpers of <paramref name="s"/> (temperature, top-k, top-p when sampling) and picks a token.
    /// The penalty and masks must already be applied (<see cref="ApplyRepetitionPenalty"/>, <see cref="Suppress"/>).</summary>
    public static int Pick(float[] logits, SamplingSettings s, SamplingRng rng)
    {
        if (!s.DoSample) return Argmax(logits);
        ApplyTemperature(logits, s.Temperature);
        TopK(logits, s.TopK);
        TopP(logits, s.TopP);
        return Draw(logits, rng);
    }

    static double[] Softmax(float[] logits)
    {
        float max = float.NegativeInfinity;
        foreach (float x in logits) if (x > max) max = x;
        if (float.IsNegativeInfinity(max)) throw new InvalidOperationException("every token was removed: no token has a finite logit");
        var p = new double[logits.Length];
        double sum = 0;
        for (int i = 0; i < logits.Length; i++) sum += p[i] = Math.Exp((double)logits[i] - max);
        for (int i = 0; i < p.Length; i++) p[i] /= sum;
        return p;
    }
}
