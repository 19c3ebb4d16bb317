#!/usr/bin/env bash
# The main job on the embedded default: a tiny model (real vocabularies and special ids, random weights)
# fine-tuned on the bundled demo dataset, ending in best/, last/, epoch-N/ checkpoints and a custom-voice export.
# Today a single process trains (multi-rank launching lands with the data-parallel issue; see README: Status).
set -euo pipefail
cd "$(dirname "$0")"
command -v dotnet >/dev/null || { echo "run.sh: install the .NET 10 SDK first (https://dot.net)" >&2; exit 1; }

dotnet build Qwen3Tts.Distributed.sln -c Release -v q -nologo
Q="dotnet src/Cli/bin/Release/net10.0/qwen3tts.dll"
RANK="dotnet src/Rank/bin/Release/net10.0/qwen3tts-rank.dll"
out=${1:-runs/demo}

$Q init-model --config tiny --out "$out/init" --seed 0
$RANK --train_jsonl assets/demo/train.jsonl --validation_jsonl assets/demo/validation.jsonl \
      --init_model_path "$out/init" --output_model_path "$out/output" \
      --num_epochs 3 --batch_size 4 --gradient_accumulation_steps 1 --lr 1e-3 --warmup_steps 2 \
      --logging_steps 2 --mixed_precision fp32 --speaker_name demo_speaker
$Q inspect "$out/output/custom_voice"
