#!/usr/bin/env bash
# Train several configs side by side on one GPU, each for the same wall time.
#   bash scripts/train_gpu.sh SECONDS MNIST_DIR DATA_DIR OUT_DIR CONFIG_NAME...
# MNIST_DIR holds the MNIST IDX files; DATA_DIR a fashion-mnist/ folder with Fashion-MNIST's (empty:
# Debian's /usr/share/datasets/fashion-mnist). Each run is an ordinary
# `python -m flowcore train --config configs/NAME.json --time-budget SECONDS` into OUT_DIR/NAME,
# resumable as any run. The shipped glow-fashion and the first phase of glow-mnist-conditional
# come from
#   bash scripts/train_gpu.sh 450 MNIST_DIR DATA_DIR runs/gpu glow-mnist-conditional glow-fashion
# on one NVIDIA H100 beside two other runs (pretrained/manifest.json records each model's steps).
set -euo pipefail
budget=$1 mnist=$2 data=$3 out=$4
shift 4
mkdir -p "$out"
pids=()
for name in "$@"; do
  dir=$mnist
  [[ $name == *fashion* ]] && dir=$data
  OMP_NUM_THREADS=4 python3 -m flowcore train --config "configs/$name.json" ${dir:+--data-dir "$dir"} \
    --out "$out/$name" --device cuda --time-budget "$budget" --quiet >"$out/$name.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
