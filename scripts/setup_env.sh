#!/usr/bin/env bash
# Create .venv and install medclf with its dev extras. Safe to run again: it does nothing when the
# environment already matches setup.cfg and pyproject.toml.
#   TORCH_SPEC  torch requirement installed first (default torch==2.13.0, a CPU build on the dev machines;
#               on a GPU machine use e.g. TORCH_SPEC="torch>=2.3" to get a CUDA build)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
stamp=.venv/.medclf-installed
want=$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up .venv (torch: $TORCH_SPEC) ..."
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet "$TORCH_SPEC"
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "$want" > "$stamp"
echo "environment ready: .venv"
