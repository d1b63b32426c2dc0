#!/usr/bin/env bash
# Create .venv and install the project (editable) with its dev extra and the optional extras
# that CI tests (codec: MP3 baselines and STOI; app: the demo page and its browser test;
# export: ONNX export and ONNX Runtime). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.nsm-installed
# Reinstall only when the dependency list or this script changed since the last install.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.sh -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev,codec,app,export]'
  touch "$stamp"
fi
.venv/bin/python -c "import torch, torchaudio, lightning, hydra, torchmetrics, onnxruntime, numba" || {
  echo "setup.sh: the environment in .venv does not import; remove .venv and run again" >&2
  exit 1
}
