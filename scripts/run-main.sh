#!/usr/bin/env bash
# pnn's main job: builds pnn-node if needed, then trains LeNet5 on Fashion-MNIST
# (Adam 1e-3, cosine schedule, batch 32) and prints its test accuracy. Results go to
# runs/main (or the folder given as $1). About a minute on 2 cores once built.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh --target pnn-node
out="${1:-runs/main}"
exec ./build/runtime/pnn-node train --dataset fashion-mnist --model lenet5 --optimizer adam \
  --lr 1e-3 --scheduler cosine --epochs 6 --batch-size 32 --threads 1 --seed 1 --out "$out"
