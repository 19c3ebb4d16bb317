# Runtime images for qwen3tts-rank / qwen3tts / qwen3tts-coordinator.
#   docker build -t qwen3tts:latest .                  # CPU (TorchSharp-cpu): the default, last stage
#   docker build --target cuda -t qwen3tts:cuda .      # NVIDIA GPUs (TorchSharp-cuda-linux): --device cuda --backend nccl
# Build with BuildKit (the default since Docker 23): it builds only the stages the target needs, so the CPU image
# never pulls the CUDA base or the multi-GB CUDA libtorch. The cuda target has never been built (no docker engine
# and no GPU where this was written; README: GPU clusters says what is and is not verified).

# ---- CPU build
FROM mcr.microsoft.com/dotnet/sdk:10.0-bookworm-slim AS build
WORKDIR /src
COPY . .
RUN dotnet publish src/Rank -c Release -o /app \
 && dotnet publish src/Cli -c Release -o /app \
 && dotnet publish src/CoordinatorApp -c Release -o /app

# ---- CUDA build: the same code against TorchSharp-cuda-linux (libtorch with CUDA 12.x, cuDNN and cuBLAS inside the
# package; Directory.Build.props' TorchSharpPackage switches the reference).
FROM mcr.microsoft.com/dotnet/sdk:10.0-bookworm-slim AS build-cuda
WORKDIR /src
COPY . .
RUN for project in src/Rank src/Cli src/CoordinatorApp; do \
      dotnet publish $project -c Release -o /app -p:TorchSharpPackage=TorchSharp-cuda-linux || exit 1; \
    done

# ---- CUDA runtime: NVIDIA's runtime image (CUDA runtime and libnccl.so.2, which the NCCL backend loads; set
# QWEN3TTS_NCCL_LIB to use another) plus the .NET runtime of the same Ubuntu. The GPU driver comes from the host
# (NVIDIA container toolkit / device plugin).
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS cuda
COPY --from=mcr.microsoft.com/dotnet/runtime:10.0-noble /usr/share/dotnet /usr/share/dotnet
RUN ln -s /usr/share/dotnet/dotnet /usr/bin/dotnet \
 && apt-get update \
 && apt-get install -y --no-install-recommends libicu74 openmpi-bin openssh-client openssh-server ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build-cuda /app /app
ENV PATH="/app:${PATH}" \
    DOTNET_CLI_TELEMETRY_OPTOUT=1
WORKDIR /work
ENTRYPOINT ["/app/qwen3tts-rank"]

# ---- CPU runtime (the default target)
FROM mcr.microsoft.com/dotnet/runtime:10.0-bookworm-slim
# Open MPI for mpiexec / srun --mpi=pmix launches; sshd for the Kubeflow MPIJob workers (deploy/k8s/mpijob.yaml);
# libgomp comes with TorchSharp's natives. RANK/WORLD_SIZE/MASTER_ADDR launches (deploy/k8s/indexed-job.yaml) need none of it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openmpi-bin libopenmpi3 openssh-client openssh-server ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /app /app
ENV PATH="/app:${PATH}" \
    DOTNET_CLI_TELEMETRY_OPTOUT=1
# The build fix for Debian 12's libstdc++ runs on publish (build/LibTorchSharpGlibcxx.targets), so the
# published libLibTorchSharp.so already loads on this base.
WORKDIR /work
ENTRYPOINT ["/app/qwen3tts-rank"]
