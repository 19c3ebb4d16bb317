using System.Text.Json.Nodes;
using Qwen3Tts.Coordinator;

namespace Qwen3Tts.Tests.Coordinator;

/// <summary>Concurrent reports share flushes (group commit) and each returns only once its change is on disk.</summary>
public class GroupCommitTests : CleansTempDirs
{
    [Fact]
    public async Task Concurrent_reports_are_each_durable_when_they_return_and_written_once()
    {
        const int ranks = 48, steps = 10;
        string dir = TestPaths.NewTempDir("group-commit");
        var state = new CoordinatorState(new CoordinatorOptions(dir, new PlanSettings(ranks * 2 * steps, 1, 2)) { WorldSize = ranks });
        for (int r = 0; r < ranks; r++) state.Register(r, ranks, "test", new PlanPosition(0, 0));

        await Task.WhenAll(Enumerable.Range(0, ranks).Select(r => Task.Run(async () =>
        {
            for (int s = 1; s <= steps; s++)
            {
                await state.ReportStepAsync(r, s, new Dictionary<string, double> { ["train/loss"] = r + s / 100.0 }, new PlanPosition(0, s));
                // Returned: the state on disk already holds this step (read independently of the instance).
                var saved = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, CoordinatorState.StateFileName)))!;
                Assert.True(saved["metrics_cursor"]![r.ToString()]!.GetValue<long>() >= s);
                Assert.True(saved["ranks"]![r.ToString()]!["next_batch"]!.GetValue<long>() >= s);
            }
        })));

        var lines = File.ReadAllLines(Path.Combine(dir, CoordinatorState.MetricsFileName)).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(ranks * steps, lines.Count);
        Assert.Equal(ranks * steps, lines.Select(l => (l["rank"]!.GetValue<int>(), l["step"]!.GetValue<long>())).Distinct().Count());
        // Per rank, lines are in step order (a rank's reports are sequential).
        foreach (var group in lines.GroupBy(l => l["rank"]!.GetValue<int>()))
            Assert.Equal(Enumerable.Range(1, steps).Select(s => (long)s), group.Select(l => l["step"]!.GetValue<long>()));
        Assert.Equal(new PlanPosition(0, steps), new CoordinatorState(new CoordinatorOptions(dir, new PlanSettings(ranks * 2 * steps, 1, 2))).Position);
    }
}
