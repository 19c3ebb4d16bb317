using Qwen3Tts.Model.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model;

/// <summary>Seeded random weights as the reference's _init_weights: weights of Linear, Conv1d and
/// Embedding ~ N(0, std), biases zero, RMSNorm scales one. Deterministic for a seed: modules are
/// visited in registration order with one generator.</summary>
public static class ModelInit
{
    public static void Initialize(nn.Module root, ulong seed, double std)
    {
        using var generator = new Generator(seed);
        using var noGrad = no_grad();
        foreach (var (_, module) in root.named_modules())
        {
            switch (module)
            {
                case Linear linear:
                    linear.weight!.normal_(0, std, generator);
                    linear.bias?.zero_();
                    break;
                case Conv1d conv:
                    conv.weight!.normal_(0, std, generator);
                    conv.bias?.zero_();
                    break;
                case Embedding embedding:
                    embedding.weight!.normal_(0, std, generator);
                    break;
                case RmsNorm norm:
                    foreach (var (_, p) in norm.named_parameters()) p.fill_(1.0);
                    break;
            }
        }
    }
}
