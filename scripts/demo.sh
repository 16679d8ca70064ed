#!/usr/bin/env bash
# The demo: set up .venv, generate a synthetic chest-X-ray-like data set, train DenseNet121 on it for a
# few epochs on the CPU, evaluate the best checkpoint on TEST, and say where the logs are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
PY=.venv/bin/python
start=$(date +%s)
if [ ! -f data/demo/dataset.csv ]; then
  $PY scripts/make_synthetic_data.py --out data/demo --n 1000 --size 128
fi
run=runs/demo-$(date +%Y%m%d-%H%M%S)
$PY -m medclf.train --csv data/demo/dataset.csv --out "$run" --image-size 64 --epochs 5 --batch-size 32
$PY -m medclf.validate --checkpoint "$run/best.pt" --csv data/demo/dataset.csv --split TEST
echo
echo "demo finished in $(( $(date +%s) - start )) s"
echo "run folder: $run (best.pt, last.pt, metrics.csv, config.json, best_test/)"
echo "TensorBoard: .venv/bin/tensorboard --logdir $run"
