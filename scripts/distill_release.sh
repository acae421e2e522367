#!/usr/bin/env bash
# Distils the shipped teacher (src/difflab/assets/digits_unet.safetensors) into the few-step student
# that `difflab digits generate` uses by default, then ships it as src/difflab/assets/digits_student.safetensors.
# One command, resumable: re-running it continues from runs/distill (finished trajectory chunks are kept,
# the student resumes from its checkpoint with the same generator state). Run it in the background:
#   nohup scripts/distill_release.sh > runs/distill.log 2>&1 &
# The shipped student: `OMP_NUM_THREADS=1 STEPS=1500 scripts/distill_release.sh` (one torch thread because
# other jobs shared the 2 cores: with two threads and any other process a step took 3-18 s instead of
# 1.1 s), then resumed to 2500 steps (`STEPS=2500`, a warm restart of the cosine curve, as the teacher's
# legs), to 5000, 7500, 9000 and 10500 (`STEPS=5000`, `7500`, `9000`, `10500`, alone, two threads). From
# scratch the default gives one 10500-step curve of the same recipe (about 3.5 hours alone on 2 cores:
# trajectories ~27 min, 10500 steps at 1.1 s), not bit-identical weights. Wall time: docs/RESULTS.md §7
# (the script prints it).
set -euo pipefail
cd "$(dirname "$0")/.."
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_TOP_PAD_=1073741824
OUT=${OUT:-runs/distill}
TEACHER=${TEACHER:-src/difflab/assets/digits_unet.safetensors}
mkdir -p "$OUT"
start=$(date +%s)
.venv/bin/difflab digits distill --out-dir "$OUT" --teacher "$TEACHER" --student-steps 4 --teacher-steps 20 \
  --guidance-min 1 --guidance-max 5 --trajectories "${TRAJECTORIES:-8000}" --steps "${STEPS:-10500}" \
  --batch-size 128 --lr 1e-4 --seed 0
end=$(date +%s)
# ship the EMA student as float16 (as the teacher): half the size, loads back into float32
.venv/bin/python - "$OUT/student.safetensors" src/difflab/assets/digits_student.safetensors <<'PY'
import sys
from difflab.io import load_checkpoint, save_checkpoint
t, meta = load_checkpoint(sys.argv[1])
meta["stored_dtype"] = "float16"
save_checkpoint(sys.argv[2], {k: v.half() if v.is_floating_point() else v for k, v in t.items()}, meta)
PY
echo "distillation wall time in this run: $((end - start)) s"
