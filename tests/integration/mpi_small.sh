# A small training on 2 ranks with checkpoints, a stop and a resume, and a
# damaged checkpoint on rank 1 — small enough to run under AddressSanitizer
# and UBSan (label `asan`: scripts/test runs it in its sanitizer build), so
# the MPI paths (collection, agreement, early-stop notices, restore) are
# checked for memory errors, not only the unit tests.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 3000 8 6
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 256,128
dropout = 0.1
[train]
epochs = 6
batch = 16
optimizer = adam
[ensemble]
members = 4
[trunk]
source = pretrain
layers = 1
pretrain_epochs = 2
[output]
path = result.h5
verbose = 1
INI
run_np 2 full -c "$WORK/job.ini" || fail "uninterrupted run"
mkdir -p stop
(cd stop && exec mpirun -np 2 "$ENS" train -c "$WORK/job.ini") >stop/log 2>&1 &
pid=$!
stop_at "\[member 1\] epoch 1/" stop/log $pid
code=0
wait $pid || code=$?
[ $code = 75 ] || { cat stop/log; fail "exit $code after USR1, expected 75"; }
ls stop/result.h5.ckpt/unit_*.h5 >/dev/null 2>&1 || { cat stop/log; fail "no unit checkpoints"; }
[ -f stop/result.h5.ckpt/unit_1.h5 ] || { ls stop/result.h5.ckpt; fail "the stop came after member 1 finished: no unit_1.h5 to damage"; }
# Rank 1's unit checkpoint damaged: it restarts with a warning.
printf 'damaged\n' >stop/result.h5.ckpt/unit_1.h5
run_np 2 stop -c "$WORK/job.ini" --resume || fail "resume"
grep -q "warning: checkpoint result.h5.ckpt/unit_1.h5" stop/log || { cat stop/log; fail "no warning"; }
same_result full/result.h5 stop/result.h5 || fail "resumed result differs"
# A failing write on rank 1 only: agreed exit 2, no MPI_ABORT.
mkdir -p err/result.h5.ckpt/unit_1.h5.tmp
code=0
(cd err && mpirun -np 2 "$ENS" train -c "$WORK/job.ini") >err/log 2>&1 || code=$?
[ $code = 2 ] || { cat err/log; fail "rank-1 write error: exit $code, expected 2"; }
no_abort err/log
for f in full/log stop/log err/log; do
  if grep -qE "AddressSanitizer|LeakSanitizer|runtime error:" "$f"; then
    cat "$f"
    fail "sanitizer report in $f"
  fi
done
echo "mpi_small: all passed"
