using System.Runtime.InteropServices;
using System.Text;

namespace Qwen3Tts.Rank.Distributed;

/// <summary>The two MPI ABIs in use on Linux. MPICH's covers its derivatives (Intel MPI, MVAPICH, Cray MPICH).</summary>
public enum MpiFlavor { OpenMpi, Mpich }

/// <summary>The handles and constants whose representation differs between MPI implementations, in one place.
///
/// Open MPI: MPI_Comm / MPI_Datatype / MPI_Op / MPI_Errhandler are pointers, and each predefined handle is the
/// ADDRESS of an exported global (mpi.h: <c>#define MPI_COMM_WORLD OMPI_PREDEFINED_GLOBAL(MPI_Comm, ompi_mpi_comm_world)</c>,
/// i.e. <c>&amp;ompi_mpi_comm_world</c>), which <see cref="NativeLibrary.GetExport"/> returns; MPI_IN_PLACE is <c>(void*)1</c>.
///
/// MPICH: the same handle types are <c>typedef int</c> with fixed values (checked against
/// /usr/include/x86_64-linux-gnu/mpich/mpi.h, MPICH 4.0.2); MPI_IN_PLACE is <c>(void*)-1</c>.
///
/// Both are passed here as <see cref="nint"/>. Why that is correct for MPICH's <c>int</c> handles: in the x86-64 System V
/// ABI (and AArch64 AAPCS64) integer and pointer arguments travel in 64-bit registers (RDI, RSI, RDX, RCX, R8, R9; x0-x7)
/// or 8-byte stack slots; a callee declared with an <c>int</c> parameter reads only the low 32 bits, whose value is
/// the same whether the caller wrote a 32-bit int or a 64-bit integer holding that int zero-extended (little-endian, so
/// the low half of a stack slot is its first 4 bytes too). All MPICH handle values are positive and below 2^31. The widest
/// call here (MPI_Allreduce) has six arguments, so every argument is in a register anyway.</summary>
public sealed record MpiAbi(
    MpiFlavor Flavor, nint CommWorld, nint Float, nint Double, nint Int64, nint Byte, nint OpSum, nint ErrorsReturn, nint InPlace)
{
    /// <summary>MPICH's constants (mpich/mpi.h: MPI_COMM_WORLD, MPI_FLOAT, MPI_DOUBLE, MPI_INT64_T, MPI_BYTE, MPI_SUM,
    /// MPI_ERRORS_RETURN, MPI_IN_PLACE).</summary>
    public static MpiAbi Mpich { get; } = new(MpiFlavor.Mpich,
        CommWorld: 0x44000000, Float: 0x4c00040a, Double: 0x4c00080b, Int64: 0x4c00083a, Byte: 0x4c00010d,
        OpSum: 0x58000003, ErrorsReturn: 0x54000001, InPlace: -1);

    /// <summary>Open MPI's handles: the addresses of its predefined objects in <paramref name="library"/>.</summary>
    public static MpiAbi OpenMpi(nint library)
    {
        nint Global(string name) => NativeLibrary.TryGetExport(library, name, out var address)
            ? address
            : throw new CommunicatorException($"the Open MPI library does not export {name}; is it Open MPI 3.x-5.x?");
        return new(MpiFlavor.OpenMpi,
            CommWorld: Global("ompi_mpi_comm_world"), Float: Global("ompi_mpi_float"), Double: Global("ompi_mpi_double"),
            Int64: Global("ompi_mpi_int64_t"), Byte: Global("ompi_mpi_byte"), OpSum: Global("ompi_mpi_op_sum"),
            ErrorsReturn: Global("ompi_mpi_errors_return"), InPlace: 1);
    }

    /// <summary>The ABI of a loaded library: Open MPI exports its predefined objects; everything else is MPICH-ABI.</summary>
    public static MpiAbi Of(nint library) =>
        NativeLibrary.TryGetExport(library, "ompi_mpi_comm_world", out _) ? OpenMpi(library) : Mpich;
}

