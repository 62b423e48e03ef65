# Faults a cluster produces every week (issue 11), under mpirun -np 2:
#  a. an error on rank 0 only, on rank 1 only and on every rank reaches the
#     user once, in the failing rank's own words, with exit 1 (input) or 2
#     (runtime) on all ranks and no MPI_ABORT notice; after a failed
#     checkpoint write the other rank stops with its checkpoint and
#     --resume finishes with the uninterrupted result;
#  b. damaged checkpoints on the non-root rank (truncated, not HDF5, from
#     another configuration) are named in a warning, that unit restarts from
#     scratch and the result is bitwise that of an uninterrupted run;
#  c. the checkpoint directory lock: a live owner stops a second job (exit 1,
#     nothing touched), a dead owner's lock is taken over, another host's
#     held lock is not, nor its record where the file system has no locks;
#  d. the result cannot be published (a directory has its name): exit 2 with
#     the path and the reason, the directory untouched, the checkpoints kept;
#     and the storage estimate printed before training (verbose = 2) bounds
#     the result and the checkpoint directory actually written, for a search
#     (members of different sizes) and bootstrap with MC rows.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 6000 24 5
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 512,256
dropout = 0.1
[train]
epochs = 3
batch = 32
[ensemble]
members = 4
[output]
path = result.h5
verbose = 1
INI

run_np 2 full -c "$WORK/job.ini" || fail "uninterrupted run"

# ---------------------------------------------------------------- a. errors
# Rank 0 only: [trunk] file is read by rank 0 alone.
echo "not hdf5" >bad-trunk.h5
code=$(run2 r0 -c "$WORK/job.ini" --set trunk.source=file --set trunk.file="$WORK/bad-trunk.h5" \
  --set trunk.layers=1)
[ "$code" = 1 ] || { cat r0/log; fail "rank-0 error: exit $code, expected 1"; }
one_error r0 "bad-trunk.h5.*HDF5"
[ ! -e r0/result.h5 ] && [ ! -e r0/result.h5.ckpt ] || fail "rank-0 error left files behind"
ls r0/result.h5.tmp.* 2>/dev/null && fail "rank-0 error left a temporary result"

# Rank 1 only: its checkpoint cannot be created (a directory stands where
# the temporary file goes). Rank 0 stops after its step with a checkpoint.
mkdir -p r1/result.h5.ckpt/unit_1.h5.tmp
code=$(run2 r1 -c "$WORK/job.ini")
[ "$code" = 2 ] || { cat r1/log; fail "rank-1 error: exit $code, expected 2"; }
one_error r1 "^ens train: rank 1: cannot write checkpoint result.h5.ckpt/unit_1.h5: cannot create .*unit_1.h5.tmp: Is a directory.*--resume"
[ -f r1/result.h5.ckpt/unit_0.h5 ] || fail "rank 0 did not keep its checkpoint"
[ ! -e r1/result.h5 ] || fail "a result was written after a failed checkpoint"
ls r1/result.h5.tmp.* 2>/dev/null && fail "temporary result left behind"
rmdir r1/result.h5.ckpt/unit_1.h5.tmp
[ "$(run2 r1 -c "$WORK/job.ini" --resume)" = 0 ] || { cat r1/log; fail "resume after the rank-1 error"; }
grep -qE "resumed at|not retrained" r1/log || fail "rank 0's checkpoint was not used"
same_result full/result.h5 r1/result.h5 || fail "resumed result differs after the rank-1 error"
echo "ok: resumed after the rank-1 error, result identical"

# Every rank: the data file is not HDF5 (exit 1), and no checkpoint can be
# written (exit 2, rank 0's words: no rank prefix).
echo "not hdf5" >bad-data.h5
code=$(run2 rall -c "$WORK/job.ini" --set data.path="$WORK/bad-data.h5")
[ "$code" = 1 ] || { cat rall/log; fail "all-rank input error: exit $code, expected 1"; }
one_error rall "bad-data.h5: not an HDF5 file"
mkdir -p rall2/result.h5.ckpt/unit_0.h5.tmp rall2/result.h5.ckpt/unit_1.h5.tmp
code=$(run2 rall2 -c "$WORK/job.ini")
[ "$code" = 2 ] || { cat rall2/log; fail "all-rank write error: exit $code, expected 2"; }
one_error rall2 "^ens train: cannot write checkpoint result.h5.ckpt/unit_0.h5"

