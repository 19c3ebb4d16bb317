using Qwen3Tts.Model.Checkpoint;

namespace Qwen3Tts.Tests.Checkpoint;

/// <summary>Broken files are refused when opened, with a message naming the file and the tensor at fault.</summary>
public class MalformedSafetensorsTests
{
    static CheckpointException OpenFails(string header, byte[] data, long? declaredHeaderLength = null, [System.Runtime.CompilerServices.CallerMemberName] string test = "")
    {
        using var dir = new TempDir();
        string path = dir.File(test + ".safetensors");
        HandWritten.File(path, header, data, declaredHeaderLength);
        var e = Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        return e;
    }

    [Fact]
    public void Truncated_buffer_names_the_tensor_that_runs_past_the_end()
    {
        var e = OpenFails("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}""",
            HandWritten.Floats(1, 2, 3, 4, 5)); // 20 of the 24 bytes
        Assert.Contains("tensor 'w'", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void Overlapping_offsets_name_both_tensors()
    {
        var e = OpenFails("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}""",
            HandWritten.Floats(1, 2, 3, 4, 5, 6));
        Assert.Contains("tensor 'b'", e.Message);
        Assert.Contains("overlapping tensor 'a'", e.Message);
    }

    [Fact]
    public void Unknown_dtype_is_named()
    {
        var e = OpenFails("""{"w":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}}""", HandWritten.Floats(1));
        Assert.Contains("tensor 'w'", e.Message);
        Assert.Contains("'F31'", e.Message);
    }

    [Fact]
    public void Header_length_beyond_the_file_is_refused()
    {
        var e = OpenFails("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", HandWritten.Floats(1), declaredHeaderLength: 4096);
        Assert.Contains("4096-byte header", e.Message);
    }

    [Fact]
    public void Size_not_matching_the_shape_is_refused()
    {
        var e = OpenFails("""{"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}}""", HandWritten.UShorts(1, 2, 3, 4));
        Assert.Contains("tensor 'w'", e.Message);
        Assert.Contains("6 bytes", e.Message);
    }

    [Fact]
    public void Gaps_and_trailing_bytes_are_refused()
    {
        var gap = OpenFails("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""",
            HandWritten.Floats(1, 2, 3));
        Assert.Contains("tensor 'b'", gap.Message);
        Assert.Contains("gap", gap.Message);

        var trailing = OpenFails("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", HandWritten.Floats(1, 2));
        Assert.Contains("4 bytes after the last tensor", trailing.Message);
    }

    [Fact]
    public void Malformed_header_json_and_fields_are_refused()
    {
        Assert.Contains("not valid JSON", OpenFails("""{"w":{"dtype":"F32",""", []).Message);
        Assert.Contains("tensor 'w'", OpenFails("""{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", HandWritten.Floats(1)).Message);
        Assert.Contains("tensor 'w'", OpenFails("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}""", HandWritten.Floats(1)).Message);
        Assert.Contains("tensor 'w'", OpenFails("""{"w":{"shape":[1],"data_offsets":[0,4]}}""", HandWritten.Floats(1)).Message);
        Assert.Contains("tensor 'w'", OpenFails("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", HandWritten.Floats(1)).Message);
        Assert.Contains("__metadata__", OpenFails("""{"__metadata__":{"step":3},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", HandWritten.Floats(1)).Message);
        Assert.Contains("overflows", OpenFails("""{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}""", HandWritten.Floats(1)).Message);
    }

    [Fact]
    public void A_file_shorter_than_the_length_prefix_is_refused()
    {
        using var dir = new TempDir();
        string path = dir.File("tiny.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        var e = Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path));
        Assert.Contains(path, e.Message);
    }
}
