using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Qwen3Tts.Model;

namespace Qwen3Tts.Cli.Commands;

public static class InspectCommand
{
    public static Command Create()
    {
        var dir = new Argument<string>("DIR") { Description = "a model directory (config.json, with or without weights)" };
        var json = new Option<bool>("--json") { Description = "print {\"total\": N, \"tensors\": {name: shape}} instead of the summary" };
        var command = new Command("inspect", "Summarize a model directory and validate its tensor layout against config.json.") { dir, json };
        command.SetAction(parse =>
        {
            var report = ModelInspector.Inspect(parse.GetValue(dir)!);
            if (parse.GetValue(json)) Console.WriteLine(ToJson(report));
            else Console.Write(ToText(report));
            return report.IsValid ? 0 : 1;
        });
        return command;
    }

    public static string ToJson(InspectReport report)
    {
        var tensors = new JsonObject();
        foreach (var (name, shape) in report.Layout) tensors[name] = new JsonArray(shape.Select(d => (JsonNode)d).ToArray());
        return new JsonObject { ["total"] = report.Total, ["tensors"] = tensors }.ToJsonString();
    }

    public static string ToText(InspectReport r)
    {
        var c = r.Config;
        var t = c.Talker;
        var p = t.CodePredictor;
        var w = new StringWriter();
        w.WriteLine($"{r.Directory}: Qwen3-TTS-12Hz {c.TtsModelType} ({c.TtsModelSize}){(r.LayoutOnly ? " — layout only (config.json without weights)" : "")}");
        w.WriteLine($"  talker          {t.NumHiddenLayers} layers, hidden {t.HiddenSize}, ffn {t.IntermediateSize}, heads {t.NumAttentionHeads}/{t.NumKeyValueHeads} kv, head_dim {t.HeadDim}, mrope [{string.Join(",", t.RopeScaling.MropeSection)}]{(t.RopeScaling.Interleaved ? " interleaved" : "")}, theta {t.RopeTheta:G}");
        w.WriteLine($"  text            vocab {t.TextVocabSize}, width {t.TextHiddenSize} → text_projection → {t.HiddenSize}");
        w.WriteLine($"  codec           vocab {t.VocabSize}, {t.NumCodeGroups} codebooks, pad {t.CodecPadId} bos {t.CodecBosId} eos {t.CodecEosTokenId}, languages {t.CodecLanguageId.Count}, speakers {t.SpkId.Count}");
        w.WriteLine($"  code predictor  {p.NumHiddenLayers} layers, hidden {p.HiddenSize}, ffn {p.IntermediateSize}, heads {p.NumAttentionHeads}/{p.NumKeyValueHeads} kv, projection {(p.HiddenSize != t.HiddenSize ? $"{t.HiddenSize}→{p.HiddenSize}" : "identity")}");
        w.WriteLine(c.HasSpeakerEncoder
            ? $"  speaker encoder ECAPA-TDNN channels [{string.Join(",", c.SpeakerEncoder.EncChannels)}] → {c.SpeakerEncoder.EncDim}"
            : "  speaker encoder none (custom_voice)");
        w.WriteLine();
        w.WriteLine($"  {"component",-36} {"tensors",8} {"parameters",16}");
        foreach (var (component, tensors, parameters) in r.ByComponent())
            w.WriteLine($"  {component,-36} {tensors,8} {parameters,16:N0}");
        w.WriteLine($"  {"total",-36} {r.Layout.Count,8} {r.Total,16:N0}");
        w.WriteLine();
        if (r.LayoutOnly) w.WriteLine("  weights: none (layout derived from config.json)");
        else if (r.IsValid) w.WriteLine($"  weights: every expected tensor present with the right shape ({string.Join(", ", r.StoredDtypes.Select(kv => $"{kv.Value} {kv.Key}"))})");
        else
        {
            w.WriteLine($"  weights: INVALID — {r.Missing.Count} missing, {r.Unexpected.Count} unexpected, {r.Mismatched.Count} mis-shaped");
            foreach (var m in r.Missing.Take(20)) w.WriteLine($"    missing     {m}");
            foreach (var u in r.Unexpected.Take(20)) w.WriteLine($"    unexpected  {u}");
            foreach (var m in r.Mismatched.Take(20)) w.WriteLine($"    mis-shaped  {m}");
        }
        return w.ToString();
    }
}
