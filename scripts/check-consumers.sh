#!/usr/bin/env bash
# Builds and runs a consumer project for each way of consuming batchpipe: an installed prefix
# (moved after installing, to prove the package relocatable) with find_package, add_subdirectory,
# and FetchContent from this git repository. None of the consumers calls find_package(Torch).
#
#   scripts/check-consumers.sh [WORK_DIR]     (default: build-consumers)
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/.." && pwd)
work=$(mkdir -p "${1:-$source_dir/build-consumers}" && cd "${1:-$source_dir/build-consumers}" && pwd)
consumers=$source_dir/tests/consumers
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

build_and_run() {  # name, extra configure arguments...
  local name=$1; shift
  echo "== consumer: $name"
  rm -rf "$work/$name"
  cmake -S "$consumers/$name" -B "$work/$name" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@" >"$work/$name.log"
  cmake --build "$work/$name" >>"$work/$name.log"
  "$work/$name/consumer"
}

# 1. Installed, then moved: nothing in the package may point at where it was built or installed.
rm -rf "$work/install" "$work/prefix" "$work/moved"
cmake -S "$source_dir" -B "$work/install" "${generator[@]}" -DBATCHPIPE_INSTALL=ON \
  -DBATCHPIPE_BUILD_TESTS=OFF -DBATCHPIPE_BUILD_EXAMPLES=OFF >"$work/install.log"
cmake --install "$work/install" --prefix "$work/prefix" >>"$work/install.log"
if grep -rn -e "$source_dir" -e "$work" -e "/usr/lib" "$work/prefix/share/cmake/batchpipe"; then
  echo "the installed package records absolute paths (above)" >&2
  exit 1
fi
mv "$work/prefix" "$work/moved"
build_and_run find_package -DCMAKE_PREFIX_PATH="$work/moved"

# 2. A subfolder of the application.
build_and_run add_subdirectory -DBATCHPIPE_SOURCE_DIR="$source_dir"

# 3. FetchContent from this repository, at the commit checked out.
build_and_run fetch_content -DBATCHPIPE_GIT_REPOSITORY="$source_dir" \
  -DBATCHPIPE_GIT_TAG="$(git -C "$source_dir" rev-parse HEAD)"
echo "== all consumers built and ran"
