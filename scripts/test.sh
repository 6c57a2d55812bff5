#!/usr/bin/env bash
# Builds everything (tests, benchmarks, examples) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
cd build
ctest --output-on-failure -j 1
