#!/usr/bin/env bash
# Builds the libFuzzer targets of the file readers (tests/fuzz/, clang) and runs each for SECONDS
# (default 60) from its corpus in tests/fuzz/corpus/<reader>/. Every input of the corpus runs
# first, so an input that once found a defect (kept there) checks that it stays fixed.
#
#   scripts/fuzz.sh [SECONDS]
#
# A finding (a crash, a sanitizer report, an exception other than bp::Error, an allocation over
# the limit below) fails the run and leaves the input in build-fuzz/findings/: fix the defect and
# add the input to the reader's corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
for dir in /usr/lib/llvm-*/bin; do [ -x "$dir/llvm-symbolizer" ] && PATH=$dir:$PATH; done
export PATH
build=build-fuzz
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBATCHPIPE_WERROR=ON -DBATCHPIPE_BUILD_TESTS=OFF -DBATCHPIPE_BUILD_EXAMPLES=OFF -DBATCHPIPE_INSTALL=OFF \
  -DBATCHPIPE_BUILD_FUZZERS=ON >/dev/null
cmake --build "$build" -j2
mkdir -p "$build/findings"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for target in "$build"/tests/fuzz/fuzz_*; do
  reader=${target##*/fuzz_}
  # New inputs the fuzzer finds go to a scratch copy: the corpus in the repository stays small.
  work=$(mktemp -d)
  cp tests/fuzz/corpus/"$reader"/* "$work"/
  echo "== fuzz_$reader: $seconds s"
  # Inputs up to 4 KiB; no allocation above 128 MiB (a reader must not allocate more than such a
  # file can fill: 1032 times its size for gzip'ed IDX, 16384 times for images); 10 s per input.
  log=$build/findings/$reader.log
  status=0
  "$target" "$work" -max_total_time="$seconds" -max_len=4096 -malloc_limit_mb=128 -rss_limit_mb=2048 \
    -timeout=10 -print_final_stats=1 -artifact_prefix="$build/findings/$reader-" >"$log" 2>&1 || status=$?
  grep -E "^stat::(number_of_executed_units|new_units_added)|^Done" "$log" || true
  rm -rf "$work"
  if [ "$status" != 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz_$reader found a defect (exit $status): the input is in $build/findings/" >&2
    exit 1
  fi
done
