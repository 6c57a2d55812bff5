#!/usr/bin/env bash
# Builds everything (tests, benchmarks, examples) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# What only the tests use: PyTorch, to open pnn's models in Python (scripts/pnn_model.py);
# Slurm and munge, to run deploy/slurm/pnn.sbatch on real daemons.
./scripts/install-deps.sh python3-torch python3-numpy slurmctld slurmd munge
./scripts/build.sh
cd build
ctest --output-on-failure -j 1
