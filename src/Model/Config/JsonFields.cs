using System.Text.Json;
using System.Text.Json.Nodes;

namespace Qwen3Tts.Model.Config;

/// <summary>A config that cannot be used; the message names the file and the key path at fault.</summary>
public sealed class ConfigException(string message) : UserInputException(message);

/// <summary>Typed reads from a JSON object that name the offending key ("talker_config.hidden_size")
/// and the source file in every error.</summary>
internal sealed class JsonFields(JsonObject obj, string path, string source)
{
    public JsonObject Object => obj;

    string Key(string name) => path.Length == 0 ? name : $"{path}.{name}";

    ConfigException Error(string name, string what) => new($"{source}: '{Key(name)}' {what}");

    JsonNode? Get(string name, bool required)
    {
        if (obj.TryGetPropertyValue(name, out var node) && node is not null) return node;
        if (required) throw Error(name, "is missing");
        return null;
    }

    public int Int(string name) => IntOr(name, null, required: true);
    public int IntOr(string name, int fallback) => IntOr(name, fallback, required: false);

    int IntOr(string name, int? fallback, bool required)
    {
        var node = Get(name, required);
        if (node is null) return fallback!.Value;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && TryNumber(v, out double d) && d == Math.Floor(d)
            && d >= int.MinValue && d <= int.MaxValue)
            return (int)d;
        throw Error(name, $"must be an integer, found {node.ToJsonString()}");
    }

    public double Double(string name) => DoubleOr(name, null, required: true);
    public double DoubleOr(string name, double fallback) => DoubleOr(name, fallback, required: false);

    double DoubleOr(string name, double? fallback, bool required)
    {
        var node = Get(name, required);
        if (node is null) return fallback!.Value;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && TryNumber(v, out double d)) return d;
        throw Error(name, $"must be a number, found {node.ToJsonString()}");
    }

    public bool BoolOr(string name, bool fallback)
    {
        var node = Get(name, required: false);
        if (node is null) return fallback;
        return node.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error(name, $"must be true or false, found {node.ToJsonString()}"),
        };
    }

    public string String(string name) => StringOr(name, null, required: true)!;
    public string StringOr(string name, string fallback) => StringOr(name, fallback, required: false)!;

    string? StringOr(string name, string? fallback, bool required)
    {
        var node = Get(name, required);
        if (node is null) return fallback;
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String) return v.GetValue<string>();
        throw Error(name, $"must be a string, found {node.ToJsonString()}");
    }

    public IReadOnlyList<int> IntList(string name, IReadOnlyList<int>? fallback = null)
    {
        var node = Get(name, required: fallback is null);
        if (node is null) return fallback!;
        if (node is not JsonArray array) throw Error(name, $"must be a list of integers, found {node.ToJsonString()}");
        var list = new int[array.Count];
        for (int i = 0; i < array.Count; i++)
        {
            if (array[i] is JsonValue v && v.GetValueKind() == JsonValueKind.Number && TryNumber(v, out double d) && d == Math.Floor(d))
                list[i] = (int)d;
            else
                throw Error($"{name}[{i}]", $"must be an integer, found {array[i]?.ToJsonString() ?? "null"}");
        }
        return list;
    }

    /// <summary>A {"name": integer} map; a missing or null key is an empty map.</summary>
    public IReadOnlyDictionary<string, int> IntMap(string name)
    {
        var node = Get(name, required: false);
        if (node is null) return new Dictionary<string, int>();
        if (node is not JsonObject map) throw Error(name, $"must be an object of integers, found {node.ToJsonString()}");
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        var fields = new JsonFields(map, Key(name), source);
        foreach (var (key, _) in map) result[key] = fields.Int(key);
        return result;
    }

    public JsonFields Child(string name, bool required = true)
    {
        var node = Get(name, required);
        if (node is null) return new JsonFields(new JsonObject(), Key(name), source);
        if (node is not JsonObject child) throw Error(name, $"must be an object, found {node.ToJsonString()}");
        return new JsonFields(child, Key(name), source);
    }

    // Works for parsed and for in-memory (boxed int/double) JSON values alike.
    static bool TryNumber(JsonValue v, out double d) =>
        double.TryParse(v.ToJsonString(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out d);

    public bool Has(string name) => obj.TryGetPropertyValue(name, out var node) && node is not null;

    public JsonNode? Raw(string name) => Get(name, required: false);

    public ConfigException Invalid(string name, string what) => Error(name, what);
}
