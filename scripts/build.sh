#!/usr/bin/env bash
# Installs what is missing (Debian 12 packages), then configures and builds pnn in
# ./build (Release, 2 parallel jobs by default: set JOBS to change).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "${JOBS:-2}" "$@"
