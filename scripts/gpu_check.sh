#!/usr/bin/env bash
# GPU acceptance check for medclf, in one command:
#   bash scripts/gpu_check.sh [--quick] [--setup-only]
#
# 1. sets up Python (see below), 2. runs the tests marked gpu (`pytest -m gpu`: AMP bf16 and fp16,
# channels-last, --compile, augmentation/AUROC on CUDA, validate, resume after SIGTERM, out-of-memory,
# torchrun with NCCL), 3. times the real `python -m medclf.train` (DenseNet121, 224 px, batch 128, memory
# cache) on synthetic images it makes (scripts/gpu_train_timing.py), then prints one table (step, status,
# figure) and exits 1 if any step failed. About 4-6 minutes on one H200, installs included. Without a
# CUDA GPU it says so in one line and exits 0, so it is safe to run anywhere.
#
# Python, two ways:
#   (default)   .venv made by scripts/setup_env.sh (torch==2.14.1 + torchvision==0.29.1 from PyPI: a CUDA
#               build on Linux x86-64; TORCH_SPEC="torch==2.14.1 torchvision==0.29.1 --index-url URL" for
#               another CUDA). Needs a network the first time.
#   PYTHON=...  an existing interpreter that already has a CUDA torch (air-gapped GPU nodes). That torch
#               is never replaced: only the packages it cannot import are installed, with --no-deps, into a
#               folder put on PYTHONPATH (medclf itself is used from this checkout through PYTHONPATH).
#               WHEELS=dir takes them from a local wheel folder (pip --no-index --find-links dir);
#               without WHEELS, pip asks its index.
#
# Settings (environment):
#   GPU_CHECK_IMAGES (4000; --quick 1000)  GPU_CHECK_EPOCHS (5; --quick 3)  GPU_CHECK_BATCH (128)
#   GPU_CHECK_DATA_SIZE (256: side of the synthetic PNGs)
#   GPU_CHECK_STEPS ("tests timing"): the steps to run, e.g. "tests" alone when rerunning after a fix
#   GPU_CHECK_PYTEST_ARGS: more pytest arguments, e.g. "-k sigterm"
#   GPU_CHECK_DIR   work folder (default: a temporary folder, removed at the end)
#   GPU_CHECK_LOGS  folder to copy the logs, timing.json and summary.txt into
#   GPU_CHECK_TEST_TIMEOUT (240 s)  GPU_CHECK_TIMING_TIMEOUT (210 s)
#   GPU_CHECK_MIN_IMAGES_PER_S (1500)  GPU_CHECK_MAX_LOADER_WAIT (0.05): below / above these the timing
#                   rows say WARN (the targets of docs/performance.md), which does not fail the check
#   --setup-only (GPU_CHECK_SETUP_ONLY=1): set up and check the environment only, also without a GPU
#                   (e.g. to try a WHEELS folder before carrying it to an air-gapped node)
set -euo pipefail
CALLER=$(pwd)
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# paths given by the caller are relative to where the script was started; a bare PYTHON name is looked up in PATH
caller_path() { case "$1" in /*) echo "$1" ;; *) echo "$CALLER/$1" ;; esac; }
caller_program() { case "$1" in */*) caller_path "$1" ;; *) command -v "$1" || true ;; esac; }

QUICK=${GPU_CHECK_QUICK:-0}
SETUP_ONLY=${GPU_CHECK_SETUP_ONLY:-0}
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --setup-only) SETUP_ONLY=1 ;;
    -h | --help) sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_check: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

gpu_visible() {
  local listed=""
  if command -v nvidia-smi >/dev/null 2>&1; then listed=$(timeout 30 nvidia-smi -L 2>/dev/null || true); fi
  [[ "$listed" == *GPU* ]] || compgen -G "/dev/nvidia[0-9]*" >/dev/null
}

if [ "$SETUP_ONLY" != 1 ] && ! gpu_visible; then
  echo "gpu_check: no CUDA GPU on this machine (nvidia-smi lists none, no /dev/nvidia*): nothing to check"
  exit 0
fi

START=$(date +%s)
if [ "$QUICK" = 1 ]; then IMAGES=${GPU_CHECK_IMAGES:-1000}; EPOCHS=${GPU_CHECK_EPOCHS:-3}; else
  IMAGES=${GPU_CHECK_IMAGES:-4000}; EPOCHS=${GPU_CHECK_EPOCHS:-5}; fi
BATCH=${GPU_CHECK_BATCH:-128}
RUN_STEPS=" ${GPU_CHECK_STEPS:-tests timing} "
DATA_SIZE=${GPU_CHECK_DATA_SIZE:-256}
TEST_TIMEOUT=${GPU_CHECK_TEST_TIMEOUT:-240}
TIMING_TIMEOUT=${GPU_CHECK_TIMING_TIMEOUT:-210}
MIN_IMAGES_PER_S=${GPU_CHECK_MIN_IMAGES_PER_S:-1500}
MAX_LOADER_WAIT=${GPU_CHECK_MAX_LOADER_WAIT:-0.05}
if [ -n "${GPU_CHECK_DIR:-}" ]; then
  WORK=$(caller_path "$GPU_CHECK_DIR")
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/medclf-gpu-check.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
fi
WORK=$(cd "$WORK" && pwd)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONUNBUFFERED=1