/// <summary>The MPI calls this program makes, over whichever libmpi the launcher implies, without MPI.NET (whose
/// NuGet binary P/Invokes Windows' msmpi.dll). Every non-zero return code becomes a <see cref="CommunicatorException"/>
/// carrying the call name and MPI_Error_string's text. Not thread-safe: <see cref="MpiCommunicator"/> makes every call
/// from the one thread that initialized MPI.</summary>
public sealed unsafe class Mpi
{
    public const int ThreadSingle = 0, ThreadFunneled = 1, ThreadSerialized = 2, ThreadMultiple = 3; // same in both ABIs

    readonly delegate* unmanaged<int*, byte***, int, int*, int> _initThread;
    readonly delegate* unmanaged<int*, int> _initialized;
    readonly delegate* unmanaged<int*, int> _finalized;
    readonly delegate* unmanaged<nint, int*, int> _commRank;
    readonly delegate* unmanaged<nint, int*, int> _commSize;
    readonly delegate* unmanaged<nint, nint, int> _commSetErrhandler;
    readonly delegate* unmanaged<void*, void*, int, nint, nint, nint, int> _allreduce;
    readonly delegate* unmanaged<void*, int, nint, int, nint, int> _bcast;
    readonly delegate* unmanaged<void*, void*, int, nint, nint, nint, int> _reduceScatterBlock;
    readonly delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int> _allgather;
    readonly delegate* unmanaged<nint, int> _barrier;
    readonly delegate* unmanaged<nint, int, int> _abort;
    readonly delegate* unmanaged<int> _finalize;
    readonly delegate* unmanaged<int, byte*, int*, int> _errorString;
    readonly delegate* unmanaged<byte*, int*, int> _getLibraryVersion;

    public MpiAbi Abi { get; }

    /// <summary>The file the library was loaded from (or the loader name that resolved).</summary>
    public string LibraryPath { get; }

    Mpi(nint library, string path)
    {
        LibraryPath = path;
        Abi = MpiAbi.Of(library);
        nint F(string name) => NativeLibrary.TryGetExport(library, name, out var address)
            ? address
            : throw new CommunicatorException($"{path} does not export {name}; is it an MPI library?");
        _initThread = (delegate* unmanaged<int*, byte***, int, int*, int>)F("MPI_Init_thread");
        _initialized = (delegate* unmanaged<int*, int>)F("MPI_Initialized");
        _finalized = (delegate* unmanaged<int*, int>)F("MPI_Finalized");
        _commRank = (delegate* unmanaged<nint, int*, int>)F("MPI_Comm_rank");
        _commSize = (delegate* unmanaged<nint, int*, int>)F("MPI_Comm_size");
        _commSetErrhandler = (delegate* unmanaged<nint, nint, int>)F("MPI_Comm_set_errhandler");
        _allreduce = (delegate* unmanaged<void*, void*, int, nint, nint, nint, int>)F("MPI_Allreduce");
        _bcast = (delegate* unmanaged<void*, int, nint, int, nint, int>)F("MPI_Bcast");
        _reduceScatterBlock = (delegate* unmanaged<void*, void*, int, nint, nint, nint, int>)F("MPI_Reduce_scatter_block");
        _allgather = (delegate* unmanaged<void*, int, nint, void*, int, nint, nint, int>)F("MPI_Allgather");
        _barrier = (delegate* unmanaged<nint, int>)F("MPI_Barrier");
        _abort = (delegate* unmanaged<nint, int, int>)F("MPI_Abort");
        _finalize = (delegate* unmanaged<int>)F("MPI_Finalize");
        _errorString = (delegate* unmanaged<int, byte*, int*, int>)F("MPI_Error_string");
        _getLibraryVersion = (delegate* unmanaged<byte*, int*, int>)F("MPI_Get_library_version");
    }

