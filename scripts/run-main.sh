#!/usr/bin/env bash
# pnn's main job: builds pnn-node if needed, then runs K-fold cross-validation on
# Fashion-MNIST: LeNet5 and AlexNet x cosine and warm-restart schedules x 2 folds,
# 2 epochs each (Adam 1e-3, batch 32), every core busy. Prints the accuracy table,
# wall time and CPU utilisation. Results go to runs/main (or the folder given as $1).
# About 3 minutes on 2 cores once built.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh --target pnn-node
out="${1:-runs/main}"
exec ./build/runtime/pnn-node kfold --dataset fashion-mnist --models lenet5,alexnet \
  --schedulers cosine,warm --folds 2 --epochs 2 --batch-size 32 --out "$out"
