#!/usr/bin/env bash
# Builds and tests batchpipe on Debian 13 "trixie" (LibTorch 2.6, oneTBB 2022, Catch2 v3, g++ 14,
# clang 19) inside a chroot made with debootstrap from Debian's archive. Run as root.
#
#   scripts/debian13.sh root            make the root (reused when it is already complete)
#   scripts/debian13.sh run CMD...      run CMD in the root, in a copy of this source tree
#
# The root lives in $BATCHPIPE_DEBIAN13_ROOT (default /var/cache/batchpipe/debian13), outside the
# source tree, so that every clone on the machine reuses it; making it takes a few minutes and
# about 3 GB.
set -euo pipefail

root=${BATCHPIPE_DEBIAN13_ROOT:-/var/cache/batchpipe/debian13}
source_dir=$(cd "$(dirname "$0")/.." && pwd)
# Bumped whenever the package list changes, so that an older root is completed, not trusted.
root_version=4
packages=(
  build-essential cmake ninja-build g++ clang
  libtorch-dev libtbb-dev catch2 libgloo-dev libopenblas0-pthread
  libcli11-dev libstb-dev libturbojpeg0-dev libspng-dev zlib1g-dev libgmock-dev nlohmann-json3-dev libbenchmark-dev
  dataset-fashion-mnist
  libclang-rt-19-dev llvm-19  # the sanitizers' and libFuzzer's runtimes, llvm-symbolizer
)

archive_url() {
  # The machine's own Debian mirror (the only archive this machine can reach).
  local url
  url=$(grep -hoE '^URIs: *http[^ ]*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')
  [ -n "$url" ] || url=$(grep -hoE '^deb +http[^ ]*/debian/? ' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')
  echo "${url:-http://deb.debian.org/debian}"
}

make_root() {
  if [ "$(cat "$root/.batchpipe-root" 2>/dev/null)" = "$root_version" ]; then
    return
  fi
  command -v debootstrap >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap
  }
  local url; url=$(archive_url)
  if [ ! -x "$root/usr/bin/apt-get" ]; then
    echo "debian13: debootstrap trixie from $url into $root"
    mkdir -p "$root"
    debootstrap --variant=minbase trixie "$root" "$url" >/dev/null
  fi
  # deb-src: scripts/sanitize.sh builds oneTBB from Debian's source for ThreadSanitizer.
  printf 'deb %s trixie main\ndeb-src %s trixie main\n' "$url" "$url" > "$root/etc/apt/sources.list"
  with_mounts chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends ${packages[*]} >/dev/null"
  echo "$root_version" > "$root/.batchpipe-root"
}

# /proc and /dev inside the root for the duration of one command; unmounted however it ends.
with_mounts() {
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  mountpoint -q "$root/dev" || mount --bind /dev "$root/dev"
  local status=0
  "$@" || status=$?
  umount "$root/dev" 2>/dev/null || true
  umount "$root/proc" 2>/dev/null || true
  return $status
}

run_in_root() {
  make_root
  # A fresh copy of the tree (without build folders) at /src in the root.
  rm -rf "$root/src"
  mkdir -p "$root/src"
  tar -C "$source_dir" --exclude='./build*' --exclude='./.git' -cf - . | tar -C "$root/src" -xf -
  with_mounts chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin \
    LANG=C.UTF-8 bash -c 'cd /src && "$@"' bash "$@"
}

case "${1:-}" in
  root) make_root ;;
  run) shift; run_in_root "$@" ;;
  *) echo "usage: $0 root | run CMD..." >&2; exit 2 ;;
esac
