#!/usr/bin/env bash
# Train the shipped MNIST / Fashion-MNIST models side by side on one GPU, each for the same wall time.
#   bash scripts/train_gpu.sh SECONDS MNIST_DIR DATA_DIR OUT_DIR
# MNIST_DIR holds the MNIST IDX files, DATA_DIR a fashion-mnist/ folder with Fashion-MNIST's (or leave
# it empty to use Debian's /usr/share/datasets/fashion-mnist). Each run is an ordinary
# `python -m flowcore train --time-budget SECONDS` into OUT_DIR/<config name>, resumable as any run.
set -euo pipefail
budget=$1 mnist=$2 data=$3 out=$4
mkdir -p "$out"
pids=()
for name in glow-mnist realnvp-mnist glow-mnist-conditional glow-fashion; do
  dir=$mnist
  [[ $name == *fashion* ]] && dir=$data
  OMP_NUM_THREADS=4 python3 -m flowcore train --config "configs/$name.json" ${dir:+--data-dir "$dir"} \
    --out "$out/$name" --device cuda --time-budget "$budget" --quiet >"$out/$name.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
