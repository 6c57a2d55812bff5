#!/usr/bin/env bash
# Installs pnn's build and run dependencies from Debian 12 packages; idempotent.
# Extra package names given as arguments are installed too (check scripts use this).
set -euo pipefail
pkgs=(build-essential cmake pkg-config
      libcaf-dev libtorch-dev libboost-program-options-dev libopenblas0-openmp
      zlib1g-dev nlohmann-json3-dev dataset-fashion-mnist libssl-dev openssl
      gnuplot-nox libprotobuf-dev protobuf-compiler prometheus-cpp-dev "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
