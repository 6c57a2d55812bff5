#!/usr/bin/env bash
# Installs the pnn build tree at $1 into a temporary prefix, then builds and runs an
# outside project that finds it with find_package(pnn): a training job through the
# C++ API, and examples/custom_pipeline.cpp (an actor pipeline with a user's own actor).
set -euo pipefail
build="$1"
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S "$here" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/consumer" -j 2 >/dev/null
"$tmp/consumer/consumer"
"$tmp/consumer/custom_pipeline" --epochs 6 --patience 2
