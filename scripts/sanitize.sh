#!/usr/bin/env bash
# Builds batchpipe's tests (and, for AddressSanitizer, the examples) with clang under sanitizers and runs
# them (CI does so in the Debian 13 root, whose clang 19 compiles LibTorch's headers in C++20):
#
#   scripts/sanitize.sh address    AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer)
#   scripts/sanitize.sh thread     ThreadSanitizer
#
# LibTorch and OpenBLAS are not instrumented: the few suppressions this needs are in
# tests/sanitizers/, each limited to a library's internals and saying why; any report in
# batchpipe's own code fails the run. For ThreadSanitizer, oneTBB is built instrumented from
# Debian's source of the installed version (in /opt, reused): an uninstrumented oneTBB hands every
# task over through atomics TSan cannot see, and every batch would be reported.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?usage: scripts/sanitize.sh address|thread}
suppressions=$PWD/tests/sanitizers
# The sanitizers symbolize their reports with llvm-symbolizer.
for dir in /usr/lib/llvm-*/bin; do [ -x "$dir/llvm-symbolizer" ] && PATH=$dir:$PATH; done
export PATH
# oneTBB from Debian's source of the installed libtbb-dev, built with ThreadSanitizer; prints its
# prefix. Needs a deb-src line for the distribution (scripts/debian13.sh adds one).
instrumented_onetbb() {
  local source version prefix work
  source=$(dpkg-query -W -f='${source:Package}' libtbb-dev)
  version=$(dpkg-query -W -f='${source:Version}' libtbb-dev)
  prefix=/opt/onetbb-tsan-$version
  if [ ! -f "$prefix/lib/cmake/TBB/TBBConfig.cmake" ]; then
    work=$(mktemp -d)
    # Only the upstream tarball is needed (apt checks it against the archive's hashes); the
    # mirror may lack the .dsc of a stable update, so apt's exit status is not trusted.
    (cd "$work" && apt-get source --download-only -qq "$source=$version" >/dev/null 2>&1 || true)
    tar -C "$work" -xf "$work"/${source}_*.orig.tar.*
    cmake -S "$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n1)" -B "$work/build" -G Ninja \
      -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTBB_SANITIZE=thread \
      -DTBB_TEST=OFF -DTBB_EXAMPLES=OFF -DTBBMALLOC_BUILD=OFF -DTBB_STRICT=OFF \
      -DCMAKE_INSTALL_PREFIX="$prefix" >/dev/null
    cmake --build "$work/build" -j2 >/dev/null
    cmake --install "$work/build" >/dev/null
    rm -rf "$work"
  fi
  echo "$prefix"
}

extra=()
case $kind in
  address)
    sanitizers=address,undefined
    # The docs pages' examples and the examples' command lines run on Debian 12 (unsanitized):
    # built here too they would take a quarter of CI's time for programs over the machinery the
    # tests already cover (CI took 60 minutes with them).
    extra=(-DBATCHPIPE_DOC_EXAMPLES=OFF -DBATCHPIPE_BUILD_EXAMPLES=OFF)
    export ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:abort_on_error=1
    export LSAN_OPTIONS=suppressions=$suppressions/lsan.supp:print_suppressions=0
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:suppressions=$suppressions/ubsan.supp
    ;;
  thread)
    sanitizers=thread
    onetbb=$(instrumented_onetbb)
    # The distributed tests hand tensors to Gloo's threads inside an uninstrumented LibTorch,
    # through synchronisation TSan cannot see; they run under AddressSanitizer. For CI's time
    # limit, only the test units most about threads are built (the others run prefetched
    # pipelines too, but over the same machinery): every unit runs under AddressSanitizer, the
    # examples and the docs examples on Debian 12.
    extra=(-DTBB_DIR="$onetbb/lib/cmake/TBB" -DBATCHPIPE_DISTRIBUTED_TESTS=OFF -DBATCHPIPE_BUILD_EXAMPLES=OFF
      "-DBATCHPIPE_TEST_UNITS=execution;stress;models;flow;images_and_training;expressions;seed_page" -DBATCHPIPE_DOC_EXAMPLES=OFF)
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$suppressions/tsan.supp:print_suppressions=0
    ;;
  *) echo "usage: scripts/sanitize.sh address|thread" >&2; exit 2 ;;
esac
scripts/build-and-test.sh "sanitize-$kind" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBATCHPIPE_API_CHECKS=OFF -DBATCHPIPE_SANITIZE=$sanitizers "${extra[@]}"