    /// <summary>Loads the MPI library named by <see cref="EnvVars.MpiLibrary"/>, else the one the launcher implies
    /// (see <see cref="Candidates"/>). The error lists every path tried and why each failed.</summary>
    public static Mpi Load(IReadOnlyDictionary<string, string> env)
    {
        var failures = new List<string>();
        foreach (var candidate in Candidates(env))
        {
            if (candidate.Contains('/') && !File.Exists(candidate)) { failures.Add($"{candidate}: no such file"); continue; }
            // RTLD_GLOBAL, as mpi4py does: Open MPI's dlopen'ed components resolve symbols of libmpi/libopen-pal
            // through the global namespace; NativeLibrary.Load alone opens with RTLD_LOCAL.
            var global = Dl.OpenGlobal(candidate, out var dlError);
            if (global == 0) { failures.Add($"{candidate}: {dlError}"); continue; }
            return new Mpi(NativeLibrary.Load(candidate), candidate);
        }
        throw new CommunicatorException(
            "cannot load an MPI library; tried:\n  " + string.Join("\n  ", failures) +
            $"\nInstall Open MPI (libopenmpi3) or MPICH (libmpich12), or set {EnvVars.MpiLibrary} to the libmpi to use");
    }

    /// <summary>Where to look, in order: the explicit override alone if set; else the launcher's own library first
    /// (MPICH for PMI_*/HYDRA_* without OMPI_COMM_WORLD_*, else Open MPI), then the other, each in the Debian/Ubuntu multiarch
    /// directories and then by loader name (LD_LIBRARY_PATH, ld.so.cache).</summary>
    public static IReadOnlyList<string> Candidates(IReadOnlyDictionary<string, string> env)
    {
        if (env.TryGetValue(EnvVars.MpiLibrary, out var explicitLib) && !string.IsNullOrWhiteSpace(explicitLib))
            return [explicitLib.Trim()];
        string[] openMpi =
        [
            "/usr/lib/x86_64-linux-gnu/openmpi/lib/libmpi.so.40", "/usr/lib/x86_64-linux-gnu/libmpi.so.40",
            "/usr/lib/aarch64-linux-gnu/openmpi/lib/libmpi.so.40", "/usr/lib/aarch64-linux-gnu/libmpi.so.40", "libmpi.so.40",
        ];
        string[] mpich =
        [
            "/usr/lib/x86_64-linux-gnu/libmpich.so.12", "/usr/lib/aarch64-linux-gnu/libmpich.so.12", "libmpich.so.12",
            "libmpi.so.12", // MPICH installed from source, Intel MPI
        ];
        bool mpichLaunch = env.ContainsKey(EnvVars.PmiRank) || env.ContainsKey(EnvVars.PmiSize) ||
                           env.Keys.Any(k => k.StartsWith(EnvVars.HydraPrefix, StringComparison.Ordinal));
        // Not any OMPI_* variable: users export OMPI_ALLOW_RUN_AS_ROOT or OMPI_MCA_* globally, and mpiexec.mpich passes them on.
        bool openMpiLaunch = env.ContainsKey(EnvVars.OmpiRank) || env.ContainsKey(EnvVars.OmpiSize);
        var ordered = mpichLaunch && !openMpiLaunch ? mpich.Concat(openMpi) : openMpi.Concat(mpich);
        return ordered.Where(p => !p.Contains('/') || p.Contains(RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? "aarch64" : "x86_64")).ToList();
    }

    public int InitThread(int required)
    {
        int provided;
        Check(_initThread(null, null, required, &provided), "MPI_Init_thread");
        return provided;
    }

    public bool Initialized() { int flag; Check(_initialized(&flag), "MPI_Initialized"); return flag != 0; }
    public bool Finalized() { int flag; Check(_finalized(&flag), "MPI_Finalized"); return flag != 0; }
    public int CommRank() { int rank; Check(_commRank(Abi.CommWorld, &rank), "MPI_Comm_rank"); return rank; }
    public int CommSize() { int size; Check(_commSize(Abi.CommWorld, &size), "MPI_Comm_size"); return size; }

    /// <summary>MPI_ERRORS_RETURN on MPI_COMM_WORLD, so failures come back as codes (the default aborts the job).</summary>
    public void SetErrorsReturn() => Check(_commSetErrhandler(Abi.CommWorld, Abi.ErrorsReturn), "MPI_Comm_set_errhandler");

    /// <summary>In-place MPI_SUM over MPI_COMM_WORLD of <paramref name="count"/> elements at <paramref name="buffer"/>.</summary>
    public void AllreduceSumInPlace(void* buffer, int count, nint datatype) =>
        Check(_allreduce((void*)Abi.InPlace, buffer, count, datatype, Abi.OpSum, Abi.CommWorld), "MPI_Allreduce");