STEPS=()
STATUSES=()
FIGURES=()
row() { STEPS+=("$1"); STATUSES+=("$2"); FIGURES+=("$3"); }

finish() {
  local code=0 i logs total=$(($(date +%s) - START))
  if [ "$SETUP_ONLY" != 1 ]; then
    if [ "$total" -le 480 ]; then row "total time" PASS "$total s (budget 480 s)"; else
      row "total time" WARN "$total s (budget 480 s)"; fi
  fi
  for i in "${!STEPS[@]}"; do [ "${STATUSES[$i]}" != FAIL ] || code=1; done
  {
    echo
    printf '%-24s %-6s %s\n' "step" "status" "figure"
    printf '%-24s %-6s %s\n' "------------------------" "------" "------"
    for i in "${!STEPS[@]}"; do printf '%-24s %-6s %s\n' "${STEPS[$i]}" "${STATUSES[$i]}" "${FIGURES[$i]}"; done
  } | tee "$WORK/summary.txt"
  if [ -n "${GPU_CHECK_LOGS:-}" ]; then
    logs=$(caller_path "$GPU_CHECK_LOGS")
    mkdir -p "$logs"
    cp "$WORK"/summary.txt "$WORK"/*.log "$WORK"/timing.json "$logs"/ 2>/dev/null || true
  fi
  if [ "$code" != 0 ]; then echo "gpu_check: FAILED (logs above$([ -n "${GPU_CHECK_DIR:-}" ] && echo " and in $WORK"))"; else
    echo "gpu_check: passed"; fi
  exit "$code"
}

# module:distribution pairs that medclf (setup.cfg) and its tests import
NEEDED="monai:monai nibabel:nibabel pydicom:pydicom torchmetrics:torchmetrics pandas:pandas numpy:numpy PIL:pillow
tqdm:tqdm tensorboard:tensorboard yaml:pyyaml matplotlib:matplotlib sklearn:scikit-learn pytest:pytest
hypothesis:hypothesis"

# Prints the distributions whose module the interpreter cannot find ("find") or import ("import", which
# also explains each failure on stderr).
unavailable() {
  # shellcheck disable=SC2086
  "$PY" - "$1" $NEEDED <<'EOF'
import importlib
import importlib.util
import sys

how, missing = sys.argv[1], []
for pair in sys.argv[2:]:
    module, dist = pair.split(":")
    try:
        if how == "find":
            if importlib.util.find_spec(module) is None:
                missing.append(dist)
        else:
            importlib.import_module(module)
    except Exception as e:  # a broken install counts as missing
        missing.append(dist)
        print(f"gpu_check: cannot import {module}: {type(e).__name__}: {e}", file=sys.stderr)
print(" ".join(missing))
EOF
}

setup_existing_python() {
  PY=$(caller_program "$PYTHON")
  if [ -z "$PY" ] || ! "$PY" -c "import torch" 2>/dev/null; then
    row setup FAIL "PYTHON=$PYTHON cannot import torch (it must already hold a CUDA build of torch)"
    finish
  fi
  local site="$WORK/site" missing still how
  export PYTHONPATH="$site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  missing=$(unavailable find)
  how="nothing to install"
  if [ -n "$missing" ]; then
    if [ -n "${WHEELS:-}" ]; then
      WHEELS=$(cd "$(caller_path "$WHEELS")" && pwd)
      how="installed $missing from $WHEELS"
      # shellcheck disable=SC2086
      "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$site" $missing || how="pip could not install $missing from $WHEELS"
    else
      how="installed $missing from the package index"
      # shellcheck disable=SC2086
      "$PY" -m pip install --quiet --no-deps --no-compile --retries 1 --timeout 20 --upgrade --target "$site" \
        $missing || how="pip could not install $missing (no network? set WHEELS=dir)"
    fi
  fi
  still=$(unavailable import)
  if [ -n "$still" ]; then
    row setup FAIL "$PY: cannot import $still; $how"
    finish
  fi
  SETUP_FIGURE="$PY (existing), $how"
}

setup_venv() {
  if ! bash scripts/setup_env.sh; then
    row setup FAIL "scripts/setup_env.sh failed${TORCH_SPEC:+ (TORCH_SPEC=$TORCH_SPEC)}"
    finish
  fi
  PY="$ROOT/.venv/bin/python"
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  SETUP_FIGURE=".venv via scripts/setup_env.sh"
}

check_cuda() {
  local info
  if info=$("$PY" -c '
import torch
if torch.cuda.is_available():
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), {torch.cuda.get_device_name()}")
else:
    print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no usable GPU")
    raise SystemExit(3)
' 2>&1); then
    row setup PASS "$SETUP_FIGURE; $info"
  elif [ "$SETUP_ONLY" = 1 ]; then
    row setup PASS "$SETUP_FIGURE; $info"
  else
    row setup FAIL "$SETUP_FIGURE; $info (a CPU build? set TORCH_SPEC / PIP_INDEX_URL, or PYTHON=...)"
    finish
  fi
}

# timeout(1) where it exists; its 124 means the limit was hit.
limited() {
  local seconds=$1
  shift
  if command -v timeout >/dev/null 2>&1; then timeout -k 20 "$seconds" "$@"; else "$@"; fi
}

run_gpu_tests() {
  local log="$WORK/gpu_tests.log" rc summary status=PASS
  echo "== gpu_check: pytest -m gpu (limit $TEST_TIMEOUT s)"
  set +e
  # shellcheck disable=SC2086
  limited "$TEST_TIMEOUT" "$PY" -m pytest -m gpu tests -q -p no:cacheprovider ${GPU_CHECK_PYTEST_ARGS:-} 2>&1 |
    tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  summary=$(grep -E "[0-9]+ (passed|failed|skipped|deselected|errors?)" "$log" | tail -n 1 | tr -d '=' |
    sed 's/^ *//; s/ *$//') || true
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    status=FAIL summary="timed out after $TEST_TIMEOUT s; ${summary:-no summary}"
  elif [ "$rc" != 0 ]; then
    status=FAIL summary="${summary:-pytest exited with $rc}"
  elif [[ "$summary" != *passed* ]]; then
    status=FAIL summary="no gpu test ran: ${summary:-no summary}"
  elif [[ "$summary" == *skipped* ]]; then
    status=WARN
  fi
  row "gpu tests" "$status" "$summary"
  grep -E "^(FAILED|ERROR) " "$log" | head -n 12 | while read -r line; do echo "gpu_check: $line"; done || true
}

