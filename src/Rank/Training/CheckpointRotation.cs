using System.Globalization;
using System.Text.RegularExpressions;

namespace Qwen3Tts.Rank.Training;

/// <summary>The checkpoint folders under a run's output dir: <c>checkpoint-{step}/</c> every --save_steps,
/// <c>epoch-{n}/</c> at each epoch end, <c>best/</c> at the lowest eval loss and <c>last/</c> at the latest save;
/// pruning of old step checkpoints and the choice of the checkpoint to resume from.</summary>
public static partial class CheckpointRotation
{
    public const string Best = "best", Last = "last", Latest = "latest";

    public static string StepDir(string outputDir, long step) => Path.Combine(outputDir, $"checkpoint-{step}");
    /// <summary>The folder written after <paramref name="epochsDone"/> epochs: epoch-1/ after the first, as the
    /// pipelines users come from number them. (Runs before this numbering wrote epoch-0/ for the first; resuming finds
    /// those too, by their trainer state.)</summary>
    public static string EpochDir(string outputDir, int epochsDone) => Path.Combine(outputDir, $"epoch-{epochsDone}");
    public static string BestDir(string outputDir) => Path.Combine(outputDir, Best);
    public static string LastDir(string outputDir) => Path.Combine(outputDir, Last);

    [GeneratedRegex(@"^checkpoint-(\d+)$")]
    private static partial Regex StepName();

    [GeneratedRegex(@"^epoch-(\d+)$")]
    private static partial Regex EpochName();

    /// <summary>The step checkpoints present, oldest (lowest step) first.</summary>
    public static IReadOnlyList<(string Dir, long Step)> StepCheckpoints(string outputDir)
    {
        if (!Directory.Exists(outputDir)) return [];
        return Directory.EnumerateDirectories(outputDir)
            .Select(d => (Dir: d, Match: StepName().Match(Path.GetFileName(d))))
            .Where(x => x.Match.Success && long.TryParse(x.Match.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            .Select(x => (x.Dir, Step: long.Parse(x.Match.Groups[1].Value, CultureInfo.InvariantCulture)))
            .OrderBy(x => x.Step)
            .ToList();
    }

    /// <summary>--save_total_limit: deletes the oldest <c>checkpoint-*</c> folders beyond the newest
    /// <paramref name="limit"/>; never best/, last/ or epoch-*. Each is first renamed aside, so a crash mid-delete
    /// leaves no half-deleted folder under a checkpoint name. Returns the folders deleted.</summary>
    public static IReadOnlyList<string> Prune(string outputDir, int limit)
    {
        if (limit < 1)
            throw new ArgumentOutOfRangeException(nameof(limit), limit, "--save_total_limit must be at least 1; leave it unset to keep every checkpoint");
        var steps = StepCheckpoints(outputDir);
        var deleted = new List<string>();
        foreach (var (dir, _) in steps.Take(Math.Max(0, steps.Count - limit)))
        {
            string aside = dir + AtomicDirectory.TempMarker + "delete-" + Environment.ProcessId;
            Directory.Move(dir, aside);
            Directory.Delete(aside, recursive: true);
            deleted.Add(dir);
        }
        return deleted;
    }

    /// <summary>--resume: "latest" is the checkpoint under <paramref name="outputDir"/> (checkpoint-*, epoch-*,
    /// last/) whose trainer_state.json has the highest global step (ties: last/, then checkpoint-*, then epoch-*);
    /// <c>.tmp-*</c> leftovers are never candidates, a folder's <c>.old</c> copy stands in for it when a crash
    /// came mid-replace. Anything else is a checkpoint folder's path. Read-only: safe on every rank at once.
    /// Returns the full path of a complete checkpoint.</summary>
    public static string ResolveResume(string outputDir, string spec)
    {
        if (spec != Latest)
        {
            string found = AtomicDirectory.Locate(spec)
                ?? throw new TrainingCheckpointException($"--resume '{spec}': no such checkpoint folder (or pass '{Latest}' to pick the newest under the output dir)");
            var missing = TrainingCheckpoint.MissingFiles(found);
            if (missing.Count > 0)
                throw new TrainingCheckpointException($"--resume '{spec}': {found} is not a complete training checkpoint, missing {string.Join(", ", missing)}");
            return found;
        }

        var candidates = new List<(string Dir, long Step, int Rank)>();
        foreach (var name in CandidateNames(outputDir))
        {
            string? dir = AtomicDirectory.Locate(Path.Combine(outputDir, name));
            if (dir is null || TrainingCheckpoint.MissingFiles(dir).Count > 0) continue;
            int rank = name == Last ? 2 : StepName().IsMatch(name) ? 1 : 0;
            candidates.Add((dir, TrainingCheckpoint.ReadState(dir).GlobalStep, rank));
        }
        if (candidates.Count == 0)
            throw new TrainingCheckpointException($"--resume {Latest}: no complete checkpoint under {Path.GetFullPath(outputDir)} "
                + "(looked for checkpoint-*/, epoch-*/ and last/ holding training_state/trainer_state.json); start without --resume, or pass a checkpoint folder");
        return candidates.OrderByDescending(c => c.Step).ThenByDescending(c => c.Rank).First().Dir;
    }

    /// <summary>Names that may hold a resumable checkpoint: exact checkpoint names, and those of <c>.old</c> copies.</summary>
    static IEnumerable<string> CandidateNames(string outputDir)
    {
        if (!Directory.Exists(outputDir)) return [];
        return Directory.EnumerateDirectories(outputDir)
            .Select(Path.GetFileName)
            .Select(n => n!.EndsWith(AtomicDirectory.OldSuffix, StringComparison.Ordinal) ? n[..^AtomicDirectory.OldSuffix.Length] : n!)
            .Where(n => n == Last || StepName().IsMatch(n) || EpochName().IsMatch(n))
            .Distinct(StringComparer.Ordinal);
    }
}
