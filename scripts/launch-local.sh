#!/usr/bin/env bash
# Starts N copies of a program on this machine as one distributed job, the way PyTorch's
# torchrun does: each gets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1 and MASTER_PORT
# in its environment (bp::Distributed::from_environment reads them). Each line of output is
# prefixed with its rank. Exits with the status of the lowest failing rank (0 when all succeed).
#
#   scripts/launch-local.sh -n 3 [--port 29500] [--threads T] -- build/examples/fashion_mnist --distributed
#
# --threads sets OMP_NUM_THREADS for each process (default: the cores divided among the ranks),
# so that N processes do not each start a thread per core.
set -uo pipefail

usage() {
  sed -n '2,11s/^# \{0,1\}//p' "$0"
  exit 2
}

ranks=2
port=29500
threads=""
while [ $# -gt 0 ]; do
  case "$1" in
    -n | --nproc) ranks=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --) shift; break ;;
    -h | --help) usage ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || usage
[[ "$ranks" =~ ^[1-9][0-9]*$ ]] || { echo "launch-local.sh: -n wants a positive number, got '$ranks'" >&2; exit 2; }
if [ -z "$threads" ]; then
  threads=$(($(nproc) / ranks))
  [ "$threads" -ge 1 ] || threads=1
fi

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null; }
trap cleanup INT TERM
for ((rank = 0; rank < ranks; ++rank)); do
  RANK=$rank LOCAL_RANK=$rank WORLD_SIZE=$ranks MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    OMP_NUM_THREADS=$threads "$@" > >(sed -u "s/^/[rank $rank] /") 2>&1 &
  pids+=($!)
done

status=0
for ((rank = 0; rank < ranks; ++rank)); do
  wait "${pids[$rank]}"
  code=$?
  if [ "$code" -ne 0 ]; then
    echo "launch-local.sh: rank $rank exited with status $code" >&2
    [ "$status" -ne 0 ] || status=$code
  fi
done
wait  # the prefixing of the last lines of output
exit "$status"
