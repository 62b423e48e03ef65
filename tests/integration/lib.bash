# Shared helpers for the integration tests: each test is run by CTest as
# `bash test.sh <path to ens> <work dir>`.
set -euo pipefail
ENS=$1
WORK=$2
SRC=${ENS_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# run_np P dir args...: runs ens train on P ranks inside dir (P = 0: no mpirun).
run_np() {
  local np=$1 dir=$2
  shift 2
  mkdir -p "$dir"
  if [ "$np" = 0 ]; then
    (cd "$dir" && "$ENS" train "$@") >"$dir/log" 2>&1 || { cat "$dir/log"; return 1; }
  else
    (cd "$dir" && mpirun -np "$np" --oversubscribe "$ENS" train "$@") >"$dir/log" 2>&1 ||
      { cat "$dir/log"; return 1; }
  fi
}

# same_result a.h5 b.h5: `ens diff` finds them identical (datasets bitwise,
# attributes by value, configurations key by key; timing and placement
# exempt), and it compared the ensemble's predictions at all.
same_result() {
  local out code=0
  out=$("$ENS" diff -v "$1" "$2" 2>&1) || code=$?
  if [ $code != 0 ]; then
    echo "ens diff $1 $2 exited $code:"
    echo "$out" | head -30
    return 1
  fi
  echo "$out" | grep -qE "^same dataset /ensemble/(probs|mean)$" ||
    { echo "$out" | tail -3; echo "ens diff compared no /ensemble/probs or /ensemble/mean"; return 1; }
  echo "$out" | grep -qE "are identical: [1-9][0-9]* datasets" ||
    { echo "$out" | tail -3; echo "ens diff compared no datasets"; return 1; }
}

# stop_resume NAME ARGS...: runs `ens train ARGS` on 2 ranks uninterrupted
# (in full-NAME) and stopped by USR1 after the first epoch line then resumed
# (in stop-NAME), and checks the two results are identical.
stop_resume() {
  local name=$1 pid code attempt
  shift
  run_np 2 "full-$name" "$@" || fail "uninterrupted $name run"
  # A small job may finish before the signal arrives (exit 0): that stop
  # tested nothing, so try again (up to 3 times).
  for attempt in 1 2 3; do
    rm -rf "stop-$name"
    mkdir -p "stop-$name"
    (cd "stop-$name" && exec mpirun -np 2 "$ENS" train "$@") >"stop-$name/log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
      grep -q "epoch 1/" "stop-$name/log" 2>/dev/null && break
      sleep 0.05
    done
    kill -USR1 $pid
    code=0
    wait $pid || code=$?
    [ $code = 0 ] && [ $attempt -lt 3 ] && { echo "$name: finished before USR1 arrived; again"; continue; }
    break
  done
  [ $code = 75 ] || { cat "stop-$name/log"; fail "$name: exit code $code after USR1, expected 75"; }
  run_np 2 "stop-$name" "$@" --resume || fail "$name: resume"
  grep -qE "resumed at|not retrained" "stop-$name/log" || fail "$name: nothing was resumed"
  local out
  out=$(ls "full-$name"/*.h5 | head -n 1)
  same_result "$out" "stop-$name/$(basename "$out")" || fail "$name: resumed result differs"
  echo "ok: $name stop/resume identical"
}
