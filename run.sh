#!/usr/bin/env bash
# The main job on the embedded default: a tiny model (real vocabularies and special ids, random weights)
# fine-tuned by 2 local ranks through mpiexec on the bundled demo dataset, ending in best/, last/, epoch-N/
# checkpoints, listening samples at each evaluation (output/samples/step-N/*.wav, through the tiny random 12 Hz
# codec: noise until a real model is used), a custom-voice export under runs/demo/output, and the exported voice
# speaking one sentence (runs/demo/hello.wav). Set RANKS to change the number of ranks.
set -euo pipefail
cd "$(dirname "$0")"
command -v dotnet >/dev/null || { echo "run.sh: install the .NET 10 SDK first (https://dot.net)" >&2; exit 1; }
# Only what is missing is installed (no root needed when Open MPI is present); the apt lists are refreshed first,
# since a fresh machine may never have fetched them.
if ! command -v mpiexec.openmpi >/dev/null; then
  echo "run.sh: installing Open MPI (apt)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openmpi-bin libopenmpi-dev
fi

dotnet build Qwen3Tts.Distributed.sln -c Release -v q -nologo
Q="dotnet src/Cli/bin/Release/net10.0/qwen3tts.dll"
RANK="src/Rank/bin/Release/net10.0/qwen3tts-rank.dll"
out=${1:-runs/demo}
rm -rf "$out"

$Q init-model --config tiny --out "$out/init" --seed 0
# Open MPI refuses root unless told; --oversubscribe lets 2 ranks share a small machine.
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 \
mpiexec.openmpi --oversubscribe -n "${RANKS:-2}" dotnet "$RANK" \
  --train_jsonl assets/demo/train.jsonl --validation_jsonl assets/demo/validation.jsonl \
  --init_model_path "$out/init" --output_model_path "$out/output" \
  --num_epochs 3 --batch_size 2 --gradient_accumulation_steps 1 --lr 1e-3 --warmup_steps 2 \
  --logging_steps 2 --mixed_precision fp32 --speaker_name demo_speaker \
  --eval_sentences assets/demo/eval_sentences.txt --eval_sample_max_seconds 2
$Q inspect "$out/output/custom_voice"
$Q synthesize --model "$out/output/custom_voice" --speaker demo_speaker --text "Sannu da zuwa." --max_new_tokens 26 --out "$out/hello.wav"
ls "$out/output"
