using System.CommandLine;
using Qwen3Tts.Entry.Hub;

namespace Qwen3Tts.Cli.Commands;

/// <summary>qwen3tts hub-upload: publishes a folder to a Hub repo in one commit (created when missing; files the repo
/// holds already are not sent again): what the trainer's --upload_to_hub does with OUTPUT/hub/best and last, by hand,
/// or again after a failed upload.</summary>
public static class HubUploadCommand
{
    public static Command Create()
    {
        var folder = new Argument<string>("DIR") { Description = "the folder to publish (e.g. OUTPUT/hub/best, OUTPUT/custom_voice, a folder of prepared Parquet shards)" };
        var repo = new Option<string>("--repo") { Description = "the repo id (owner/name)", Required = true };
        var repoType = new Option<string>("--repo_type", "--repo-type") { Description = "model (default) or dataset", DefaultValueFactory = _ => "model" };
        var isPrivate = new Option<bool>("--private") { Description = "create the repo private (an existing repo keeps its visibility)" };
        var message = new Option<string?>("--message", "-m") { Description = "the commit message (default: Upload DIR's name)" };
        var token = new Option<string?>("--hub_token", "--hub-token") { Description = "a Hub token with write access (default HF_TOKEN; a flag shows in the process list, the variable does not)" };
        var command = new Command("hub-upload", "Publish a folder to a Hugging Face Hub repo through the commit API (LFS for weights; unchanged files are not sent again).")
        {
            folder, repo, repoType, isPrivate, message, token,
        };
        command.SetAction(parse =>
        {
            string dir = parse.GetValue(folder)!, id = parse.GetValue(repo)!, type = parse.GetValue(repoType)!;
            if (!HubRepo.LooksLikeId(id)) throw new ArgumentException($"--repo: '{id}' is not a Hub repo id (owner/name)");
            if (type is not ("model" or "dataset")) throw new ArgumentException($"--repo_type: must be model or dataset, got '{type}'");
            if (!Directory.Exists(dir)) throw new ArgumentException($"DIR: no such folder: {dir}");
            string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;
            string writeToken = parse.GetValue(token) ?? Env("HF_TOKEN") ?? Env("HUGGING_FACE_HUB_TOKEN")
                ?? throw new ArgumentException("no token to write with: set HF_TOKEN (or --hub_token) to a Hub token with write access");
            var uploader = HubUploader.Create(Env("HF_ENDPOINT") ?? HubApi.DefaultEndpoint, writeToken, Console.Out);
            string name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)));
            var result = uploader.UploadFolderAsync(new HubRepo(id, type == "model" ? HubRepoType.Model : HubRepoType.Dataset), dir,
                parse.GetValue(message) ?? $"Upload {name}/", parse.GetValue(isPrivate)).GetAwaiter().GetResult();
            Console.WriteLine(result.CommitOid is null ? $"{id} already holds {dir} as it is" : $"published {dir} to {id}: {result.CommitUrl ?? result.CommitOid}");
            return 0;
        });
        return command;
    }
}
