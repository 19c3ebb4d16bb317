using Qwen3Tts.Model.Codec;

namespace Qwen3Tts.Tests.Codec;

/// <summary>The released speech tokenizer's shapes (random weights) run end to end: audio → 16 codebooks at 12.5 Hz →
/// 24 kHz audio of frames × 1920 samples.</summary>
public class ReleasedShapeRoundTripTests
{
    [Fact]
    public void One_second_round_trips_through_the_released_encoder_and_decoder_shapes()
    {
        var config = SpeechTokenizerConfig.Preset("0.6b");
        var audio = Enumerable.Range(0, 24000).Select(i => (float)(0.3 * Math.Sin(2 * Math.PI * 220 * i / 24000.0))).ToArray();

        using var encoder = SpeechTokenizer.CreateRandom(config, seed: 1);
        var codes = encoder.Encode(audio);
        Assert.Equal(13, codes.GetLength(0)); // ceil(24000 / 1920)
        Assert.Equal(16, codes.GetLength(1));
        foreach (long c in codes) Assert.InRange(c, 0, config.Decoder.CodebookSize - 1);

        using var decoder = new SpeechTokenizerDecoder(config.Decoder);
        var samples = decoder.Decode(codes);
        Assert.Equal(13 * 1920, samples.Length);
        Assert.All(samples, s => Assert.True(float.IsFinite(s) && s >= -1 && s <= 1));
    }
}
