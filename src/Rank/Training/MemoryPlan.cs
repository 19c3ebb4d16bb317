using System.Globalization;
using Qwen3Tts.Model.Config;
using Qwen3Tts.Model.Layers;

namespace Qwen3Tts.Rank.Training;

/// <summary>The shape of the largest micro-batch a run's plan can form: its rows (batch size), the longest row's
/// talker sequence (every row is padded to it) and the codec frames of the batch's longest rows (the code predictor
/// and the talker's head see frames, not padding).</summary>
public sealed record BatchShape(int Rows, int Positions, long Frames)
{
    /// <summary>The upper bound of any batch a plan forms from these records: <paramref name="rows"/> copies of the longest.</summary>
    public static BatchShape Longest(int rows, IEnumerable<(int Positions, int Frames)> records)
    {
        var all = records.ToList();
        if (all.Count == 0) return new BatchShape(rows, 0, 0);
        int positions = all.Max(r => r.Positions);
        long frames = all.Select(r => (long)r.Frames).OrderDescending().Take(rows).Sum();
        return new BatchShape(rows, positions, frames);
    }
}

/// <summary>Memory one rank needs for a training step, planned from the config before the first step instead of
/// discovered by an out-of-memory kill, by category: the fp32 masters (with the frozen speaker encoder), the bf16 compute
/// copy, gradients, AdamW's state, the gradient buckets, the activations autograd keeps for the longest batch (every
/// talker and code-predictor layer's saved tensors, the attention mask, the embeddings and the fp32 logits), and the
/// runtime (.NET and libtorch on the CPU, the CUDA context on a GPU). With Ψ trainable parameters and N &gt; 1 ranks,
/// bytes per trainable parameter (bf16 compute; fp32 in brackets where it differs):
/// <code>
///                   stage 0        stage 1                         stage 2
///   fp32 masters    4              4/N (fp32: + 4, the weights)    4/N (+ 4)
///   compute copy    2 (0)          2 (0)                           2 (0)
///   gradients       2 (4)          2 (4) + 4/N                     8/N
///   AdamW moments   8              8/N                             8/N
///   buckets         4              4 + all-gather buffer           in flight only + all-gather buffer
/// </code>
/// The whole gradient of stages 0 and 1 is the bf16 (fp32) one autograd makes on a micro-step, and their buckets hold
/// the fp32 sum across micro-steps (at stage 0 the masters' .grad are views of them afterwards; one rank has no buckets
/// and keeps an fp32 master gradient, 4 + 2 (4)); at stage 2 every micro-step reduces during backward (--grad_sync overlap), the
/// reduced gradients never reach .grad and a bucket lives only from its first gradient to the end of its
/// reduce-scatter (planned as the largest plus one of the cap; with after_backward the whole gradient exists for a
/// moment). ZeRO's all-gather buffer holds at most one cap's worth (a larger bucket is gathered in chunks). An estimate, not an accounting: <c>MemoryPlanTests</c> and the memory bench hold it against measured peaks.</summary>
public sealed record MemoryPlan(long Masters, long ComputeCopy, long Gradients, long Optimizer, long Buckets, long Activations, long Runtime, BatchShape Batch)
{
    public long Total => Masters + ComputeCopy + Gradients + Optimizer + Buckets + Activations + Runtime;

    /// <summary>The weights this rank holds: fp32 masters (whole or its slice) and the bf16 compute copy.</summary>
    public long Weights => Masters + ComputeCopy;

    /// <summary>Everything but the activations and the runtime: what scales with the parameters.</summary>
    public long States => Weights + Gradients + Optimizer + Buckets;

    /// <summary>Bytes the process itself takes besides tensors: the .NET runtime and libtorch's code and pools on the
    /// CPU; the CUDA context on a GPU (measured on this machine; see the README's memory section).</summary>
    public const long CpuRuntimeBytes = 400L << 20, CudaRuntimeBytes = 600L << 20;