    public void Bcast(void* buffer, int count, nint datatype, int root) =>
        Check(_bcast(buffer, count, datatype, root, Abi.CommWorld), "MPI_Bcast");

    public void Barrier() => Check(_barrier(Abi.CommWorld), "MPI_Barrier");

    /// <summary>MPI_Reduce_scatter_block with MPI_SUM: <paramref name="send"/> holds size × <paramref name="blockCount"/>
    /// elements; this rank's block of the sum lands in <paramref name="receive"/>.</summary>
    public void ReduceScatterBlockSum(void* send, void* receive, int blockCount, nint datatype) =>
        Check(_reduceScatterBlock(send, receive, blockCount, datatype, Abi.OpSum, Abi.CommWorld), "MPI_Reduce_scatter_block");

    /// <summary>MPI_Allgather of <paramref name="blockCount"/> elements from every rank into <paramref name="receive"/>, in rank order.</summary>
    public void Allgather(void* send, void* receive, int blockCount, nint datatype) =>
        Check(_allgather(send, blockCount, datatype, receive, blockCount, datatype, Abi.CommWorld), "MPI_Allgather");

    /// <summary>Asks the launcher to kill every rank; normally does not return.</summary>
    public void Abort(int exitCode) => Check(_abort(Abi.CommWorld, exitCode), "MPI_Abort");

    public void FinalizeMpi() => Check(_finalize(), "MPI_Finalize");

    /// <summary>MPI_Get_library_version, e.g. "Open MPI v4.1.4, package: ..." or "MPICH Version: 4.0.2\n...".</summary>
    public string LibraryVersion()
    {
        const int max = 8192; // MPICH's MPI_MAX_LIBRARY_VERSION_STRING; Open MPI's is 256
        var buffer = stackalloc byte[max];
        int length;
        Check(_getLibraryVersion(buffer, &length), "MPI_Get_library_version");
        return Encoding.UTF8.GetString(buffer, Math.Clamp(length, 0, max)).TrimEnd('\0');
    }

    public string ErrorString(int code)
    {
        const int max = 1024; // MPI_MAX_ERROR_STRING: Open MPI 256, MPICH 512
        var buffer = stackalloc byte[max];
        int length = 0;
        return _errorString(code, buffer, &length) == 0
            ? Encoding.UTF8.GetString(buffer, Math.Clamp(length, 0, max)).TrimEnd('\0')
            : $"MPI error code {code} (MPI_Error_string failed too)";
    }

    void Check(int code, string call)
    {
        if (code != 0) throw new CommunicatorException($"{call} failed: {ErrorString(code)} (MPI error code {code})");
    }

    /// <summary>dlopen with RTLD_GLOBAL (glibc ≥ 2.34 exports it from libc.so.6; older glibc from libdl.so.2).</summary>
    static class Dl
    {
        const int RtldNow = 0x2, RtldGlobal = 0x100;

        [DllImport("libc.so.6", EntryPoint = "dlopen")] static extern nint DlopenLibc(string file, int mode);
        [DllImport("libc.so.6", EntryPoint = "dlerror")] static extern nint DlerrorLibc();
        [DllImport("libdl.so.2", EntryPoint = "dlopen")] static extern nint DlopenLibdl(string file, int mode);
        [DllImport("libdl.so.2", EntryPoint = "dlerror")] static extern nint DlerrorLibdl();

        public static nint OpenGlobal(string file, out string error)
        {
            nint handle;
            try
            {
                handle = DlopenLibc(file, RtldNow | RtldGlobal);
                error = handle == 0 ? Marshal.PtrToStringUTF8(DlerrorLibc()) ?? "dlopen failed" : "";
            }
            catch (EntryPointNotFoundException)
            {
                handle = DlopenLibdl(file, RtldNow | RtldGlobal);
                error = handle == 0 ? Marshal.PtrToStringUTF8(DlerrorLibdl()) ?? "dlopen failed" : "";
            }
            return handle;
        }
    }
}
