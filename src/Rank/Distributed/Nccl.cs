using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Qwen3Tts.Rank.Distributed;

/// <summary>nccl.h's <c>ncclUniqueId</c>: 128 opaque bytes made by ncclGetUniqueId on one rank and handed to
/// ncclCommInitRank on every rank. Passed BY VALUE to ncclCommInitRank; a 128-byte struct goes in memory under the
/// x86-64 System V ABI (and by reference to a caller copy under AAPCS64), which the runtime does for a blittable struct.</summary>
[StructLayout(LayoutKind.Sequential, Size = Nccl.UniqueIdBytes)]
public unsafe struct NcclUniqueId
{
    public fixed byte Internal[Nccl.UniqueIdBytes];

    public readonly byte[] ToArray()
    {
        var bytes = new byte[Nccl.UniqueIdBytes];
        fixed (byte* p = Internal) new ReadOnlySpan<byte>(p, Nccl.UniqueIdBytes).CopyTo(bytes);
        return bytes;
    }

    public static NcclUniqueId From(byte[] bytes)
    {
        if (bytes.Length != Nccl.UniqueIdBytes)
            throw new CommunicatorException($"an ncclUniqueId is {Nccl.UniqueIdBytes} bytes, got {bytes.Length}");
        var id = new NcclUniqueId();
        bytes.CopyTo(new Span<byte>(id.Internal, Nccl.UniqueIdBytes));
        return id;
    }
}

/// <summary>The NCCL calls this program makes, over libnccl.so.2 loaded at run time (no compile-time CUDA dependency,
/// so the CPU build and its tests need neither NCCL nor CUDA). Every ncclResult_t other than ncclSuccess becomes a
/// <see cref="CommunicatorException"/> with the call name, ncclGetErrorString's text and, where the library has it
/// (NCCL ≥ 2.13), ncclGetLastError's detail. Not thread-safe: <see cref="NcclCommunicator"/> calls it from one thread.
///
/// Constants from NVIDIA/nccl src/nccl.h.in (commit 021e8045): NCCL_UNIQUE_ID_BYTES 128; ncclDataType_t ncclInt8=0,
/// ncclUint8=1, ncclInt32=2, ncclUint32=3, ncclInt64=4, ncclUint64=5, ncclFloat16=6, ncclFloat32=7, ncclFloat64=8,
/// ncclBfloat16=9; ncclRedOp_t ncclSum=0; NCCL_VERSION(X,Y,Z) = X*1000+Y*100+Z up to 2.8, X*10000+Y*100+Z after.
/// The enums are C ints; they are passed as <see cref="int"/>.</summary>
public sealed unsafe class Nccl
{
    public const int UniqueIdBytes = 128;
    public const int Int64 = 4, Float32 = 7, Float64 = 8, BFloat16 = 9;
    public const int Sum = 0;

    /// <summary>NCCL_VERSION(2,10,0): the first release with ncclBfloat16.</summary>
    public const int BFloat16MinVersion = 21000;

    readonly delegate* unmanaged<int*, int> _getVersion;
    readonly delegate* unmanaged<NcclUniqueId*, int> _getUniqueId;
    readonly delegate* unmanaged<nint*, int, NcclUniqueId, int, int> _commInitRank;
    readonly delegate* unmanaged<void*, void*, nuint, int, int, nint, nint, int> _allReduce;
    readonly delegate* unmanaged<void*, void*, nuint, int, int, nint, nint, int> _broadcast;
    readonly delegate* unmanaged<void*, void*, nuint, int, int, nint, nint, int> _reduceScatter;
    readonly delegate* unmanaged<void*, void*, nuint, int, nint, nint, int> _allGather;
    readonly delegate* unmanaged<nint, int> _commDestroy;
    readonly delegate* unmanaged<nint, int> _commAbort;
    readonly delegate* unmanaged<int, byte*> _getErrorString;
    readonly delegate* unmanaged<nint, byte*> _getLastError; // null before NCCL 2.13

    /// <summary>The file the library was loaded from (or the loader name that resolved).</summary>
    public string LibraryPath { get; }

