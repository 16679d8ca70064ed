#!/usr/bin/env bash
# The demo: set up .venv, generate a synthetic chest-X-ray-like data set, train DenseNet121 on it for a
# few epochs on the CPU, evaluate the best checkpoint on TEST, and say where the outputs are (also when
# it is stopped early: Ctrl-C saves last.pt and the lines below still say where everything is).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
run=runs/demo-$(date +%Y%m%d-%H%M%S)

where_things_are() {
  local code=$?
  echo
  if [ "$code" = 0 ]; then echo "demo finished in $(( $(date +%s) - start )) s"; else
    echo "demo stopped after $(( $(date +%s) - start )) s (exit $code)"; fi
  if [ -d "$run" ]; then
    echo "run folder: $run ($(cd "$run" && ls -d best.pt last.pt metrics.csv config.json best_test 2>/dev/null | xargs))"
    echo "TensorBoard: .venv/bin/tensorboard --logdir $run"
    [ -f "$run/best_test/report.html" ] && echo "report: $run/best_test/report.html"
    [ "$code" = 0 ] || echo "continue the training with: .venv/bin/python -m medclf.train --resume $run"
  fi
}
trap where_things_are EXIT

echo "[1/4] Python environment (.venv; the first run installs torch, MONAI, ... which takes a few minutes)"
bash scripts/setup_env.sh
PY=.venv/bin/python
echo "[2/4] synthetic data set: data/demo (1,000 images at 128 px; made once)"
if [ ! -f data/demo/dataset.csv ]; then
  $PY scripts/make_synthetic_data.py --out data/demo --n 1000 --size 128
fi
echo "[3/4] training DenseNet121 for 5 epochs at 64 px on the CPU into $run"
$PY -m medclf.train --csv data/demo/dataset.csv --out "$run" --image-size 64 --epochs 5 --batch-size 32
echo "[4/4] evaluating best.pt on TEST"
$PY -m medclf.validate --checkpoint "$run/best.pt" --csv data/demo/dataset.csv --split TEST