# ------------------------------------------------- b. damaged checkpoints
mkdir -p stop
(cd stop && exec mpirun -np 2 "$ENS" train -c "$WORK/job.ini") >stop/log 2>&1 &
pid=$!
stop_at "epoch 1/" stop/log $pid
code=0
wait $pid || code=$?
[ $code = 75 ] || { cat stop/log; fail "exit $code after USR1, expected 75"; }
[ -f stop/result.h5.ckpt/unit_1.h5 ] || { ls stop/result.h5.ckpt; fail "no checkpoint of unit 1 (rank 1)"; }
# Another job's checkpoint of the same unit: same layout, other lr.
mkdir -p other2
(cd other2 && exec mpirun -np 2 "$ENS" train -c "$WORK/job.ini" --set train.lr=0.02) >other2/log 2>&1 &
pid=$!
stop_at "epoch 1/" other2/log $pid
wait $pid || true
[ -f other2/result.h5.ckpt/unit_1.h5 ] || fail "no checkpoint of the other job"
for kind in truncated garbage foreign; do
  d=damaged-$kind
  cp -r stop "$d"
  rm -f "$d/log"
  u="$d/result.h5.ckpt/unit_1.h5"
  case $kind in
    truncated) head -c 2000 "stop/result.h5.ckpt/unit_1.h5" >"$u" ;;
    garbage) printf 'this is no checkpoint\n' >"$u" ;;
    foreign) cp other2/result.h5.ckpt/unit_1.h5 "$u" ;;
  esac
  [ "$(run2 "$d" -c "$WORK/job.ini" --resume)" = 0 ] || { cat "$d/log"; fail "$kind: resume failed"; }
  grep -E "^ens: warning: checkpoint result.h5.ckpt/unit_1.h5 .*unit 1 restarts from scratch" \
    "$d/log" >"$d/warning" || { cat "$d/log"; fail "$kind: no warning naming unit_1.h5"; }
  [ "$(wc -l <"$d/warning")" = 1 ] || fail "$kind: the warning is printed more than once"
  grep -qE "resumed at|not retrained" "$d/log" || fail "$kind: rank 0's undamaged checkpoint was not used"
  same_result full/result.h5 "$d/result.h5" || fail "$kind: result differs from the uninterrupted run"
  no_abort "$d/log"
  echo "ok: $kind: $(cat "$d/warning")"
done

