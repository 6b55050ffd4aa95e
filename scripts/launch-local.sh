#!/usr/bin/env bash
# Starts N copies of a program on this machine as one distributed job, the way PyTorch's
# torchrun does: each gets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1 and MASTER_PORT
# in its environment (bp::Distributed::from_environment reads them). Each line of output is
# prefixed with its rank. The first rank to fail ends the job: the others are stopped (they
# would otherwise wait out the job's timeout for it), and the launcher exits with its status,
# naming it (0 when all succeed).
#
#   scripts/launch-local.sh -n 3 [--port 29500] [--threads T] -- build/examples/fashion_mnist --distributed
#
# --threads sets OMP_NUM_THREADS for each process (default: the cores divided among the ranks),
# so that N processes do not each start a thread per core.
set -uo pipefail

usage() {
  sed -n '2,12s/^# \{0,1\}//p' "$0"
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

# setsid makes each rank the leader of a process group of its own (the pid stays the same), so that
# stopping a rank stops what it started too: a shell's children would otherwise keep its output
# open, and the launcher waiting. The prefixing sed is started before, outside that group.
declare -A rank_of  # the pid of each rank still running -> its rank
stop_ranks() {
  for pid in "${!rank_of[@]}"; do
    # A rank that has not reached setsid yet has no group of its own: it is stopped by its pid.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  done
}
trap stop_ranks INT TERM
for ((rank = 0; rank < ranks; ++rank)); do
  RANK=$rank LOCAL_RANK=$rank WORLD_SIZE=$ranks MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    OMP_NUM_THREADS=$threads setsid "$@" > >(sed -u "s/^/[rank $rank] /") 2>&1 &
  rank_of[$!]=$rank
done

status=0
while [ ${#rank_of[@]} -gt 0 ]; do
  # Returns when a rank ends (or a signal comes). Ranks that ended together may have left the
  # table of jobs that `wait -n` reads ("no such job"): each is looked at below, and `wait PID`
  # still has its status.
  wait -n "${!rank_of[@]}" 2>/dev/null
  for pid in "${!rank_of[@]}"; do
    ! kill -0 "$pid" 2>/dev/null || continue
    wait "$pid"
    code=$?
    rank=${rank_of[$pid]}
    unset "rank_of[$pid]"
    if [ "$code" -ne 0 ] && [ "$status" -eq 0 ]; then
      status=$code
      echo "launch-local.sh: rank $rank exited with status $code; stopping the other ranks" >&2
      stop_ranks
    fi
  done
done
wait  # the prefixing of the last lines of output
exit "$status"
