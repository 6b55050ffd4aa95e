#!/usr/bin/env bash
# Configures, builds and tests batchpipe in build-NAME with the given CMake arguments (Ninja when
# it is installed), warnings as errors: how CI builds on each platform and compiler.
#
#   scripts/build-and-test.sh NAME [CMAKE_ARGS...]     e.g. scripts/build-and-test.sh clang -DCMAKE_CXX_COMPILER=clang++
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
start=$SECONDS
cmake -S . -B "build-$name" "${generator[@]}" -DBATCHPIPE_WERROR=ON "$@"
cmake --build "build-$name" -j2
built=$SECONDS
ctest --test-dir "build-$name" --output-on-failure -j2
echo "build-$name: built in $((built - start)) s, tested in $((SECONDS - built)) s"