    /// <summary>NCCL_VERSION_CODE of the loaded library, e.g. 22105 for 2.21.5.</summary>
    public int VersionCode { get; }

    Nccl(nint library, string path)
    {
        LibraryPath = path;
        nint F(string name) => NativeLibrary.TryGetExport(library, name, out var address)
            ? address
            : throw new CommunicatorException($"{path} does not export {name}; is it NCCL 2.x?");
        _getVersion = (delegate* unmanaged<int*, int>)F("ncclGetVersion");
        _getUniqueId = (delegate* unmanaged<NcclUniqueId*, int>)F("ncclGetUniqueId");
        _commInitRank = (delegate* unmanaged<nint*, int, NcclUniqueId, int, int>)F("ncclCommInitRank");
        _allReduce = (delegate* unmanaged<void*, void*, nuint, int, int, nint, nint, int>)F("ncclAllReduce");
        _broadcast = (delegate* unmanaged<void*, void*, nuint, int, int, nint, nint, int>)F("ncclBroadcast");
        _reduceScatter = (delegate* unmanaged<void*, void*, nuint, int, int, nint, nint, int>)F("ncclReduceScatter");
        _allGather = (delegate* unmanaged<void*, void*, nuint, int, nint, nint, int>)F("ncclAllGather");
        _commDestroy = (delegate* unmanaged<nint, int>)F("ncclCommDestroy");
        _commAbort = (delegate* unmanaged<nint, int>)F("ncclCommAbort");
        _getErrorString = (delegate* unmanaged<int, byte*>)F("ncclGetErrorString");
        _getLastError = NativeLibrary.TryGetExport(library, "ncclGetLastError", out var lastError) ? (delegate* unmanaged<nint, byte*>)lastError : null;
        int version;
        Check(_getVersion(&version), "ncclGetVersion");
        VersionCode = version;
    }

    /// <summary>Loads the first of <see cref="Candidates"/> that opens. The error lists every path tried and why each failed.</summary>
    public static Nccl Load(IReadOnlyDictionary<string, string> env) => Load(Candidates(env));

    public static Nccl Load(IReadOnlyList<string> candidates)
    {
        var failures = new List<string>();
        foreach (var candidate in candidates)
        {
            if (candidate.Contains('/') && !File.Exists(candidate)) { failures.Add($"{candidate}: no such file"); continue; }
            if (!NativeLibrary.TryLoad(candidate, out var handle)) { failures.Add($"{candidate}: {LoadError(candidate)}"); continue; }
            return new Nccl(handle, candidate);
        }
        throw new CommunicatorException(
            "cannot load the NCCL library; tried:\n  " + string.Join("\n  ", failures) +
            $"\nInstall NCCL 2.x (libnccl2, or the CUDA image's NCCL), or set {EnvVars.NcclLibrary} to the libnccl.so.2 to use");
    }

    /// <summary>The explicit override alone if set; else the loader name (LD_LIBRARY_PATH, ld.so.cache: how the
    /// CUDA images and libnccl2 packages install it), then the usual directories by full path.</summary>
    public static IReadOnlyList<string> Candidates(IReadOnlyDictionary<string, string> env)
    {
        if (env.TryGetValue(EnvVars.NcclLibrary, out var explicitLib) && !string.IsNullOrWhiteSpace(explicitLib))
            return [explicitLib.Trim()];
        var arch = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? "aarch64" : "x86_64";
        return ["libnccl.so.2", $"/usr/lib/{arch}-linux-gnu/libnccl.so.2", "/usr/local/cuda/lib64/libnccl.so.2", "/usr/local/nccl/lib/libnccl.so.2"];
    }

    /// <summary>dlopen's own reason (NativeLibrary.TryLoad does not say).</summary>
    static string LoadError(string name)
    {
        try { NativeLibrary.Free(NativeLibrary.Load(name)); return "loaded on retry"; }
        catch (DllNotFoundException e) { return e.Message.Split('\n')[0].Trim(); }
        catch (BadImageFormatException e) { return e.Message.Split('\n')[0].Trim(); }
    }

