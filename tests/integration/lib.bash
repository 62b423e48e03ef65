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

# same_result a.h5 b.h5: datasets bitwise identical and every attribute equal
# except the timing and placement ones (train_seconds, ranks), via h5diff.
same_result() {
  local out
  out=$(h5diff -v2 "$1" "$2" 2>&1 || true)
  out=$(echo "$out" | grep -v "Attributes status")
  if echo "$out" | grep -qiE "not comparable|only in|cannot|error"; then
    echo "$out" | grep -iE "not comparable|only in|cannot|error" | head -20
    return 1
  fi
  local bad
  bad=$(echo "$out" | awk '
    /^attribute: </ { what = "attribute " $2 " of " $4 }
    /^dataset: </   { what = "dataset " $2 }
    /differences found/ { if ($1 > 0) print what, $1 }' |
    grep -vE '^attribute <(train_seconds|ranks) ' || true)
  if [ -n "$bad" ]; then
    echo "differences between $1 and $2:"
    echo "$bad"
    return 1
  fi
  # h5diff must have compared datasets at all.
  echo "$out" | grep -qE "^dataset: </ensemble/(probs|mean)>" ||
    { echo "h5diff compared nothing"; return 1; }
}

# stop_resume NAME ARGS...: runs `ens train ARGS` on 2 ranks uninterrupted
# (in full-NAME) and stopped by USR1 after the first epoch line then resumed
# (in stop-NAME), and checks the two results are identical.
stop_resume() {
  local name=$1 pid code
  shift
  run_np 2 "full-$name" "$@" || fail "uninterrupted $name run"
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
  [ $code = 75 ] || { cat "stop-$name/log"; fail "$name: exit code $code after USR1, expected 75"; }
  run_np 2 "stop-$name" "$@" --resume || fail "$name: resume"
  grep -qE "resumed at|not retrained" "stop-$name/log" || fail "$name: nothing was resumed"
  local out
  out=$(ls "full-$name"/*.h5 | head -n 1)
  same_result "$out" "stop-$name/$(basename "$out")" || fail "$name: resumed result differs"
  echo "ok: $name stop/resume identical"
}

# stop_at PATTERN LOG PID: waits until LOG (of `mpirun` PID) matches PATTERN,
# then freezes the ranks (mpirun's children), sends USR1 to mpirun (it
# forwards it to every rank) and lets the ranks go on: the signal is pending
# before they take another step, however fast this machine trains.
stop_at() {
  local pattern=$1 log=$2 pid=$3 kids
  for _ in $(seq 1 1200); do
    grep -qE "$pattern" "$log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  kids=$(pgrep -P "$pid" || true)
  [ -n "$kids" ] && kill -STOP $kids
  kill -USR1 "$pid"
  sleep 0.2
  [ -n "$kids" ] && kill -CONT $kids
  return 0
}

# ens_lines FILE: the lines ens itself wrote to a stderr log (mpirun's own
# framed notices about non-zero exit codes left out).
ens_lines() {
  awk '/^-{20,}$/ { box = !box; next } !box' "$1" | grep -vE '^mpirun: Forwarding signal' || true
}

# no_abort LOG: fails when mpirun reported an MPI_Abort.
no_abort() {
  if grep -q "MPI_ABORT" "$1"; then
    cat "$1"
    fail "MPI_ABORT notice in $1"
  fi
}
