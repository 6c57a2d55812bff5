#!/usr/bin/env bash
# The Debian package as a user meets it (ctest package.deb): cpack builds it from the
# build tree at $1, apt installs it (its dependencies come from Debian), then the
# installed pnn-node runs from PATH and an outside project builds against the installed
# headers and CMake package (find_package(pnn), no prefix given) and runs. The package
# is removed at the end. Needs root (apt): without root it says so and exits 77, which
# ctest reports as skipped (CI runs as root).
set -euo pipefail
build="$1"
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$(id -u)" -ne 0 ]; then
  echo "package.deb: skipped: needs root to install the package with apt (CI runs as root)"
  exit 77
fi
if dpkg-query -W -f='${Status}' pnn 2>/dev/null | grep -q "install ok installed"; then
  echo "package.deb: a pnn package is installed already; remove it first (apt-get remove pnn)"
  exit 1
fi
tmp="$(mktemp -d)"
cleanup() {
  apt-get remove -y -qq pnn >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM # the cleanup runs on ctest's timeout too
(cd "$tmp" && cpack -G DEB --config "$build/CPackConfig.cmake" >/dev/null)
deb=$(ls "$tmp"/pnn_*.deb)
echo "built $(basename "$deb"): $(du -h "$deb" | cut -f1)"
dpkg-deb --info "$deb" | grep -E "Package|Version|Depends"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null
echo "installed: $(dpkg-query -W -f='${Package} ${Version} ${Status}' pnn)"
[ "$(command -v pnn-node)" = /usr/bin/pnn-node ]
pnn-node models | tee "$tmp/models"
grep -q lenet5 "$tmp/models"
pnn-node kfold --dataset synthetic --subset 200 --models lenet5 --schedulers none --folds 2 \
  --epochs 1 --out "$tmp/run" --no-report --progress none | tail -1
[ -f "$tmp/run/summary.json" ]
# find_package(pnn) from the system prefix: no CMAKE_PREFIX_PATH.
cmake -S "$here" -B "$tmp/consumer" -DCMAKE_BUILD_TYPE=Release >/dev/null
grep -q "pnn_DIR:PATH=/usr/lib/cmake/pnn" "$tmp/consumer/CMakeCache.txt"
cmake --build "$tmp/consumer" -j 2 >/dev/null
"$tmp/consumer/consumer"
"$tmp/consumer/custom_pipeline" --epochs 6 --patience 2
echo "package.deb: ok"
