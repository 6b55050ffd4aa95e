#!/usr/bin/env bash
# Installs what batchpipe's build, tests and examples need on Debian 12 (run as root);
# `--ci` adds what CI needs besides, `--benchmarks` what the image benchmark (W3) needs.
# Safe to repeat: packages already present are skipped, and apt is asked only when one is missing.
set -euo pipefail

packages=(
  build-essential cmake
  libtorch-dev          # LibTorch (CPU build on Debian)
  libtbb-dev            # oneTBB
  catch2                # Catch2, for the tests
  libgmock-dev          # GoogleMock, for the test that includes it beside batchpipe
  libgloo-dev           # needed by the c10d Gloo headers LibTorch installs
  libopenblas0-pthread  # without it LibTorch falls back to reference BLAS (about 17x slower)
  dataset-fashion-mnist # real data for the examples
  libcli11-dev          # command-line flags in the examples
  libbenchmark-dev      # W0 micro benchmarks (examples/benchmark/overhead.cpp)
  libstb-dev            # image files: writing, and the formats the two below do not decode
  libturbojpeg0-dev     # JPEG decoding, scaled in the DCT
  libspng-dev           # PNG decoding
  zlib1g-dev            # gzip-compressed IDX files
  nlohmann-json3-dev    # JSON for bp::Config
)
# What CI needs beyond the build: the API reference, and the Debian 13 root (scripts/debian13.sh).
if [ "${1:-}" = "--ci" ]; then
  packages+=(doxygen debootstrap clang-format git)
fi
# W3's photographs and the script that cuts them (scripts/make-w3-folder.py), and the Python peers.
if [ "${1:-}" = "--benchmarks" ]; then
  packages+=(plasma-workspace-wallpapers python3-pil python3-torchvision)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
