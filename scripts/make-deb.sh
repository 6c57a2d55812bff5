#!/usr/bin/env bash
# Builds pnn (./scripts/build.sh) and its Debian package: build/pnn_<version>_<arch>.deb.
# Install it with: apt-get install ./build/pnn_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
cd build
cpack -G DEB >/dev/null
ls -1 "$PWD"/pnn_*.deb
