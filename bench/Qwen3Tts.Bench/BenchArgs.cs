using System.Globalization;

namespace Qwen3Tts.Bench;

/// <summary>The benchmarks' few flags: "--name value" anywhere in the arguments. A bad value is a flag error naming
/// the flag and what was expected, like every other executable's.</summary>
static class BenchArgs
{
    public static int Int(string[] args, string name, int fallback) =>
        Value(args, name) is { } v ? int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) ? n
            : throw new ArgumentException($"{name}: '{v}' is not a whole number") : fallback;

    public static double Double(string[] args, string name, double fallback) =>
        Value(args, name) is { } v ? double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) ? d
            : throw new ArgumentException($"{name}: '{v}' is not a number") : fallback;

    public static string? String(string[] args, string name) => Value(args, name);

    static string? Value(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        if (i < 0) return null;
        return i + 1 < args.Length ? args[i + 1] : throw new ArgumentException($"{name}: expects a value");
    }
}
