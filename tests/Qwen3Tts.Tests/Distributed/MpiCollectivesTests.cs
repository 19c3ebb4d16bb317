using System.Diagnostics;
using System.Reflection;
using Qwen3Tts.Rank.Distributed;
using Xunit.Abstractions;

namespace Qwen3Tts.Tests.Distributed;

/// <summary>Runs tests/Qwen3Tts.MpiTests under each installed MPI launcher with two ranks. The driver checks the
/// collective properties on every rank and exits 0 only if all of them held everywhere. A missing launcher is
/// reported in the output and the test returns early (it is not a failure of this code).</summary>
[Trait("Category", "Mpi")]
public class MpiCollectivesTests(ITestOutputHelper output)
{
    public static TheoryData<string> Launchers => ["openmpi", "mpich"];

    static string DriverDll { get; } = typeof(MpiCollectivesTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "MpiTestsDriver").Value!;

    [Theory]
    [MemberData(nameof(Launchers))]
    public void Collective_properties_hold_on_two_ranks(string flavor)
    {
        if (Run(flavor, [], out var result) is not { } exitCode) return;
        Assert.True(exitCode == 0, $"mpiexec.{flavor} exited {exitCode}:\n{result}");
        Assert.Contains("ALL PASSED on 2 ranks", result);
        Assert.Contains(flavor == "openmpi" ? "mpi (Open MPI" : "mpi (MPICH", result);
    }

    [Theory]
    [MemberData(nameof(Launchers))]
    public void A_failing_rank_aborts_the_whole_job_within_seconds(string flavor)
    {
        var clock = Stopwatch.StartNew();
        if (Run(flavor, ["--fail-on-rank", "1"], out var result) is not { } exitCode) return;
        // Rank 0 is blocked in an all-reduce that rank 1 never joins: only MPI_Abort ends it, with the driver's code 3.
        Assert.True(exitCode == 3, $"mpiexec.{flavor} exited {exitCode}, not the abort code 3:\n{result}");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"the abort took {clock.Elapsed}");
        Assert.Contains("rank 1 of 2 failed: InvalidOperationException: deliberate failure on rank 1", result);
        Assert.DoesNotContain("the job was not aborted", result);
    }

    /// <summary>mpiexec.{flavor} -n 2 dotnet driver args: its exit code, or null (and a note in the output) when that
    /// launcher is absent.</summary>
    int? Run(string flavor, string[] args, out string result)
    {
        result = "";
        var launcher = FindOnPath($"mpiexec.{flavor}");
        if (launcher is null)
        {
            TestPaths.SkipOrFailInCi(output, $"mpiexec.{flavor} is not on PATH (apt-get install {(flavor == "openmpi" ? "openmpi-bin libopenmpi-dev" : "mpich")})");
            return null;
        }
        Assert.True(File.Exists(DriverDll), $"the MPI test driver is not built: {DriverDll}");

        var start = new ProcessStartInfo(launcher) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (flavor == "openmpi")
        {
            foreach (var a in (string[])["--allow-run-as-root", "--oversubscribe"]) start.ArgumentList.Add(a);
            start.Environment[EnvVars.OmpiAllowRunAsRoot] = "1";
            start.Environment[EnvVars.OmpiAllowRunAsRootConfirm] = "1";
        }
        foreach (var a in (string[])["-n", "2", "dotnet", DriverDll, .. args]) start.ArgumentList.Add(a);
        start.Environment.Remove(EnvVars.MpiLibrary);

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(120)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"mpiexec.{flavor} did not finish in 120 s:\n{stdout.Result}\n{stderr.Result}");
        }
        result = stdout.Result + "\n" + stderr.Result;
        output.WriteLine($"$ {launcher} {string.Join(' ', start.ArgumentList)}\nexit {process.ExitCode}\n{result}");
        return process.ExitCode;
    }

    static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name)).FirstOrDefault(File.Exists);
}
