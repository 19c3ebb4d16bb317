# Runtime image for qwen3tts-rank / qwen3tts / qwen3tts-coordinator.
#   docker build -t qwen3tts:latest .
# CPU build (TorchSharp-cpu). For NVIDIA clusters, build FROM a CUDA 12.x runtime base and reference the
# TorchSharp CUDA package instead of TorchSharp-cpu (see README: GPU clusters).
FROM mcr.microsoft.com/dotnet/sdk:10.0-bookworm-slim AS build
WORKDIR /src
COPY . .
RUN dotnet publish src/Rank -c Release -o /app \
 && dotnet publish src/Cli -c Release -o /app \
 && dotnet publish src/CoordinatorApp -c Release -o /app

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
