#!/usr/bin/env bash
# Builds pnn with AddressSanitizer + UndefinedBehaviorSanitizer in ./build-sanitize
# and runs the test suite there (child processes — pnn-node serve, the helper
# processes — run instrumented too). Any report fails the run. Takes a clean build
# (~15 min on 2 cores) plus slower tests, so it is not part of .ci/run.
# Leak checking is off: LibTorch's and CAF's process-lifetime singletons are
# reported as leaks at exit. scripts/ubsan.supp names the one report that comes from
# a CAF header rather than pnn (and why).
#
# usage: scripts/check-sanitizers.sh [ctest arguments, e.g. -R actors]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Release -DPNN_SANITIZE=ON \
  -DPNN_BUILD_BENCH=OFF -DPNN_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-sanitize -j "${JOBS:-2}"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
# Instrumented code runs ~5x slower: the tests scale their peer timeouts and waits.
export PNN_TEST_TIME_SCALE=${PNN_TEST_TIME_SCALE:-5}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$PWD/scripts/ubsan.supp
cd build-sanitize
# install.find_package builds an outside project against an install tree without
# the sanitizer runtime; it is covered by the normal test run.
ctest --output-on-failure -E '^install\.' "$@"