    /// <param name="totalParameters">every parameter of the loaded model (fp32 masters and the frozen speaker encoder).</param>
    /// <param name="trainableParameters">the talker's, which get gradients and AdamW moments.</param>
    /// <param name="bf16">bf16 compute (a bf16 talker copy and its gradients) or fp32.</param>
    /// <param name="worldSize">ranks reducing gradients (buckets with more than one).</param>
    /// <param name="zeroStage">--zero_stage (0 with one rank).</param>
    /// <param name="bucketCapBytes">--bucket_size_mb in bytes (ZeRO-2's buckets in flight).</param>
    /// <param name="largestBucketBytes">the largest bucket (a tensor over the cap travels alone: the text embedding's
    /// 151936 rows make one of 0.6-1.2 GB): what one ZeRO-2 bucket in flight can take.</param>
    public static MemoryPlan Estimate(TalkerConfig talker, long totalParameters, long trainableParameters, bool bf16, int worldSize,
        BatchShape batch, bool cuda, int zeroStage = 0, long bucketCapBytes = 25L << 20, long largestBucketBytes = 0,
        GradientCheckpointing checkpointing = GradientCheckpointing.Off)
    {
        ArgumentNullException.ThrowIfNull(talker);
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentOutOfRangeException.ThrowIfLessThan(worldSize, 1);
        if (zeroStage is < 0 or > 2) throw new ArgumentOutOfRangeException(nameof(zeroStage), zeroStage, "--zero_stage must be 0, 1 or 2");
        long psi = trainableParameters, frozen = totalParameters - psi, shard = (psi + worldSize - 1) / worldSize;
        int stage = worldSize > 1 ? zeroStage : 0;
        long whole = bf16 ? 2 * psi : 4 * psi; // the gradient autograd makes, in the compute dtype
        long gather = Math.Min(bucketCapBytes, largestBucketBytes); // ZeRO's all-gather buffer: a cap's worth at most
        var (masters, gradients, optimizer, buckets) = stage switch
        {
            0 => (4 * totalParameters, worldSize > 1 ? whole : 4 * psi + (bf16 ? 2 * psi : 0), 8 * psi, worldSize > 1 ? 4 * psi : 0),
            1 => (4 * frozen + 4 * shard + (bf16 ? 0 : 4 * psi), whole + 4 * shard, 8 * shard, 4 * psi + gather),
            _ => (4 * frozen + 4 * shard + (bf16 ? 0 : 4 * psi), 8 * shard, 8 * shard,
                Math.Min(4 * psi, Math.Max(bucketCapBytes, largestBucketBytes) + bucketCapBytes) + gather),
        };
        return new MemoryPlan(masters, bf16 ? 2 * psi : 0, gradients, optimizer, buckets,
            ActivationBytes(talker, bf16 ? 2 : 4, batch, checkpointing), cuda ? CudaRuntimeBytes : CpuRuntimeBytes, batch);
    }

    /// <summary>Bytes autograd keeps between forward and backward for one batch of this shape, at
    /// <paramref name="bytes"/> per element of the compute dtype (fp32 for norms' statistics and logits). With gradient
    /// checkpointing a recomputed stack keeps each layer's input only, plus one layer's tensors while it is recomputed.</summary>
    public static long ActivationBytes(TalkerConfig talker, int bytes, BatchShape batch, GradientCheckpointing checkpointing = GradientCheckpointing.Off)
    {
        long tokens = (long)batch.Rows * batch.Positions;
        // One decoder layer, per token: the norms' inputs and outputs and the residual (6 H), q, k, v before and after
        // the q/k norms and rotary (4 per head dim of q and of k/v), the attention output, and the MLP's gate, up,
        // activation and product (4 I).
        static long Layer(int hidden, int intermediate, int heads, int kvHeads, int headDim) =>
            6L * hidden + 4L * heads * headDim + 4L * kvHeads * headDim + (long)heads * headDim + 4L * intermediate;

        var cp = talker.CodePredictor;
        static long Stack(int layers, long perLayer, long input, bool recomputed) => recomputed ? layers * input + perLayer : layers * perLayer;
        long talkerLayers = Stack(talker.NumHiddenLayers, Layer(talker.HiddenSize, talker.IntermediateSize, talker.NumAttentionHeads,
            talker.NumKeyValueHeads, talker.HeadDim) * tokens * bytes, (long)talker.HiddenSize * tokens * bytes, checkpointing != GradientCheckpointing.Off);
        // The [B, 1, T, T] bool mask of causality and padding, and the additive float mask attention makes of it.
        long mask = (long)batch.Rows * batch.Positions * batch.Positions * (1 + bytes);
        // Text embedding and its projection, the codec embedding, and the 15 code-predictor embeddings summed in.
        long embeddings = tokens * (2L * talker.TextHiddenSize + 4L * talker.HiddenSize + (talker.NumCodeGroups - 1L) * talker.HiddenSize) * bytes;
        // The talker's head on every frame (+ codec_eos): gathered hidden states, then logits in the compute dtype,
        // their fp32 copy and the softmax's fp32 output.
        long scored = batch.Frames + batch.Rows;
        long talkerHead = scored * (talker.HiddenSize * (long)bytes + talker.VocabSize * (bytes + 8L));
        // The code predictor runs each frame as a sequence of num_code_groups positions.
        long cpTokens = batch.Frames * talker.NumCodeGroups;
        long cpLayers = Stack(cp.NumHiddenLayers, Layer(cp.HiddenSize, cp.IntermediateSize, cp.NumAttentionHeads, cp.NumKeyValueHeads, cp.HeadDim)
            * cpTokens * bytes, (long)cp.HiddenSize * cpTokens * bytes, checkpointing == GradientCheckpointing.All);
        long cpInput = cpTokens * (2L * talker.HiddenSize + cp.HiddenSize) * bytes;
        long cpHeads = batch.Frames * (talker.NumCodeGroups - 1L) * (cp.HiddenSize * (long)bytes + cp.VocabSize * (bytes + 8L));
        return talkerLayers + mask + embeddings + talkerHead + cpLayers + cpInput + cpHeads;
    }

