#!/usr/bin/env bash
# Installs what batchpipe's build, tests and examples need on Debian 12 (run as root).
# Safe to repeat: packages already present are skipped, and apt is asked only when one is missing.
set -euo pipefail

packages=(
  build-essential cmake
  libtorch-dev          # LibTorch (CPU build on Debian)
  libtbb-dev            # oneTBB
  catch2                # Catch2 v2 single header, for the tests
  libgloo-dev           # needed by the c10d Gloo headers LibTorch installs
  libopenblas0-pthread  # without it LibTorch falls back to reference BLAS (about 17x slower)
  dataset-fashion-mnist # real data for the examples
  libcli11-dev          # command-line flags in the examples
  libstb-dev            # PNG / JPEG decoding
  zlib1g-dev            # gzip-compressed IDX files
)

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
