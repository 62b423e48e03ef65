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
  # grep reads a here-string: `echo | grep -q` under pipefail fails when grep
  # exits at the first match before echo has written a long output (SIGPIPE).
  grep -qE "^same dataset /ensemble/(probs|mean)$" <<<"$out" ||
    { echo "$out" | tail -3; echo "ens diff compared no /ensemble/probs or /ensemble/mean"; return 1; }
  grep -qE "are identical: [1-9][0-9]* datasets" <<<"$out" ||
    { echo "$out" | tail -3; echo "ens diff compared no datasets"; return 1; }
}

# stop_resume NAME ARGS...: runs `ens train ARGS` on 2 ranks uninterrupted
# (in full-NAME) and stopped by USR1 after the first epoch line (the job must
# print per-epoch lines) then resumed (in stop-NAME), and checks: exit 75,
# no result and no temporary file after the stop, checkpoints written, the
# resumed result identical to the uninterrupted one, checkpoints removed.
stop_resume() {
  local name=$1 pid code attempt out
  shift
  run_np 2 "full-$name" "$@" || fail "uninterrupted $name run"
  out=$(cd "full-$name" && ls ./*.h5 | head -n 1)
  out=${out#./}
  # A small job may finish before the signal arrives (exit 0): that stop
  # tested nothing, so try again (up to 3 times).
  for attempt in 1 2 3; do
    rm -rf "stop-$name"
    mkdir -p "stop-$name"
    (cd "stop-$name" && exec mpirun -np 2 "$ENS" train "$@") >"stop-$name/log" 2>&1 &
    pid=$!
    # The ranks frozen as soon as the first epoch line shows, the signal
    # sent, then let go: the stop lands in training unless the whole job
    # took less than the polling (20 ms); callers size jobs well above that.
    stop_at "epoch 1/" "stop-$name/log" $pid
    code=0
    wait $pid || code=$?
    [ $code = 0 ] && [ $attempt -lt 3 ] && { echo "$name: finished before USR1 arrived; again"; continue; }
    break
  done
  [ $code = 75 ] || { cat "stop-$name/log"; fail "$name: exit code $code after USR1, expected 75"; }
  [ ! -e "stop-$name/$out" ] || fail "$name: a result was written despite the stop"
  ls "stop-$name/$out.ckpt"/unit_*.h5 >/dev/null 2>&1 || fail "$name: no checkpoints"
  ls "stop-$name/$out".tmp.* 2>/dev/null && fail "$name: temporary result left behind"
  run_np 2 "stop-$name" "$@" --resume || fail "$name: resume"
  grep -qE "resumed at|not retrained" "stop-$name/log" || fail "$name: nothing was resumed"
  same_result "full-$name/$out" "stop-$name/$out" || fail "$name: resumed result differs"
  [ ! -d "stop-$name/$out.ckpt" ] || fail "$name: checkpoints not cleaned up"
  echo "ok: $name stop/resume identical"
}

# skip REASON: the test cannot run here; CTest reports it as skipped (77).
skip() {
  echo "SKIPPED: $(basename "$0" .sh): $*"
  exit 77
}

# need_simnodes N: simulated nodes node1..nodeN (DESIGN.md "Two nodes on one
# machine") can run here: nodeI resolves to 127.0.0.(I+1) (as root, missing
# /etc/hosts lines are added and left there: another test may be using them)
# and UTS namespaces can be created. Skips the test otherwise.
need_simnodes() {
  local i name addr have
  for ((i = 1; i <= $1; i++)); do
    name=node$i addr=127.0.0.$((i + 1))
    have=$(getent ahostsv4 "$name" 2>/dev/null | awk 'NR == 1 { print $1 }' || true)
    [ "$have" = "$addr" ] && continue
    [ -z "$have" ] || skip "$name resolves to $have, not $addr; fix /etc/hosts"
    [ "$(id -u)" = 0 ] && { [ -w /etc/hosts ] || [ ! -e /etc/hosts ]; } ||
      skip "$name does not resolve and /etc/hosts is not writable here; add '$addr $name' to /etc/hosts"
    echo "$addr $name # ens simulated node (tests/integration)" >>/etc/hosts
    echo "added '$addr $name' to /etc/hosts"
    have=$(getent ahostsv4 "$name" 2>/dev/null | awk 'NR == 1 { print $1 }' || true)
    [ "$have" = "$addr" ] || skip "$name still does not resolve to $addr after editing /etc/hosts"
  done
  unshare --uts /bin/sh -c "hostname node1" 2>/dev/null ||
    skip "cannot create a UTS namespace and set its host name (unshare --uts needs root or CAP_SYS_ADMIN)"
}

# wait_line PATTERN LOG PID: waits (up to 24 s, polling every 20 ms) until
# LOG matches PATTERN or process PID has ended.
wait_line() {
  for _ in $(seq 1 1200); do
    grep -qE "$1" "$2" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || return 0
    sleep 0.02
  done
}

# stop_at PATTERN LOG PID: waits until LOG (of `mpirun` PID) matches PATTERN,
# then freezes the ranks (mpirun's children), sends USR1 to mpirun (it
# forwards it to every rank) and lets the ranks go on: the signal is pending
# before they take another step, however fast this machine trains.
stop_at() {
  local pattern=$1 log=$2 pid=$3 kids
  wait_line "$pattern" "$log" "$pid"
  kids=$(pgrep -P "$pid" || true)
  [ -n "$kids" ] && kill -STOP $kids
  kill -USR1 "$pid"
  sleep 0.2
  [ -n "$kids" ] && kill -CONT $kids
  return 0
}

# descendants PID: the PIDs of every process below PID.
descendants() {
  local c
  for c in $(pgrep -P "$1" || true); do
    echo "$c"
    descendants "$c"
  done
}

# stop_ranks_at PATTERN LOG PID: like stop_at, but freezes every ens process
# below mpirun PID (on simulated nodes the ranks sit under the rsh agent and
# orted, not directly under mpirun) and sends USR1 to each rank itself, as
# SLURM signals every process of a step, instead of relying on mpirun's
# forwarding through the remote daemons.
stop_ranks_at() {
  local pattern=$1 log=$2 pid=$3 ranks p
  wait_line "$pattern" "$log" "$pid"
  ranks=$(for p in $(descendants "$pid"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = ens ] && echo "$p"
  done)
  [ -n "$ranks" ] || return 0
  kill -STOP $ranks 2>/dev/null || true
  kill -USR1 $ranks 2>/dev/null || true
  sleep 0.2
  kill -CONT $ranks 2>/dev/null || true
  return 0
}

# stop_ranks_retry DIR PATTERN CMD...: runs CMD in the fresh folder DIR
# (output to DIR/log) in the background, stops its ranks with stop_ranks_at
# at the first line matching PATTERN and sets `code` to CMD's exit status. A
# job that finished before the signal arrived (exit 0) tested nothing: it is
# run again, 3 times in all.
stop_ranks_retry() {
  local dir=$1 pattern=$2 attempt pid
  shift 2
  for attempt in 1 2 3; do
    rm -rf "$dir"
    mkdir -p "$dir"
    (cd "$dir" && exec "$@" </dev/null) >"$dir/log" 2>&1 &
    pid=$!
    stop_ranks_at "$pattern" "$dir/log" $pid
    code=0
    wait $pid || code=$?
    [ $code = 0 ] && [ $attempt -lt 3 ] && { echo "finished before USR1 arrived; again"; continue; }
    break
  done
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

# run2 DIR ARGS...: ens train on 2 ranks in DIR, stdout+stderr in DIR/log;
# prints the exit code.
run2() {
  local dir=$1 code=0
  shift
  mkdir -p "$dir"
  (cd "$dir" && mpirun -np 2 "$ENS" train "$@") >"$dir/log" 2>&1 || code=$?
  echo "$code"
}

# one_error DIR PATTERN: ens printed exactly one error line in DIR/log, and
# it matches PATTERN; no MPI_ABORT notice.
one_error() {
  local n
  n=$(ens_lines "$1/log" | grep -c "^ens train:" || true)
  [ "$n" = 1 ] || { cat "$1/log"; fail "$1: $n error lines, expected 1"; }
  ens_lines "$1/log" | grep "^ens train:" | grep -qE "$2" ||
    { cat "$1/log"; fail "$1: the message does not match /$2/"; }
  no_abort "$1/log"
  echo "ok: $1: $(ens_lines "$1/log" | grep '^ens train:')"
}
