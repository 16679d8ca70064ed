#!/usr/bin/env bash
# Create .venv and install medclf with its dev extras. Safe to run again: it does nothing when the
# environment already matches setup.cfg, pyproject.toml and TORCH_SPEC.
#   TORCH_SPEC  what is installed first, in one pip call, split on spaces (default
#               "torch==2.14.1 torchvision==0.29.1": PyPI's build for Linux x86_64, a CUDA build that also
#               runs on the CPU). [dev] pins torchvision==0.29.1 (the xrv extra), which needs torch>=2.14, so
#               keep those versions and change only where they come from, e.g. a CPU-only build:
#               TORCH_SPEC="torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu"
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
stamp=.venv/.medclf-installed
want=$( (cat setup.cfg pyproject.toml; echo "TORCH_SPEC=$TORCH_SPEC") | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up .venv (torch: $TORCH_SPEC) ..."
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC2086  # TORCH_SPEC holds several requirements: split on spaces on purpose
.venv/bin/python -m pip install --quiet $TORCH_SPEC
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "$want" > "$stamp"
echo "environment ready: .venv"
