#!/usr/bin/env bash
# The main job on the embedded default. Today: the model foundation end to end (see README: Status).
set -euo pipefail
cd "$(dirname "$0")"
command -v dotnet >/dev/null || { echo "run.sh: install the .NET 10 SDK first (https://dot.net)" >&2; exit 1; }

dotnet build src/Cli -c Release -v q -nologo
Q="dotnet src/Cli/bin/Release/net10.0/qwen3tts.dll"
out=${1:-runs/tiny}

$Q init-model --config tiny --out "$out" --seed 0
$Q inspect "$out"
$Q inspect assets/reference/Qwen3-TTS-12Hz-1.7B-Base
$Q tokenize --model "$out" --chat "Sannu da zuwa. Hello from Qwen3-TTS."
