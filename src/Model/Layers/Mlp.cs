using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Layers;

/// <summary>SwiGLU feed-forward: down(silu(gate(x)) * up(x)).</summary>
public sealed class Mlp : nn.Module<Tensor, Tensor>
{
    readonly Linear gate_proj, up_proj, down_proj;

    public Mlp(long hidden, long intermediate, Device? device = null, ScalarType? dtype = null) : base(nameof(Mlp))
    {
        gate_proj = nn.Linear(hidden, intermediate, hasBias: false, device: device, dtype: dtype);
        up_proj = nn.Linear(hidden, intermediate, hasBias: false, device: device, dtype: dtype);
        down_proj = nn.Linear(intermediate, hidden, hasBias: false, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return ParameterUse.Linear(down_proj, nn.functional.silu(ParameterUse.Linear(gate_proj, x)) * ParameterUse.Linear(up_proj, x)).MoveToOuterDisposeScope();
    }
}

/// <summary>Two-layer MLP that changes width (the talker's text_projection: text_hidden → hidden).</summary>
public sealed class ResizeMlp : nn.Module<Tensor, Tensor>
{
    readonly Linear linear_fc1, linear_fc2;

    public ResizeMlp(long input, long intermediate, long output, bool bias, Device? device = null, ScalarType? dtype = null) : base(nameof(ResizeMlp))
    {
        linear_fc1 = nn.Linear(input, intermediate, hasBias: bias, device: device, dtype: dtype);
        linear_fc2 = nn.Linear(intermediate, output, hasBias: bias, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return ParameterUse.Linear(linear_fc2, nn.functional.silu(ParameterUse.Linear(linear_fc1, x))).MoveToOuterDisposeScope();
    }
}
