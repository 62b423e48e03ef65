# The checkpoint lock and a requeue (issue 20, item 14): the lock is a
# kernel lock, released when its holder dies, so
#  a. kill -9 of every rank and of mpirun, then an immediate --resume on
#     this host, finishes with the uninterrupted result, no manual step;
#  b. the same with the job killed on simulated host node1 and resumed on
#     node2 (UTS namespaces, as in twonode.sh): the stale record names node1,
#     it is taken over with a warning, and the result is the uninterrupted one;
#  c. a live job on node1 is still respected by a job started on node2 with
#     the same checkpoint directory (exit 1, owner named, nothing touched).
# Skips (77) where UTS namespaces cannot be created.
# shellcheck shell=bash source=tests/integration/lib.bash
source "$(dirname "$0")/lib.bash"
need_simnodes 2
$PY "$SRC/tests/integration/make_data.py" data.h5 4000 32 4
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 128,64
dropout = 0.1
[train]
; 40 epochs: the job must still be running when kill9 has walked the
; process tree after the first checkpoint (with 6 it could finish first on
; a loaded machine, and the resume found a complete result)
epochs = 40
batch = 32
[ensemble]
members = 2
seed = 5
[output]
path = result.h5
verbose = 1
INI
run_np 2 full -c "$WORK/job.ini" || fail "uninterrupted run"

# on HOST CMD...: runs CMD with the host name HOST (a UTS namespace).
on() {
  local host=$1
  shift
  unshare --uts /bin/sh -c "hostname $host && exec \"\$@\"" sh "$@"
}

# start DIR HOST [ARGS]: ens train on 2 ranks on HOST in DIR, in the
# background; sets PID (mpirun's).
start() {
  local dir=$1 host=$2
  shift 2
  mkdir -p "$dir"
  (cd "$dir" && exec unshare --uts /bin/sh -c \
    "hostname $host && exec mpirun -np 2 \"\$@\"" sh "$ENS" train -c "$WORK/job.ini" "$@") \
    >"$dir/log" 2>&1 </dev/null &
  PID=$!
}

# wait_ckpt DIR: waits until a unit checkpoint exists (and the lock).
wait_ckpt() {
  for _ in $(seq 1 1500); do
    ls "$1"/result.h5.ckpt/unit_*.h5 >/dev/null 2>&1 && return 0
    kill -0 "$PID" 2>/dev/null || { cat "$1/log"; fail "$1: the job ended before its first checkpoint"; }
    sleep 0.02
  done
  fail "$1: no checkpoint after 30 s"
}

# kill9 PID: SIGKILL to mpirun, its children (the ranks) and theirs, all at
# once, as when a node dies.
kill9() {
  local all=$1 kids next
  kids=$1
  while [ -n "$kids" ]; do
    next=""
    for k in $kids; do next="$next $(pgrep -P "$k" || true)"; done
    kids=$(echo $next)
    all="$all $kids"
  done
  kill -9 $all 2>/dev/null || true
  echo "killed with SIGKILL: $all"
}

# resume_on DIR HOST: --resume on HOST right away; must finish with the
# uninterrupted result.
resume_on() {
  local dir=$1 host=$2 code=0
  (cd "$dir" && on "$host" mpirun -np 2 "$ENS" train -c "$WORK/job.ini" --resume) \
    >"$dir/log2" 2>&1 </dev/null || code=$?
  [ $code = 0 ] || { cat "$dir/log2"; fail "$dir: --resume on $host exited $code"; }
  grep -qE "resumed at|not retrained" "$dir/log2" || { cat "$dir/log2"; fail "$dir: nothing was resumed"; }
  grep -q "^ens: warning: result.h5.ckpt/lock was left by process [0-9]* on host $3, which no longer holds it: taking it over" \
    "$dir/log2" || { cat "$dir/log2"; fail "$dir: no warning naming the killed job's lock on $3"; }
  same_result full/result.h5 "$dir/result.h5" || fail "$dir: resumed result differs"
  [ ! -d "$dir/result.h5.ckpt" ] || fail "$dir: checkpoints not cleaned up"
  echo "ok: $dir: $(grep '^ens: warning: .*lock' "$dir/log2")"
}

# ------------------------------------------- a. kill -9, resume on this host
start a node1
wait_ckpt a
kill9 "$PID"
wait "$PID" 2>/dev/null || true
resume_on a node1 node1

# --------------------------------- b. kill -9 on node1, resume on node2
start b node1
wait_ckpt b
kill9 "$PID"
wait "$PID" 2>/dev/null || true
grep -q "^host node1$" b/result.h5.ckpt/lock || { cat b/result.h5.ckpt/lock; fail "b: the lock does not record node1"; }
resume_on b node2 node1

# ------------------------------- c. a live job on node1, a second on node2
start c node1 --set train.epochs=400
wait_ckpt c
before=$(cd c/result.h5.ckpt && find . -type f -name 'unit_*' | sort)
code=0
(cd c && on node2 mpirun -np 2 "$ENS" train -c "$WORK/job.ini" --set train.epochs=400 --resume) \
  >c/log2 2>&1 </dev/null || code=$?
kill -0 "$PID" 2>/dev/null || { cat c/log; fail "c: the live job ended during the check"; }
kill -USR1 "$PID"
wait "$PID" 2>/dev/null || true
[ $code = 1 ] || { cat c/log2; fail "c: a second job on node2 exited $code, expected 1"; }
n=$(ens_lines c/log2 | grep -c "^ens train:" || true)
[ "$n" = 1 ] || { cat c/log2; fail "c: $n error lines, expected 1"; }
ens_lines c/log2 | grep "^ens train:" |
  grep -q "checkpoint directory result.h5.ckpt is in use by another job (process [0-9]* on host node1" ||
  { cat c/log2; fail "c: the message does not name the job on node1"; }
grep -q "remove the lock file" c/log2 && fail "c: told to remove a live job's lock file"
grep -q "taking it over" c/log2 && fail "c: the live job's lock was taken over"
after=$(cd c/result.h5.ckpt && find . -type f -name 'unit_*' | sort)
[ -n "$before" ] && [ -n "$after" ] || fail "c: the live job's checkpoints are gone"
echo "ok: c: $(ens_lines c/log2 | grep '^ens train:')"
echo "locks: all passed"