# ----------------------------------------------------------------- c. lock
# hold_lock FILE: a process of ours (flock(1), its sleeping child not
# sharing the descriptor) holds the kernel lock of FILE; prints its PID.
hold_lock() {
  flock -o "$1" sleep 60 >/dev/null 2>&1 &
  local holder=$!
  for _ in $(seq 1 200); do
    flock -n "$1" true 2>/dev/null || break
    sleep 0.02
  done
  echo $holder
}
# release_lock PID: ends hold_lock's process and its child.
release_lock() {
  local kids
  kids=$(pgrep -P "$1" || true)
  kill "$1" $kids 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
# A live owner on this host (a process of ours that holds the lock).
mkdir -p locked/result.h5.ckpt
sleeper=$(hold_lock locked/result.h5.ckpt/lock)
printf 'ens checkpoint directory lock\nhost %s\npid %d\nstart 0\n' "$(hostname)" $sleeper \
  >locked/result.h5.ckpt/lock
cp stop/result.h5.ckpt/unit_0.h5 locked/result.h5.ckpt/
before=$(cd locked && find . -type f -exec md5sum {} + | sort)
# With --resume, without it (not "an earlier run's" checkpoints) and with
# --restart (which must not remove a running job's checkpoints).
for flag in --resume "" --restart; do
  code=$(run2 locked -c "$WORK/job.ini" $flag)
  [ "$code" = 1 ] || { release_lock $sleeper; cat locked/log; fail "locked directory ($flag): exit $code, expected 1"; }
  one_error locked "checkpoint directory result.h5.ckpt is in use by another job \(process $sleeper on host $(hostname)"
  rm locked/log
  after=$(cd locked && find . -type f -exec md5sum {} + | sort)
  [ "$before" = "$after" ] || { release_lock $sleeper; fail "the locked directory was changed ($flag)"; }
done
release_lock $sleeper
# A dead owner: taken over with a warning, the job runs.
printf 'ens checkpoint directory lock\nhost %s\npid %d\nstart 0\n' "$(hostname)" $sleeper \
  >locked/result.h5.ckpt/lock
[ "$(run2 locked -c "$WORK/job.ini" --resume)" = 0 ] || { cat locked/log; fail "stale lock not taken over"; }
grep -q "^ens: warning: result.h5.ckpt/lock was left by process $sleeper .*no longer holds it" locked/log ||
  { cat locked/log; fail "no warning about the stale lock"; }
[ ! -e locked/result.h5.ckpt ] || fail "checkpoint directory (or lock) left after success"
# Another host's job that holds the lock (a shared file system): respected,
# and nobody is told to remove the file.
mkdir -p remote/result.h5.ckpt
sleeper=$(hold_lock remote/result.h5.ckpt/lock)
printf 'ens checkpoint directory lock\nhost elsewhere.example\npid 1\nstart 0\n' \
  >remote/result.h5.ckpt/lock
code=$(run2 remote -c "$WORK/job.ini")
release_lock $sleeper
[ "$code" = 1 ] || { cat remote/log; fail "remote lock: exit $code, expected 1"; }
one_error remote "process 1 on host elsewhere.example"
grep -q "remove the lock file" remote/log && fail "remote lock held: told to remove the lock file"
# Without kernel locks (ENS_LOCK_RECORD_ONLY=1, as where the file system has
# none), another host's record cannot be checked, so it is respected.
rm -f remote/log
code=$(ENS_LOCK_RECORD_ONLY=1 run2 remote -c "$WORK/job.ini")
[ "$code" = 1 ] || { cat remote/log; fail "remote lock, record only: exit $code, expected 1"; }
one_error remote "process 1 on host elsewhere.example.*remove the lock file"

# ------------------------------------------- d. publish failure, estimate
# estimate LOG WHAT: the byte count after "WHAT up to" in the storage line.
estimate() {
  grep "^storage:" "$1" | sed -E "s/.*$2 up to [^,;]*\(([0-9]+) bytes\).*/\1/"
}
for kind in search bootstrap; do
  sets=(--set output.verbose=2 --set output.path=res.h5)
  case $kind in
    search) sets+=(--set ensemble.mode=search --set data.val_fraction=0.2
      --set "search.hidden=8 | 64,32 | 128,128" --set ensemble.members=5
      --set search.batch= --set search.dropout=) ;;
    bootstrap) sets+=(--set ensemble.mode=bootstrap --set ensemble.mc_samples=3) ;;
  esac
  [ "$(run2 "est-$kind" -c "$WORK/job.ini" "${sets[@]}")" = 0 ] ||
    { cat "est-$kind/log"; fail "$kind: run"; }
  # A folder where the result goes: refused before any training (guard.c),
  # the folder untouched, no checkpoints.
  mkdir -p "pub-$kind/res.h5"
  echo keep >"pub-$kind/res.h5/inside"
  code=$(run2 "pub-$kind" -c "$WORK/job.ini" "${sets[@]}")
  [ "$code" = 1 ] || { cat "pub-$kind/log"; fail "$kind: result path is a folder: exit $code, expected 1"; }
  one_error "pub-$kind" "\[output\] path = res.h5 is a folder"
  [ "$(cat "pub-$kind/res.h5/inside")" = keep ] || fail "$kind: the directory in the way was changed"
  ls "pub-$kind"/res.h5.tmp.* 2>/dev/null && fail "$kind: temporary result left behind"
  er=$(estimate "est-$kind/log" result)
  ec=$(estimate "est-$kind/log" checkpoints)
  ar=$(stat -c %s "est-$kind/res.h5")
  [[ $er =~ ^[0-9]+$ && $ec =~ ^[0-9]+$ ]] || { cat "est-$kind/log"; fail "$kind: no storage line"; }
  ((ar <= er)) || fail "$kind: result of $ar bytes exceeds the estimate $er"
  echo "ok: $kind: result $ar <= $er bytes (checkpoint estimate $ec bytes)"
done
echo "faults: all passed"
