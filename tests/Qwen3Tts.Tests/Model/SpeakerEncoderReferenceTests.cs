using System.Text.Json;
using Qwen3Tts.Model;
using Qwen3Tts.Model.Audio;
using Qwen3Tts.Model.Config;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Model;

/// <summary>Agreement with numbers the Python reference produced (tests/data/speaker_golden.json, written by
/// tests/data/make_speaker_golden.py from the reference's own modules and librosa's own filterbank code):
/// the filterbank to the bit (but one 1.8e-17 weight), the log-mels and the tiny encoder's embeddings to float32 round-off.</summary>
public class SpeakerEncoderReferenceTests
{
    static readonly JsonElement Golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "data", "speaker_golden.json"))).RootElement;

    // The clips make_speaker_golden.py builds, from the same formulas: [2, 6000].
    static Tensor Clips()
    {
        var data = new float[2 * 6000];
        for (int n = 0; n < 6000; n++)
        {
            data[n] = (float)(0.3 * Math.Sin(2 * Math.PI * 220 * n / 24000) + 0.2 * Math.Sin(2 * Math.PI * 1375 * n / 24000 + 0.5) + 0.05 * Math.Sin((double)n * n * 1e-5));
            data[6000 + n] = (float)(0.4 * Math.Sin(2 * Math.PI * 3100 * n / 24000) * Math.Cos(2 * Math.PI * 3 * n / 24000) + 0.1 * Math.Sin(2 * Math.PI * 90 * n / 24000));
        }
        return tensor(data, new long[] { 2, 6000 });
    }

    static float[] Flatten(JsonElement e) =>
        e.ValueKind == JsonValueKind.Array ? e.EnumerateArray().SelectMany(Flatten).ToArray() : new[] { e.GetSingle() };

    [Fact]
    public void Filterbank_equals_librosa_to_the_last_float32_bit_but_one_weight()
    {
        // numpy's SIMD log(6.4) is one ulp off glibc's (which .NET's Math.Log uses), so librosa's top mel point is
        // 12000.000000000002 Hz where ours is 12000: the last filter keeps a 1.8e-17 weight at the Nyquist bin that
        // ours rounds to 0. Every other one of the 65,664 weights is bit-identical.
        var bank = MelSpectrogram.SlaneyFilterbank(24000, 1024, 128, 0, 12000);
        var expected = new float[128, 513];
        foreach (var entry in Golden.GetProperty("filterbank_nonzero").EnumerateArray())
            expected[entry[0].GetInt32(), entry[1].GetInt32()] = entry[2].GetSingle();
        var mismatches = new List<(int Band, int Bin, float Ours, float Librosa)>();
        for (int i = 0; i < 128; i++)
            for (int k = 0; k < 513; k++)
                if (BitConverter.SingleToInt32Bits(bank[i, k]) != BitConverter.SingleToInt32Bits(expected[i, k]))
                    mismatches.Add((i, k, bank[i, k], expected[i, k]));
        var only = Assert.Single(mismatches);
        Assert.Equal((127, 512, 0f), (only.Band, only.Bin, only.Ours));
        Assert.True(only.Librosa < 1e-16f);
    }

    [Fact]
    public void Log_mels_match_the_reference_mel_spectrogram()
    {
        // Two float32 FFTs (PyTorch 1.13's and libtorch's) differ by round-off relative to each frame's loudest bin,
        // so bands far below the peak (near the 1e-5 clamp, 110 dB down) differ more in log terms. Bands within
        // ~50 dB of the top agree to 1e-4; the quietest to 5e-3 (there the reference itself is 2.6e-3 from a float64 FFT).
        using var scope = NewDisposeScope();
        var mels = new MelSpectrogram().Compute(Clips());
        var expected = tensor(Flatten(Golden.GetProperty("mels")), new long[] { 2, 128, 23 });
        Assert.Equal(expected.shape, mels.shape);
        var diff = (mels - expected).abs();
        double loud = diff.masked_select(expected > -6).max().item<float>();
        double all = diff.max().item<float>();
        Assert.True(loud < 1e-4, $"log-mels above -6 differ from the reference by up to {loud}");
        Assert.True(all < 5e-3, $"log-mels differ from the reference by up to {all}");
    }

    static SpeakerEncoder GoldenWeightedTinyEncoder()
    {
        var encoder = new SpeakerEncoder(Presets.Config("tiny").SpeakerEncoder);
        using var scope = NewDisposeScope();
        var parameters = encoder.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        int p = 0;
        foreach (var name in parameters.Keys.Order(StringComparer.Ordinal))
        {
            var param = parameters[name];
            var values = new float[param.numel()];
            double fanIn = name.EndsWith(".bias") ? 0 : param.shape[1] * param.shape[2];
            for (int j = 0; j < values.Length; j++)
                values[j] = (float)(name.EndsWith(".bias") ? 0.1 * Math.Cos(0.37 * j + 1.3 * p) : Math.Sin(0.731 * j + 1.9 * p) / Math.Sqrt(fanIn));
            using (no_grad()) param.copy_(tensor(values).reshape(param.shape));
            p++;
        }
        encoder.eval();
        return encoder;
    }

    [Fact]
    public void Tiny_encoder_reproduces_the_references_embeddings_from_its_mels()
    {
        using var scope = NewDisposeScope();
        using var encoder = GoldenWeightedTinyEncoder();
        var mels = tensor(Flatten(Golden.GetProperty("mels")), new long[] { 2, 128, 23 }).transpose(1, 2);
        var expected = tensor(Flatten(Golden.GetProperty("embedding")), new long[] { 2, 64 });
        var actual = encoder.forward(mels);
        double maxDiff = (actual - expected).abs().max().item<float>();
        Assert.True(maxDiff < 1e-5, $"embeddings differ from the reference by up to {maxDiff}");
    }

    [Fact]
    public void Embed_from_audio_reproduces_the_references_embeddings()
    {
        using var scope = NewDisposeScope();
        using var encoder = GoldenWeightedTinyEncoder();
        var expected = tensor(Flatten(Golden.GetProperty("embedding")), new long[] { 2, 64 });
        var actual = encoder.Embed(Clips());
        double maxDiff = (actual - expected).abs().max().item<float>();
        Assert.True(maxDiff < 1e-4, $"embeddings from audio differ from the reference by up to {maxDiff}");
    }
}
