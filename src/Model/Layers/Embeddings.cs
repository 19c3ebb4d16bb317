using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Qwen3Tts.Model.Layers;

/// <summary>nn.Embedding that honours the meta device. TorchSharp's Embedding (and Embedding_from_pretrained) builds
/// its weight on the CPU and then moves it, so a meta-device model of the released shapes still allocated every
/// embedding table (1.5 GB for 1.7B: the 151936 x 2048 text table alone is 1.2 GB). On meta the table is created there
/// directly; elsewhere nothing changes.</summary>
public static class Embeddings
{
    public static Embedding Create(long numEmbeddings, long embeddingDim, Device? device = null, ScalarType? dtype = null)
    {
        if (device?.type != DeviceType.META) return nn.Embedding(numEmbeddings, embeddingDim, device: device, dtype: dtype);
        var embedding = nn.Embedding(1, 1, dtype: dtype);
        embedding.weight = new Parameter(empty(numEmbeddings, embeddingDim, dtype: dtype ?? get_default_dtype(), device: device));
        return embedding;
    }
}
