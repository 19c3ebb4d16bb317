using Qwen3Tts.Model.Checkpoint;
using TorchSharp;
using static TorchSharp.torch;

namespace Qwen3Tts.Tests.Checkpoint;

/// <summary>What the writer puts on disk, checked with the test's own minimal parser.</summary>
public class SafetensorsWriteTests
{
    [Fact]
    public void Written_file_parses_by_hand_with_aligned_data_and_a_space_padded_header()
    {
        using var dir = new TempDir();
        string path = dir.File("w.safetensors");
        using var weight = tensor(new float[] { 1, 2, 3, 4, 5, 6 }).reshape(2, 3);
        using var ids = tensor(new long[] { -1, 1L << 40 });
        using var half = tensor(new float[] { 1f, -3f, 0.5f }).to_type(ScalarType.BFloat16);
        using var scalar = tensor(2.5f);
        Safetensors.Save(path, [("b.weight", weight), ("half", half), ("ids", ids), ("a.scale", scalar)]);

        var p = MinimalParse.Of(File.ReadAllBytes(path));
        // The JSON, then spaces up to the next multiple of 8.
        string json = p.HeaderText.TrimEnd(' ');
        Assert.EndsWith("}", json);
        Assert.Equal((ulong)((json.Length + 7) / 8 * 8), p.HeaderLength);
        Assert.StartsWith("""{"__metadata__":{"format":"pt"},"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"a.scale":{"dtype":"F32","shape":[],"data_offsets":[16,20]},""", p.HeaderText);
        Assert.Equal(new Dictionary<string, string> { ["format"] = "pt" }, p.Metadata);

        // Descending alignment (I64, F32, BF16), then name: every tensor starts at a multiple of its element size.
        Assert.Equal(new[] { "ids", "a.scale", "b.weight", "half" }, p.Entries.Select(e => e.Name));
        Assert.Equal(new[] { (0L, 16L), (16L, 20L), (20L, 44L), (44L, 50L) }, p.Entries.Select(e => (e.Begin, e.End)));
        Assert.Equal(new[] { "I64", "F32", "F32", "BF16" }, p.Entries.Select(e => e.Dtype));
        Assert.Equal(new long[] { 2, 3 }, p.Entries.Single(e => e.Name == "b.weight").Shape);
        Assert.Empty(p.Entries.Single(e => e.Name == "a.scale").Shape);
        Assert.Equal(50, p.Buffer.Length);

        Assert.Equal(HandWritten.Longs(-1, 1L << 40), p.Data("ids"));
        Assert.Equal(HandWritten.Floats(2.5f), p.Data("a.scale"));
        Assert.Equal(HandWritten.Floats(1, 2, 3, 4, 5, 6), p.Data("b.weight"));
        Assert.Equal(HandWritten.UShorts(0x3F80, 0xC040, 0x3F00), p.Data("half"));
    }

    [Fact]
    public void Header_is_padded_with_0_to_7_spaces_to_a_multiple_of_8()
    {
        using var dir = new TempDir();
        using var x = ones(1);
        var paddings = new HashSet<int>();
        for (int length = 1; length <= 8; length++)
        {
            string path = dir.File($"{length}.safetensors");
            Safetensors.Save(path, [(new string('x', length), x)]);
            var p = MinimalParse.Of(File.ReadAllBytes(path));
            Assert.Equal(0UL, p.HeaderLength % 8);
            string json = p.HeaderText.TrimEnd(' ');
            Assert.EndsWith("}}", json);
            paddings.Add(p.HeaderText.Length - json.Length);
        }
        // Eight consecutive name lengths hit every residue, so every padding from 0 to 7 occurs once.
        Assert.Equal(Enumerable.Range(0, 8).ToHashSet(), paddings);
    }

    [Fact]
    public void Non_contiguous_tensors_are_written_in_logical_order()
    {
        using var dir = new TempDir();
        string path = dir.File("nc.safetensors");
        using var grid = arange(12, dtype: ScalarType.Float32).reshape(3, 4);
        using var transposed = grid.t();                       // [4, 3], strides (1, 4)
        using var column = grid.narrow(1, 1, 2);               // [3, 2], offset storage
        using var stepped = grid.select(0, 2).slice(0, 0, 4, 2); // [2], stride 2
        Assert.False(transposed.is_contiguous());
        Assert.False(column.is_contiguous());
        Safetensors.Save(path, [("t", transposed), ("c", column), ("s", stepped)]);

        var p = MinimalParse.Of(File.ReadAllBytes(path));
        Assert.Equal(new long[] { 4, 3 }, p.Entries.Single(e => e.Name == "t").Shape);
        Assert.Equal(HandWritten.Floats(0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11), p.Data("t"));
        Assert.Equal(HandWritten.Floats(1, 2, 5, 6, 9, 10), p.Data("c"));
        Assert.Equal(HandWritten.Floats(8, 10), p.Data("s"));
    }

