#!/usr/bin/env bash
# scripts/launch-local.sh with shell commands as ranks: when one rank fails at once, the launcher
# stops the others (here sleeping 300 s, as ranks waiting out a job's timeout do) and exits with
# the failing rank's status, naming it, within seconds.
#
#   tests/launch_local_test.sh [scripts/launch-local.sh]
set -uo pipefail
launcher=${1:-"$(dirname "$0")/../scripts/launch-local.sh"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "launch_local_test: $*" >&2
  exit 1
}

# Each rank but 1 leaves a child of its own sleeping, whose pid it records: stopping a rank must
# reach what it started too.
SECONDS=0
timeout 20 "$launcher" -n 3 --port 29644 -- sh -c \
  'if [ "$RANK" = 1 ]; then exit 3; fi; sleep 300 & echo $! > "$0/child$RANK"; wait' "$work" 2>"$work/stderr"
status=$?
elapsed=$SECONDS

[ "$status" -ne 124 ] || fail "the launcher still waited for the other ranks after 20 s"
[ "$status" -eq 3 ] || fail "exit status $status, expected rank 1's 3"
[ "$elapsed" -le 10 ] || fail "the launcher took $elapsed s to end the job"
grep -q "rank 1 exited with status 3" "$work/stderr" || fail "the failing rank is not named: $(cat "$work/stderr")"
# Running: listed, and not a zombie (an orphan's reaper may be slow). A signal takes a moment.
running() { grep -q '^State:[[:space:]]*[^Z]' "/proc/$1/status" 2>/dev/null; }
for child in "$work"/child*; do
  [ -e "$child" ] || continue  # that rank was stopped before it started its child
  pid=$(cat "$child")
  for ((try = 0; try < 20; ++try)); do running "$pid" || break; sleep 0.1; done
  ! running "$pid" || fail "a sleep started by a stopped rank (pid $pid) still runs"
done
echo "launch_local_test: the launcher exited with status 3 after $elapsed s, naming rank 1"
