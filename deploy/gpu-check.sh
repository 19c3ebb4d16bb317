#!/usr/bin/env bash
# GPU acceptance check for --device cuda and the NCCL backend (written without a GPU; README: GPU clusters).
# Builds against TorchSharp-cuda-linux, fine-tunes the tiny preset on the bundled demo data several ways and compares
# each run's final training loss with the CPU run of the same global batch:
#   cpu-1       1 process, --device cpu, batch 4                      (the reference)
#   cuda-1      1 process, --device cuda, batch 4                      fp32: within 1e-4 relative of cpu-1
#   cuda-1-bf16 1 process, --device cuda, batch 4, bf16                within 2e-2 relative of cpu-1-bf16 (bf16 kernels differ)
#   nccl-2      mpiexec -n 2, --device cuda --backend nccl, batch 2    within 1e-4 relative of cpu-1 (needs 2 GPUs)
#   staged-2    mpiexec -n 2, --device cuda --backend mpi, batch 2     the same, CUDA tensors staged through host memory
# Usage: deploy/gpu-check.sh [OUT]   (GPUS=1 skips the two-rank runs; MPIEXEC=mpiexec.openmpi to pick a launcher)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu-check}
gpus=${GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
[ "$gpus" -ge 1 ] || { echo "gpu-check: no GPU (nvidia-smi -L lists none)" >&2; exit 1; }

dotnet build Qwen3Tts.Distributed.sln -c Release -v q -nologo -p:TorchSharpPackage=TorchSharp-cuda-linux
Q="dotnet src/Cli/bin/Release/net10.0/qwen3tts.dll"
RANK="src/Rank/bin/Release/net10.0/qwen3tts-rank.dll"
rm -rf "$out" && mkdir -p "$out"
$Q init-model --config tiny --out "$out/init" --seed 0

# --adam_epsilon 1e-3 keeps AdamW from magnifying summation-order differences in near-zero gradients (as the tests do).
common=(--train_jsonl assets/demo/train.jsonl --init_model_path "$out/init" --num_epochs 2 --gradient_accumulation_steps 1
        --lr 1e-3 --lr_scheduler constant --adam_epsilon 1e-3 --logging_steps 1 --coordinator off --bucket_size_mb 1)
run() { # NAME [launcher...] -- [flags...]
  local name=$1; shift
  local launcher=(); while [ "$1" != "--" ]; do launcher+=("$1"); shift; done; shift
  echo "gpu-check: $name"
  "${launcher[@]}" dotnet "$RANK" "${common[@]}" --output_model_path "$out/$name" "$@" > "$out/$name.log" 2>&1 \
    || { tail -20 "$out/$name.log" >&2; exit 1; }
}
mpi=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "${MPIEXEC:-mpiexec}" -n 2)

run cpu-1 -- --device cpu --batch_size 4 --mixed_precision fp32
run cuda-1 -- --device cuda --batch_size 4 --mixed_precision fp32
run cpu-1-bf16 -- --device cpu --batch_size 4 --mixed_precision bf16
run cuda-1-bf16 -- --device cuda --batch_size 4 --mixed_precision bf16
if [ "$gpus" -ge 2 ]; then
  run nccl-2 "${mpi[@]}" -- --device cuda --backend nccl --batch_size 2 --mixed_precision fp32
  run staged-2 "${mpi[@]}" -- --device cuda --backend mpi --batch_size 2 --mixed_precision fp32
  grep -q "backend: nccl" "$out/nccl-2.log" || { echo "gpu-check: nccl-2 did not run on NCCL" >&2; exit 1; }
  grep -q "staged through host memory" "$out/staged-2.log" || { echo "gpu-check: staged-2 did not stage" >&2; exit 1; }
fi

final() { grep -o ' loss [0-9.]*' "$out/$1.log" | tail -1 | awk '{print $2}'; }
failed=0
check() { # NAME REFERENCE TOLERANCE
  [ -f "$out/$1.log" ] || return 0
  local a b; a=$(final "$1"); b=$(final "$2")
  if awk -v a="$a" -v b="$b" -v t="$3" 'BEGIN { d = (a - b) / b; if (d < 0) d = -d; exit !(d <= t) }'; then
    echo "ok   $1 loss $a vs $2 $b (tolerance $3)"
  else
    echo "FAIL $1 loss $a vs $2 $b (tolerance $3)"; failed=1
  fi
}
check cuda-1 cpu-1 1e-4
check cuda-1-bf16 cpu-1-bf16 2e-2
check nccl-2 cpu-1 1e-4
check staged-2 cpu-1 1e-4
exit $failed