    static string Gb(long bytes) => (bytes / 1e9).ToString("F2", CultureInfo.InvariantCulture);

    /// <summary>"~3.41 GB for the longest batch (2 x 412 positions, 800 frames): weights 0.10, ..."</summary>
    public override string ToString() =>
        $"~{Gb(Total)} GB for the longest batch ({Batch.Rows} x {Batch.Positions} positions, {Batch.Frames} frames): weights {Gb(Weights)}, " +
        $"gradients {Gb(Gradients)}, optimizer {Gb(Optimizer)}, " + (Buckets > 0 ? $"buckets {Gb(Buckets)}, " : "") +
        $"activations {Gb(Activations)}, runtime {Gb(Runtime)}";
}

/// <summary>How much memory one rank may plan for on the CPU when --max_memory_gb is not given: the memory the kernel
/// reports available (MemAvailable, or the cgroup's limit less its use where a container limit is lower), shared by
/// the ranks of this node, plus what this rank already holds (its loaded weights are part of the plan).</summary>
public static class MemoryBudget
{
    public static long AvailableToRank(IReadOnlyDictionary<string, string> env)
    {
        ArgumentNullException.ThrowIfNull(env);
        long available = MemAvailable() ?? long.MaxValue / 4;
        if (CgroupHeadroom() is long headroom) available = Math.Min(available, headroom);
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        return available / LocalRanks(env) + self.WorkingSet64;
    }

    /// <summary>Ranks on this node, from the launcher (Open MPI, MPICH, torchrun, Slurm); 1 when none says.</summary>
    public static int LocalRanks(IReadOnlyDictionary<string, string> env)
    {
        foreach (string name in new[] { "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE" })
            if (env.TryGetValue(name, out var v) && int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n >= 1) return n;
        return 1;
    }

    static long? MemAvailable()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                    return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException) { }
        return null;
    }

    static long? CgroupHeadroom()
    {
        try
        {
            string max = File.ReadAllText("/sys/fs/cgroup/memory.max").Trim(), current = File.ReadAllText("/sys/fs/cgroup/memory.current").Trim();
            if (max == "max") return null;
            return long.Parse(max, CultureInfo.InvariantCulture) - long.Parse(current, CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException) { return null; }
    }
}

/// <summary>The free memory of the CUDA device a rank trains on, from NVML (libnvidia-ml.so.1, installed with the NVIDIA
/// driver; TorchSharp exposes no CUDA memory query). Null where NVML is absent or fails: the plan is then printed, and
/// checked only against --max_memory_gb.</summary>
public static class CudaMemory
{
    const string Library = "libnvidia-ml.so.1";

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    struct NvmlMemory
    {
        public ulong Total, Free, Used;
    }

    [System.Runtime.InteropServices.DllImport(Library)] static extern int nvmlInit_v2();
    [System.Runtime.InteropServices.DllImport(Library)] static extern int nvmlShutdown();
    [System.Runtime.InteropServices.DllImport(Library)] static extern int nvmlDeviceGetHandleByIndex_v2(uint index, out IntPtr device);
    [System.Runtime.InteropServices.DllImport(Library, CharSet = System.Runtime.InteropServices.CharSet.Ansi, BestFitMapping = false)]
    static extern int nvmlDeviceGetHandleByUUID(string uuid, out IntPtr device);
    [System.Runtime.InteropServices.DllImport(Library)] static extern int nvmlDeviceGetMemoryInfo(IntPtr device, out NvmlMemory memory);

    /// <summary>Which physical GPU CUDA's device <paramref name="cudaIndex"/> is: NVML counts every GPU of the node,
    /// CUDA only those CUDA_VISIBLE_DEVICES lists (by index, or by GPU-/MIG- UUID, as Slurm and Kubernetes set it).</summary>
    public static (uint? Index, string? Uuid) PhysicalDevice(int cudaIndex, string? visibleDevices)
    {
        if (string.IsNullOrWhiteSpace(visibleDevices)) return ((uint)cudaIndex, null);
        var listed = visibleDevices.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (cudaIndex < 0 || cudaIndex >= listed.Length) return (null, null);
        string entry = listed[cudaIndex];
        return uint.TryParse(entry, NumberStyles.None, CultureInfo.InvariantCulture, out uint index) ? (index, null) : (null, entry);
    }

    public static long? FreeBytes(int cudaIndex, string? visibleDevices)
    {
        var (index, uuid) = PhysicalDevice(cudaIndex, visibleDevices);
        if (index is null && uuid is null) return null;
        try
        {
            if (nvmlInit_v2() != 0) return null;
            try
            {
                int found = uuid is null ? nvmlDeviceGetHandleByIndex_v2(index!.Value, out var device) : nvmlDeviceGetHandleByUUID(uuid, out device);
                if (found != 0 || nvmlDeviceGetMemoryInfo(device, out var memory) != 0) return null;
                return (long)memory.Free;
            }
            finally { nvmlShutdown(); }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException) { return null; }
    }
}
