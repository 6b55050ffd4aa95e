#!/usr/bin/env bash
# Prints how long a translation unit takes to compile (-O2, C++20) with batchpipe's umbrella
# header, with torch/torch.h alone, and with both: the compile-time table of
# docs/contributing.md. Best of REPEATS runs (3); run it with nothing else compiling.
#
#   scripts/compile-times.sh [COMPILER]      (default: c++)
set -euo pipefail
cd "$(dirname "$0")/.."
compiler=${1:-c++}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
torch_includes=(-isystem /usr/include/torch/csrc/api/include)
time_tu() {  # includes...
  local source=$work/tu.cpp best=""
  : >"$source"
  for header in "$@"; do echo "#include <$header>" >>"$source"; done
  echo "int main() {}" >>"$source"
  for ((i = 0; i < ${REPEATS:-3}; i++)); do
    local start end
    start=$(date +%s.%N)
    "$compiler" -std=c++20 -O2 -Iinclude "${torch_includes[@]}" -c "$source" -o "$work/tu.o"
    end=$(date +%s.%N)
    best=$(echo "$start $end ${best:-999}" | awk '{t = $2 - $1; print (t < $3 ? t : $3)}')
  done
  printf '%.1f s' "$best"
}
echo "| $($compiler --version | head -n1) | seconds |"
echo "|---|---|"
echo "| <batchpipe/batchpipe.hpp> | $(time_tu batchpipe/batchpipe.hpp) |"
echo "| <torch/torch.h> | $(time_tu torch/torch.h) |"
echo "| both | $(time_tu batchpipe/batchpipe.hpp torch/torch.h) |"
