# Stop and resume: `kill -USR1` on mpirun mid-run makes every rank write
# checkpoints and exit 75; `--resume` then finishes with a result identical
# (ens diff, timing attributes excluded) to an uninterrupted run.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 30000 64 5
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 256,128
dropout = 0.1
[train]
epochs = 4
batch = 64
[ensemble]
members = 4
[output]
path = result.h5
verbose = 1
INI
for mode in seed snapshot; do
  sets=(--set ensemble.mode=$mode)
  [ $mode = snapshot ] && sets+=(--set ensemble.snapshots=2)
  run_np 2 "full-$mode" -c "$WORK/job.ini" "${sets[@]}" || fail "uninterrupted $mode run"
  mkdir -p "stop-$mode"
  (cd "stop-$mode" && exec mpirun -np 2 "$ENS" train -c "$WORK/job.ini" "${sets[@]}") \
    >"stop-$mode/log" 2>&1 &
  pid=$!
  # Wait until training is under way (first epoch line), then signal.
  for _ in $(seq 1 300); do
    grep -q "epoch 1/" "stop-$mode/log" 2>/dev/null && break
    sleep 0.1
  done
  kill -USR1 $pid
  code=0
  wait $pid || code=$?
  [ $code = 75 ] || { cat "stop-$mode/log"; fail "$mode: exit code $code after USR1, expected 75"; }
  [ ! -e "stop-$mode/result.h5" ] || fail "$mode: a result was written despite the stop"
  ls "stop-$mode"/result.h5.ckpt/unit_*.h5 >/dev/null || fail "$mode: no checkpoints"
  ls "stop-$mode"/result.h5.tmp.* 2>/dev/null && fail "$mode: temporary result left behind"
  run_np 2 "stop-$mode" -c "$WORK/job.ini" "${sets[@]}" --resume || fail "$mode: resume"
  grep -qE "resumed at|not retrained" "stop-$mode/log" || fail "$mode: nothing was resumed"
  same_result "full-$mode/result.h5" "stop-$mode/result.h5" || fail "$mode: resumed result differs"
  [ ! -d "stop-$mode/result.h5.ckpt" ] || fail "$mode: checkpoints not cleaned up"
  echo "ok: $mode stop/resume identical"
done
echo "resume: all passed"