    /// <summary>"2.21.5" for NCCL_VERSION_CODE 22105; "2.8.4" for 2804 (the old encoding, up to 2.8).</summary>
    public static string VersionText(int code) => code >= 10000
        ? $"{code / 10000}.{code % 10000 / 100}.{code % 100}"
        : $"{code / 1000}.{code % 1000 / 100}.{code % 100}";

    /// <summary>The ncclDataType_t for a tensor dtype this program reduces (float32, float64, int64, bfloat16) and the
    /// element size; any other dtype is refused, naming it.</summary>
    public static (int DataType, int ElementSize) DataTypeOf(ScalarType dtype, string call) => dtype switch
    {
        ScalarType.Float32 => (Float32, 4),
        ScalarType.Float64 => (Float64, 8),
        ScalarType.Int64 => (Int64, 8),
        ScalarType.BFloat16 => (BFloat16, 2),
        var other => throw new CommunicatorException($"{call}: dtype {other} is not supported over NCCL here (float32, float64, int64, bfloat16); convert the tensor for the collective"),
    };

    public NcclUniqueId GetUniqueId()
    {
        NcclUniqueId id;
        Check(_getUniqueId(&id), "ncclGetUniqueId");
        return id;
    }

    /// <summary>Joins the clique: blocks until all <paramref name="worldSize"/> ranks have called it with the same id.
    /// Uses the calling thread's current CUDA device.</summary>
    public nint CommInitRank(int worldSize, NcclUniqueId id, int rank)
    {
        nint comm;
        Check(_commInitRank(&comm, worldSize, id, rank), "ncclCommInitRank");
        return comm;
    }

    /// <summary>In-place sum (sendbuff == recvbuff) of <paramref name="count"/> elements, enqueued on <paramref name="stream"/>.</summary>
    public void AllReduceSumInPlace(nint comm, void* buffer, long count, int dataType, nint stream) =>
        Check(_allReduce(buffer, buffer, (nuint)count, dataType, Sum, comm, stream), "ncclAllReduce", comm);

    /// <summary>In-place broadcast from <paramref name="root"/>, enqueued on <paramref name="stream"/>.</summary>
    public void BroadcastInPlace(nint comm, void* buffer, long count, int dataType, int root, nint stream) =>
        Check(_broadcast(buffer, buffer, (nuint)count, dataType, root, comm, stream), "ncclBroadcast", comm);

    /// <summary>ncclReduceScatter with ncclSum: <paramref name="send"/> holds N × <paramref name="blockCount"/> elements,
    /// this rank's block of the sum lands in <paramref name="receive"/>; enqueued on <paramref name="stream"/>.</summary>
    public void ReduceScatterSum(nint comm, void* send, void* receive, long blockCount, int dataType, nint stream) =>
        Check(_reduceScatter(send, receive, (nuint)blockCount, dataType, Sum, comm, stream), "ncclReduceScatter", comm);

    /// <summary>ncclAllGather of <paramref name="blockCount"/> elements per rank into <paramref name="receive"/>, in rank order.</summary>
    public void AllGather(nint comm, void* send, void* receive, long blockCount, int dataType, nint stream) =>
        Check(_allGather(send, receive, (nuint)blockCount, dataType, comm, stream), "ncclAllGather", comm);

    public void CommDestroy(nint comm) => Check(_commDestroy(comm), "ncclCommDestroy");

    /// <summary>Frees the communicator without waiting for in-flight operations (after a failure, where destroy could hang).</summary>
    public void CommAbort(nint comm) => Check(_commAbort(comm), "ncclCommAbort");

    public string ErrorString(int code)
    {
        var text = _getErrorString(code);
        return text is null ? $"ncclResult_t {code}" : Marshal.PtrToStringUTF8((nint)text) ?? $"ncclResult_t {code}";
    }

    void Check(int code, string call, nint comm = 0)
    {
        if (code == 0) return;
        var detail = "";
        if (_getLastError is not null)
        {
            var last = Marshal.PtrToStringUTF8((nint)_getLastError(comm));
            if (!string.IsNullOrWhiteSpace(last)) detail = $"; NCCL says: {last.Trim()}";
        }
        throw new CommunicatorException($"{call} failed: {ErrorString(code)} (ncclResult_t {code}){detail}. Set NCCL_DEBUG=INFO for NCCL's own log");
    }
}

