#!/usr/bin/env bash
# Configures, builds and tests batchpipe in build-NAME with the given CMake arguments (Ninja when
# it is installed), warnings as errors: how CI builds on each platform and compiler.
#
#   scripts/build-and-test.sh NAME [--targets T1,T2] [CMAKE_ARGS...]
#       e.g. scripts/build-and-test.sh clang -DCMAKE_CXX_COMPILER=clang++
#
# With --targets, only those targets are built and nothing is run.
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
targets=()
if [ "${1:-}" = --targets ]; then
  IFS=, read -ra names <<<"${2:-}"
  [ ${#names[@]} -gt 0 ] || { echo "build-and-test.sh: --targets needs a list, e.g. --targets fashion_mnist,benchmark" >&2; exit 2; }
  shift 2
  targets=(--target "${names[@]}")
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
start=$SECONDS
cmake -S . -B "build-$name" "${generator[@]}" -DBATCHPIPE_WERROR=ON "$@"
cmake --build "build-$name" -j2 "${targets[@]}"
built=$SECONDS
if [ ${#targets[@]} -gt 0 ]; then
  echo "build-$name: built ${names[*]} in $((built - start)) s"
  exit 0
fi
ctest --test-dir "build-$name" --output-on-failure -j2
echo "build-$name: built in $((built - start)) s, tested in $((SECONDS - built)) s"
