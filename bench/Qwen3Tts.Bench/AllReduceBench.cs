using System.Diagnostics;
using Qwen3Tts.Rank.Distributed;
using static TorchSharp.torch;

namespace Qwen3Tts.Bench;

/// <summary>All-reduce throughput under mpiexec: our <see cref="MpiCommunicator.AllReduceSum"/> (submit to the MPI
/// owner thread and wait, per call) against raw MPI_Allreduce on the same buffer, called back to back on the owner
/// thread through the same P/Invoke layer. The difference is the wrapper's cost: queue hand-off, task completion,
/// thread wake-ups and the tensor description. Rank 0 prints.</summary>
static class AllReduceBench
{
    const int Reps = 5;

    public static int Run()
    {
        using var comm = MpiCommunicator.Start();
        int n = comm.WorldSize;
        bool print = comm.Rank == 0;
        if (print)
        {
            Console.WriteLine($"launcher: {Launcher()}; {comm.Backend}; {n} ranks; {Environment.ProcessorCount} cores visible to rank 0");
            Console.WriteLine($"in-place float32 sum; per size the median of {Reps} repetitions (ours and raw alternating), each the mean over enough calls for ~40 ms");
            Console.WriteLine("algbw = bytes / time; busbw = algbw * 2(n-1)/n; ours/raw = time ratio (1.00 = no wrapper cost)");
            Console.WriteLine();
            Console.WriteLine($"{"size",8} {"ours us",10} {"raw us",10} {"ours algbw",11} {"raw algbw",10} {"ours busbw",11} {"raw busbw",10} {"ours/raw",9}");
        }
        double busFactor = 2.0 * (n - 1) / n;
        for (long bytes = 1 << 10; bytes <= 64 << 20; bytes *= 4)
        {
            using var buffer = zeros(bytes / 4, ScalarType.Float32); // zeros: repeated sums stay finite
            for (int i = 0; i < 3; i++) comm.AllReduceSum(buffer); // connection setup, page faults
            int calls = CallsFor(comm, buffer);
            var ours = new List<double>();
            var raw = new List<double>();
            for (int rep = 0; rep < Reps; rep++)
            {
                comm.Barrier();
                var sw = Stopwatch.StartNew();
                for (int i = 0; i < calls; i++) comm.AllReduceSum(buffer);
                ours.Add(sw.Elapsed.TotalSeconds / calls);

                comm.Barrier();
                raw.Add(RawSeconds(comm, buffer, calls) / calls);
            }
            double o = TrainStepBench.Median(ours), r = TrainStepBench.Median(raw);
            if (print)
                Console.WriteLine($"{Size(bytes),8} {o * 1e6,10:F1} {r * 1e6,10:F1} {Gbs(bytes / o),11} {Gbs(bytes / r),10} " +
                                  $"{Gbs(busFactor * bytes / o),11} {Gbs(busFactor * bytes / r),10} {o / r,8:F2}x");
        }
        return 0;
    }

    /// <summary>Mean over <paramref name="calls"/> back-to-back raw MPI_Allreduce calls, timed on the owner thread.</summary>
    static unsafe double RawSeconds(MpiCommunicator comm, Tensor buffer, int calls)
    {
        double seconds = 0;
        comm.RunOnOwnerThread(buffer, (mpi, data, count, datatype) =>
        {
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < calls; i++) mpi.AllreduceSumInPlace((void*)data, count, datatype);
            seconds = sw.Elapsed.TotalSeconds;
        });
        return seconds;
    }

    /// <summary>Enough calls for ~40 ms per repetition, from one timed raw call; rank 0 decides so every rank makes
    /// the same number of collectives.</summary>
    static int CallsFor(MpiCommunicator comm, Tensor buffer)
    {
        double one = RawSeconds(comm, buffer, 3) / 3;
        using var decided = tensor(new long[] { comm.Rank == 0 ? Math.Clamp((long)(0.04 / one), 3, 2000) : 0 });
        comm.AllReduceSum(decided);
        return (int)decided.item<long>();
    }

    static string Launcher()
    {
        var env = Environment.GetEnvironmentVariables();
        if (env.Contains(EnvVars.OmpiSize)) return "Open MPI's mpiexec (OMPI_COMM_WORLD_*)";
        if (env.Contains(EnvVars.PmiSize)) return "MPICH's Hydra mpiexec (PMI_*)";
        return "unknown (no OMPI_COMM_WORLD_* or PMI_* variables)";
    }

    static string Size(long bytes) => bytes >= 1 << 20 ? $"{bytes >> 20} MB" : $"{bytes >> 10} KB";

    static string Gbs(double bytesPerSecond) => $"{bytesPerSecond / 1e9:F3} GB/s";
}