/// <summary>The few CUDA driver API calls the NCCL communicator needs and TorchSharp does not expose: making a device's
/// primary context (the one the CUDA runtime, libtorch and NCCL use) current on the NCCL thread, so that
/// ncclCommInitRank binds that device and stream 0 means that device's legacy default stream; and an event recorded
/// after a collective, so the thread can wait for that collective alone. libcuda.so.1 comes with the NVIDIA driver.</summary>
public sealed unsafe class CudaDriver
{
    const int EventBlockingSync = 0x1, EventDisableTiming = 0x2;

    readonly delegate* unmanaged<uint, int> _init;
    readonly delegate* unmanaged<int*, int, int> _deviceGet;
    readonly delegate* unmanaged<nint*, int, int> _primaryCtxRetain;
    readonly delegate* unmanaged<nint, int> _ctxSetCurrent;
    readonly delegate* unmanaged<nint*, uint, int> _eventCreate;
    readonly delegate* unmanaged<nint, nint, int> _eventRecord;
    readonly delegate* unmanaged<nint, int> _eventSynchronize;
    readonly delegate* unmanaged<nint, int> _eventDestroy;
    readonly delegate* unmanaged<int, byte**, int> _getErrorString;

    CudaDriver(nint library)
    {
        nint F(string name) => NativeLibrary.TryGetExport(library, name, out var address)
            ? address
            : throw new CommunicatorException($"libcuda.so.1 does not export {name}; is the NVIDIA driver too old?");
        _init = (delegate* unmanaged<uint, int>)F("cuInit");
        _deviceGet = (delegate* unmanaged<int*, int, int>)F("cuDeviceGet");
        _primaryCtxRetain = (delegate* unmanaged<nint*, int, int>)F("cuDevicePrimaryCtxRetain");
        _ctxSetCurrent = (delegate* unmanaged<nint, int>)F("cuCtxSetCurrent");
        _eventCreate = (delegate* unmanaged<nint*, uint, int>)F("cuEventCreate");
        _eventRecord = (delegate* unmanaged<nint, nint, int>)F("cuEventRecord");
        _eventSynchronize = (delegate* unmanaged<nint, int>)F("cuEventSynchronize");
        _eventDestroy = (delegate* unmanaged<nint, int>)F("cuEventDestroy_v2");
        _getErrorString = (delegate* unmanaged<int, byte**, int>)F("cuGetErrorString");
        Check(_init(0), "cuInit");
    }

    public static CudaDriver Load() => NativeLibrary.TryLoad("libcuda.so.1", out var handle)
        ? new CudaDriver(handle)
        : throw new CommunicatorException("cannot load libcuda.so.1 (the NVIDIA driver's CUDA library); NCCL needs a machine with an NVIDIA GPU and driver");

    /// <summary>cudaSetDevice's effect through the driver API: the device's primary context becomes current on this thread.</summary>
    public void SetCurrentDevice(int ordinal)
    {
        int device;
        nint context;
        Check(_deviceGet(&device, ordinal), "cuDeviceGet");
        Check(_primaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain");
        Check(_ctxSetCurrent(context), "cuCtxSetCurrent");
    }

    /// <summary>Blocks this thread until everything enqueued on <paramref name="stream"/> so far has run (and only that:
    /// later work on the stream is not waited for). Yields the CPU while waiting.</summary>
    public void WaitForStream(nint stream)
    {
        nint ev;
        Check(_eventCreate(&ev, EventBlockingSync | EventDisableTiming), "cuEventCreate");
        try
        {
            Check(_eventRecord(ev, stream), "cuEventRecord");
            Check(_eventSynchronize(ev), "cuEventSynchronize");
        }
        finally { _eventDestroy(ev); }
    }

    void Check(int code, string call)
    {
        if (code == 0) return;
        byte* text = null;
        var message = _getErrorString(code, &text) == 0 && text is not null ? Marshal.PtrToStringUTF8((nint)text) : null;
        throw new CommunicatorException($"{call} failed: {message ?? "unknown CUDA driver error"} (CUresult {code})");
    }
}
