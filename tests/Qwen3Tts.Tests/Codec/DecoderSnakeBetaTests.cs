using Qwen3Tts.Model.Codec;
using static Qwen3Tts.Tests.Codec.DecoderTensors;

namespace Qwen3Tts.Tests.Codec;

/// <summary>SnakeBeta against its formula y = x + sin²(x·e^alpha) / (e^beta + 1e-9), evaluated here in double.</summary>
public class DecoderSnakeBetaTests
{
    [Fact]
    public void Fresh_activation_is_x_plus_sin_squared()
    {
        using var snake = new SnakeBeta(1);
        // alpha = beta = 0: frequency and magnitude 1. At x = π/2, sin² = 1: y = π/2 + 1/(1 + 1e-9).
        var y = Row(snake.forward(Signal([(float)(Math.PI / 2), 0f, -1f])), 0);
        Assert.Equal(Math.PI / 2 + 1, y[0], 5);
        Assert.Equal(0, y[1], 7);
        Assert.Equal(-1 + Math.Sin(-1) * Math.Sin(-1), y[2], 6); // -0.2919...
        Assert.Equal(-0.29192658, y[2], 6);
    }

    [Fact]
    public void Per_channel_log_alpha_and_log_beta()
    {
        using var snake = new SnakeBeta(2);
        Set(snake, "alpha", 0f, (float)Math.Log(2));     // frequencies 1 and 2
        Set(snake, "beta", (float)Math.Log(0.5), 0f);    // magnitudes 1/0.5 = 2 and 1
        float[][] x = [[0.3f, -1.2f, 2.0f], [0.5f, 1.0f, -0.7f]];
        var y = snake.forward(Signal(x));
        double[] a = [1, 2], b = [0.5, 1];
        for (int c = 0; c < 2; c++)
        {
            var row = Row(y, c);
            for (int t = 0; t < 3; t++)
            {
                double v = x[c][t], s = Math.Sin(v * a[c]);
                Assert.Equal(v + s * s / (b[c] + 1e-9), row[t], 5);
            }
        }
        // One value worked through: channel 1, x = 1: 1 + sin²(2) = 1 + 0.826822 = 1.826822.
        Assert.Equal(1.826822, Row(y, 1)[1], 5);
    }
}
