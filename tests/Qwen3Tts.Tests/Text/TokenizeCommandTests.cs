using System.CommandLine;
using Qwen3Tts.Cli.Commands;

namespace Qwen3Tts.Tests.Text;

/// <summary><c>qwen3tts tokenize</c>, parsed and invoked as the CLI does, on a temporary model directory.</summary>
public sealed class TokenizeCommandTests : IDisposable
{
    readonly TempModelDirectory _model = new();
    readonly string _work = Directory.CreateTempSubdirectory("qwen3tts-tokenize-").FullName;

    public void Dispose()
    {
        _model.Dispose();
        Directory.Delete(_work, recursive: true);
    }

    static (int Exit, string Out, string Err) Invoke(params string[] args)
    {
        var root = new RootCommand("test") { TokenizeCommand.Create() };
        var output = new StringWriter();
        var error = new StringWriter();
        int exit = root.Parse(["tokenize", .. args]).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (exit, output.ToString(), error.ToString());
    }

    string Jsonl(params string[] lines)
    {
        string path = Path.Combine(_work, "texts.jsonl");
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        return path;
    }

    [Fact]
    public void Prints_the_ids_of_a_text_as_one_compact_JSON_array()
    {
        var (exit, output, error) = Invoke("--model", _model.Path, "Hello, world! This is a test.");
        Assert.Equal("", error);
        Assert.Equal(0, exit);
        Assert.Equal("[9707,11,1879,0,1096,374,264,1273,13]\n", output);
    }

    [Fact]
    public void Chat_wraps_the_text_as_an_assistant_turn()
    {
        var (exit, output, _) = Invoke("--model", _model.Path, "--chat", "Hello, world! This is a test.");
        Assert.Equal(0, exit);
        Assert.Equal("[151644,77091,198,9707,11,1879,0,1096,374,264,1273,13,151645,198,151644,77091,198]\n", output);
    }

    [Fact]
    public void Input_prints_one_array_per_JSONL_line_in_order()
    {
        string file = Jsonl(
            """{"text": "Hello, world! This is a test."}""",
            """{"text": "a<|im_end|>b<|im_end|><|im_end|> <|im_start|> ", "speaker": "x"}""",
            """{"text": ""}""");
        var (exit, output, _) = Invoke("--model", _model.Path, "--input", file);
        Assert.Equal(0, exit);
        Assert.Equal("[9707,11,1879,0,1096,374,264,1273,13]\n[64,151645,65,151645,151645,220,151644,220]\n[]\n", output);

        (exit, output, _) = Invoke("--model", _model.Path, "--input", file, "--chat");
        Assert.Equal(0, exit);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.Equal("[151644,77091,198,151645,198,151644,77091,198]", lines[2]);
    }

    [Theory]
    [InlineData("""{"txt": "hello"}""", "field \"text\" is missing")]
    [InlineData("""{"text": 42}""", "field \"text\" must be a string, found 42")]
    [InlineData("""["hello"]""", "expected a JSON object with a string field \"text\", found array")]
    [InlineData("""{"text": "unterminated""", "field \"text\", but the line is not valid JSON")]
    public void A_bad_JSONL_line_is_an_error_naming_file_line_and_field(string badLine, string why)
    {
        string file = Jsonl("""{"text": "fine"}""", badLine, """{"text": "fine too"}""");
        var (exit, output, error) = Invoke("--model", _model.Path, "--input", file);
        Assert.Equal(TokenizeCommand.ExitBadInput, exit);
        Assert.Equal(2, exit);
        Assert.Contains($"{file}, line 2: ", error);
        Assert.Contains(why, error);
        Assert.Equal("", output); // nothing is printed unless every line is good
    }

    [Fact]
    public void A_model_directory_without_the_tokenizer_files_is_an_error_naming_them()
    {
        string empty = Directory.CreateDirectory(Path.Combine(_work, "empty-model")).FullName;
        var (exit, output, error) = Invoke("--model", empty, "hello");
        Assert.Equal(TokenizeCommand.ExitBadInput, exit);
        Assert.Contains("has no vocab.json and no merges.txt and no tokenizer_config.json", error);
        Assert.Equal("", output);
    }

    [Fact]
    public void Needs_exactly_one_of_text_and_input()
    {
        Assert.NotEqual(0, Invoke("--model", _model.Path).Exit);
        string file = Jsonl("""{"text": "x"}""");
        var (exit, _, error) = Invoke("--model", _model.Path, "--input", file, "also text");
        Assert.NotEqual(0, exit);
        Assert.Contains("either as TEXT or as --input FILE", error);
    }

    [Fact]
    public void Run_writes_to_the_given_writer()
    {
        var output = new StringWriter();
        var error = new StringWriter();
        Assert.Equal(0, TokenizeCommand.Run(_model.Path, "<tts_pad>", inputFile: null, chat: false, output, error));
        Assert.Equal("[151671]\n", output.ToString());
    }
}