run_timing() {
  local log="$WORK/gpu_timing.log" json="$WORK/timing.json" rc rows
  echo "== gpu_check: timing python -m medclf.train (limit $TIMING_TIMEOUT s)"
  rm -f "$json"
  set +e
  limited "$TIMING_TIMEOUT" "$PY" scripts/gpu_train_timing.py --work "$WORK/timing" --images "$IMAGES" \
    --epochs "$EPOCHS" --batch-size "$BATCH" --data-size "$DATA_SIZE" --json "$json" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  rm -rf "$WORK/timing"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    row "training timing" FAIL "timed out after $TIMING_TIMEOUT s (try --quick or GPU_CHECK_IMAGES)"
    return
  fi
  if [ ! -s "$json" ]; then
    row "training timing" FAIL "scripts/gpu_train_timing.py exited with $rc and wrote no figures"
    return
  fi
  rows=$("$PY" - "$json" "$rc" "$MIN_IMAGES_PER_S" "$MAX_LOADER_WAIT" <<'EOF'
import json
import sys

f = json.load(open(sys.argv[1]))
rc, target, max_wait = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
setup = f"DenseNet121 {f['image_size']} px, batch {f['batch_size']}, {f['precision']}, channels-last"
ok = "PASS" if rc == 0 and f["losses_finite"] else "FAIL"
steady, wait = f["epoch2plus_images_per_s"], f["loader_wait_share"]
print(f"training run|{ok}|{f['epochs_completed']}/{f['epochs']} epochs on {f['train_images']} TRAIN images, "
      f"losses finite: {f['losses_finite']}, last val_auroc {f['val_auroc_last']:.4f}")
print(f"cache fill|PASS|{f['cache_fill_images_per_s']:.0f} images/s ({f['cache_fill_images']} images, "
      f"{f['data_size']} -> {f['image_size']} px)")
print(f"epoch 1|PASS|{f['epoch1_images_per_s']:.0f} images/s training (cuDNN autotuning); "
      f"{f['epoch1_with_cache_fill_images_per_s']:.0f} images/s with the cache fill")
print(f"epochs 2+|{'PASS' if steady >= target else 'WARN'}|{steady:.0f} images/s, "
      f"{f['epoch2plus_step_ms']:.1f} ms/step ({setup}; target {target:.0f})")
print(f"loader wait|{'PASS' if wait <= max_wait else 'WARN'}|{100 * wait:.2f}% of step time "
      f"({f['loader_wait_ms_per_step']:.2f} ms per step the GPU waited for a batch)")
print(f"peak GPU memory|PASS|{f['peak_gpu_memory_gib']:.1f} GiB allocated "
      f"({f['peak_gpu_reserved_gib']:.1f} GiB reserved)")
EOF
) || {
    row "training timing" FAIL "could not read $json"
    return
  }
  while IFS='|' read -r step status figure; do row "$step" "$status" "$figure"; done <<<"$rows"
}

if [ -n "${PYTHON:-}" ]; then setup_existing_python; else setup_venv; fi
check_cuda
if [ "$SETUP_ONLY" = 1 ]; then finish; fi
if [[ "$RUN_STEPS" == *" tests "* ]]; then run_gpu_tests; fi
if [[ "$RUN_STEPS" == *" timing "* ]]; then run_timing; fi
finish
