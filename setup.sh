#!/usr/bin/env bash
# Create .venv and install the project (editable) with its dev and export extras. Safe to run
# again.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.nsm-installed
# Reinstall only when the dependency list changed since the last successful install.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev,export]'
  touch "$stamp"
fi
.venv/bin/python -c "import torch, torchaudio, lightning, hydra, torchmetrics, onnxruntime" || {
  echo "setup.sh: the environment in .venv does not import; remove .venv and run again" >&2
  exit 1
}