    [Fact]
    public void Output_is_deterministic_whatever_the_input_order()
    {
        using var dir = new TempDir();
        using var a = randn(3, 5);
        using var b = randn(7).to_type(ScalarType.BFloat16);
        using var c = randint(0, 100, [4], dtype: ScalarType.Int64);
        Safetensors.Save(dir.File("1.safetensors"), [("a", a), ("b", b), ("c", c)]);
        Safetensors.Save(dir.File("2.safetensors"), [("c", c), ("a", a), ("b", b)]);
        Safetensors.Save(dir.File("3.safetensors"), [("b", b), ("c", c), ("a", a)]);
        var first = File.ReadAllBytes(dir.File("1.safetensors"));
        Assert.Equal(first, File.ReadAllBytes(dir.File("2.safetensors")));
        Assert.Equal(first, File.ReadAllBytes(dir.File("3.safetensors")));
    }

    [Fact]
    public void Given_metadata_is_kept_alongside_format_pt()
    {
        using var dir = new TempDir();
        string path = dir.File("m.safetensors");
        using var x = ones(2);
        Safetensors.Save(path, [("x", x)], new Dictionary<string, string> { ["step"] = "100", ["run"] = "é" });
        var p = MinimalParse.Of(File.ReadAllBytes(path));
        Assert.Equal(new Dictionary<string, string> { ["format"] = "pt", ["run"] = "é", ["step"] = "100" }, p.Metadata);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal("100", file.Metadata["step"]);
    }

    [Fact]
    public void Saving_replaces_the_file_atomically_and_leaves_no_temporary_files()
    {
        using var dir = new TempDir();
        string path = dir.File("r.safetensors");
        using var one = ones(4);
        using var two = full(6, 2f);
        Safetensors.Save(path, [("x", one)]);
        Safetensors.Save(path, [("x", two)]);
        Assert.Equal(new[] { "r.safetensors" }, Directory.GetFiles(dir.Path).Select(Path.GetFileName));
        using (var file = SafetensorsFile.Open(path))
        using (var x = file.Read("x"))
            Assert.Equal(new[] { 2f, 2f, 2f, 2f, 2f, 2f }, x.data<float>().ToArray());

        // A save that fails leaves the previous file as it was, and no temporary file.
        var before = File.ReadAllBytes(path);
        Assert.Throws<CheckpointException>(() => Safetensors.Save(path, [("x", one), ("x", two)]));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void Unstorable_dtypes_and_bad_names_are_refused_naming_the_tensor()
    {
        using var dir = new TempDir();
        string path = dir.File("bad.safetensors");
        using var complex = zeros(2, dtype: ScalarType.ComplexFloat64);
        var e = Assert.Throws<CheckpointException>(() => Safetensors.Save(path, [("z", complex)]));
        Assert.Contains("'z'", e.Message);
        Assert.Contains("ComplexFloat64", e.Message);

        using var x = ones(1);
        Assert.Contains("__metadata__", Assert.Throws<CheckpointException>(() => Safetensors.Save(path, [("__metadata__", x)])).Message);
        Assert.Contains("'x'", Assert.Throws<CheckpointException>(() => Safetensors.Save(path, [("x", x), ("x", x)])).Message);
        Assert.False(File.Exists(path));
    }
    /// <summary>A meta-device placeholder is filled when its turn to be written comes (ZeRO streams gathered tensors this
    /// way): the file equals one written from the real tensors; a fill of the wrong shape, or none, is refused.</summary>
    [Fact]
    public void Placeholders_are_filled_as_they_are_written()
    {
        using var dir = new TempDir();
        using var a = tensor(new float[] { 1, 2, 3, 4 }).reshape(2, 2);
        using var b = tensor(new float[] { 5, 6, 7 });
        Safetensors.Save(dir.File("real.safetensors"), [("a", a), ("b", b)]);
        using var placeholder = zeros(new long[] { 2, 2 }, ScalarType.Float32, new Device("meta"));
        var asked = new List<string>();
        Safetensors.Save(dir.File("filled.safetensors"), [("a", placeholder), ("b", b)], fill: name =>
        {
            asked.Add(name);
            return a.clone();
        });
        Assert.Equal(["a"], asked);
        Assert.Equal(File.ReadAllBytes(dir.File("real.safetensors")), File.ReadAllBytes(dir.File("filled.safetensors")));

        var wrong = Assert.Throws<CheckpointException>(() => Safetensors.Save(dir.File("wrong.safetensors"), [("a", placeholder)], fill: _ => b.clone()));
        Assert.Contains("'a' was filled as Float32 [3], planned Float32 [2, 2]", wrong.Message);
        Assert.Throws<CheckpointException>(() => Safetensors.Save(dir.File("none.safetensors"), [("a", placeholder)]));
        Assert.False(File.Exists(dir.File("wrong.safetensors")));
    }
}
