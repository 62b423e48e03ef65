# The run history in a result (/history) and the stop line:
#   - a run stopped twice (USR1 to mpirun) and resumed twice records three
#     segments (two "stopped by SIGUSR1", one "done", each with ranks, nodes,
#     seconds), `ens info` shows them and their total, the stopped runs each
#     ended with one line naming the checkpoint folder, how far it got and
#     the resume command, and the result is identical to an uninterrupted
#     run (`ens diff` exempts /history);
#   - a stop before training (USR1 at once) exits 75 with "nothing to save
#     yet" and writes no history;
#   - `ens merge` of two slices records each part's segments under its name,
#     and `ens info` says the result was merged from 2 parts;
#   - ENS_STATUS_FILE gets the outcome (state, code, result, checkpoints).
# shellcheck shell=bash source=tests/integration/lib.bash
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 6000 24 5
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 32,16
[train]
epochs = 40
batch = 64
[ensemble]
members = 4
[output]
path = result.h5
checkpoint_every = 1
INI
run_np 2 ref -c "$WORK/job.ini" || fail "reference run"

# Stopped twice, resumed twice.
mkdir -p twice
for n in 1 2; do
  (cd twice && ENS_STATUS_FILE=$WORK/twice/status mpirun -np 2 "$ENS" train -c "$WORK/job.ini" --resume) \
    >twice/log$n 2>&1 &
  pid=$!
  # Each stop follows its own run's progress: the first at epoch 2 of 40,
  # the second at the resumed run's first epoch line (an epoch of this net
  # takes milliseconds: a fixed epoch number may already be past when run 2
  # starts, and run 2 then finishes before the signal).
  if [ $n = 1 ]; then stop_at "epoch 2/" twice/log1 $pid; else stop_at "\] epoch [0-9]+/" twice/log2 $pid; fi
  code=0
  wait $pid || code=$?
  [ $code = 75 ] || { cat twice/log$n; fail "stop $n: exit $code, expected 75"; }
  line=$(ens_lines twice/log$n | grep "^ens train: stopped by SIGUSR1" || true)
  echo "$line" | grep -qE "^ens train: stopped by SIGUSR1: checkpoints in $WORK/twice/result.h5.ckpt: [0-9] of 4 members finished.*; resume: the same command with --resume$" ||
    { cat twice/log$n; fail "stop $n: no stop line with the checkpoints and the resume command"; }
  grep -q "^state=stopped$" twice/status && grep -q "^code=75$" twice/status &&
    grep -q "^checkpoints=$WORK/twice/result.h5.ckpt$" twice/status ||
    { cat twice/status; fail "stop $n: ENS_STATUS_FILE does not say stopped"; }
  [ "$(wc -l <twice/result.h5.ckpt/history_0-3.txt)" = $n ] || fail "stop $n: no history segment kept"
  [ $n = 1 ] || grep -qE "resumed at|not retrained" twice/log2 || { cat twice/log2; fail "stop 2: the second run resumed nothing"; }
done
(cd twice && ENS_STATUS_FILE=$WORK/twice/status mpirun -np 2 "$ENS" train -c "$WORK/job.ini" --resume) \
  >twice/log3 2>&1 || { cat twice/log3; fail "second resume"; }
grep -q "^state=done$" twice/status && grep -q "^result=$WORK/twice/result.h5$" twice/status ||
  { cat twice/status; fail "ENS_STATUS_FILE does not say done"; }
same_result ref/result.h5 twice/result.h5 || fail "resumed twice: result differs"
[ ! -d twice/result.h5.ckpt ] || fail "checkpoint folder (and its history) left after the result"
"$ENS" info twice/result.h5 >twice/info || fail "ens info"
sed -n '/^  history/,/^  task/p' twice/info
grep -q "^  history       3 run segments (2 stopped and resumed), [0-9.]* s of runs in all$" twice/info ||
  fail "ens info: no history of 3 segments"
[ "$(grep -cE '^ +[0-9]\. .* 2 ranks on 1 node  [0-9.]+ s  stopped by SIGUSR1  members 0-3$' twice/info)" = 2 ] ||
  fail "ens info: not two stopped segments"
grep -qE '^ +3\. .* 2 ranks on 1 node  [0-9.]+ s  done  members 0-3$' twice/info || fail "ens info: no final segment"
echo "ok: stopped twice, resumed twice: 3 segments in the history, result identical"

# A stop as early as the layout line (right after MPI_Init; the signal may
# take a moment through mpirun): exit 75 with a stop line, "nothing to save
# yet" (then no history segment) or the checkpoints.
mkdir -p early
(cd early && mpirun -np 2 "$ENS" train -c "$WORK/job.ini" --resume --set train.epochs=200) >early/log 2>&1 &
pid=$!
stop_at "^layout" early/log $pid
code=0
wait $pid || code=$?
[ $code = 75 ] || { cat early/log; fail "stop before training: exit $code, expected 75"; }
ens_lines early/log | grep -qE "^ens train: stopped by SIGUSR1: (nothing to save yet|checkpoints in).*; resume: the same command" ||
  { cat early/log; fail "early stop: no stop line"; }
if grep -q "nothing to save yet" early/log; then
  [ -z "$(ls early/result.h5.ckpt/history_* 2>/dev/null)" ] ||
    fail "early stop: a history segment for a run that saved nothing"
fi
! grep -q "exited on signal" early/log || { cat early/log; fail "early stop: a rank was killed by USR1"; }
echo "ok: early stop: exit 75, $(grep -o 'SIGUSR1: [a-z ]*' early/log | head -1)"

# Two slices, merged: each part's segments, named.
run_np 2 a -c "$WORK/job.ini" --set ensemble.first_member=0 --set ensemble.count=2 --set output.path=part-0.h5 ||
  fail "slice 0"
run_np 2 b -c "$WORK/job.ini" --set ensemble.first_member=2 --set ensemble.count=2 --set output.path=part-1.h5 ||
  fail "slice 1"
"$ENS" merge a/part-0.h5 b/part-1.h5 -o merged.h5 >merge.log 2>&1 || { cat merge.log; fail "merge"; }
"$ENS" info merged.h5 >merged.info || fail "ens info merged"
sed -n '/^  trained on/,/^  task/p' merged.info
grep -q "^  trained on    2 parts, merged by ens merge" merged.info || fail "ens info: merge not said"
grep -q "^  history       merged from 2 parts: 2 run segments" merged.info || fail "ens info: no merged history"
grep -qE "^ +1\. part-0.h5: .* 2 ranks on 1 node .* done  members 0-1$" merged.info || fail "ens info: part-0 segment"
grep -qE "^ +2\. part-1.h5: .* 2 ranks on 1 node .* done  members 2-3$" merged.info || fail "ens info: part-1 segment"
! grep -q "^  placement" merged.info || fail "ens info: the merge's own placement shown as training's"
same_result ref/result.h5 merged.h5 || fail "merged result differs"
echo "ok: merged result: each part's segment in its history"
