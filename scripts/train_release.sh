#!/usr/bin/env bash
# Trains the release digit model and the two evaluation classifiers on this machine's CPU, then copies
# the EMA weights into src/difflab/assets/. About 85 minutes on 2 cores; run it in the background:
#   nohup scripts/train_release.sh > runs/release.log 2>&1 &
# Re-running resumes the diffusion training from runs/release/checkpoint.safetensors.
set -euo pipefail
cd "$(dirname "$0")/.."
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296 MALLOC_TOP_PAD_=1073741824
DL=.venv/bin/difflab
OUT=runs/release
STEPS=${STEPS:-4000}
mkdir -p "$OUT"
start=$(date +%s)
for domain in mnistm svhn; do
  [ -f "$OUT/classifier_$domain.safetensors" ] ||
    $DL digits train-classifier --domain "$domain" --epochs 10 --seed 0 --out "$OUT/classifier_$domain.safetensors"
done
cls_done=$(date +%s)
resume=()
[ -f "$OUT/checkpoint.safetensors" ] && resume=(--resume latest)
$DL digits train --out-dir "$OUT" --steps "$STEPS" --batch-size 128 --lr 5e-4 --seed 0 "${resume[@]}"
end=$(date +%s)
cp "$OUT/ema.safetensors" src/difflab/assets/digits_unet.safetensors
cp "$OUT/classifier_mnistm.safetensors" "$OUT/classifier_svhn.safetensors" src/difflab/assets/
echo "classifiers: $((cls_done - start)) s, diffusion: $((end - cls_done)) s, total: $((end - start)) s"
