# Everyday use (issue 12): no work lost to a forgotten flag (rerunning
# without --resume, resubmitting a finished job, SIGHUP, a closed stdout pipe,
# stale temporary files), messages that say what to do (output folders,
# input paths, configuration mismatches, unused keys, partial results, the
# smaller ones), training without a test split, and `ens info`.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 600 8 3
$PY "$SRC/tests/integration/make_data.py" big.h5 20000 32 5
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 16
[train]
epochs = 3
batch = 32
[ensemble]
members = 2
[output]
path = out/result.h5
verbose = 0
INI
# Long enough to be stopped after its first epoch.
cat >long.ini <<INI
[data]
path = $WORK/big.h5
[model]
hidden = 128,64
[train]
epochs = 40
batch = 64
[ensemble]
members = 2
[output]
path = long/result.h5
INI

# expect CODE PATTERN cmd...: runs cmd, checks its exit code and that its
# output (stdout and stderr) matches; the output stays in last.txt.
expect() {
  local want=$1 pattern=$2
  shift 2
  local code=0
  "$@" >last.txt 2>&1 || code=$?
  if [ "$code" != "$want" ]; then
    cat last.txt
    fail "'$*' exited $code, expected $want"
  fi
  grep -qE -- "$pattern" last.txt || { cat last.txt; fail "'$*': output does not match /$pattern/"; }
  echo "ok: exit $code: $(grep -E -- "$pattern" last.txt | head -n 1 | head -c 220)"
}
no_tmp() { # dir: no temporary file left in it
  if ls "$1" | grep -q '\.tmp'; then ls -la "$1"; fail "temporary file left in $1"; fi
}
# stop SIGNAL DIR ARGS...: starts `ens train ARGS` (one process) in DIR, sends
# SIGNAL after the first epoch line, and checks for exit 75.
stop() {
  local sig=$1 dir=$2 pid code=0
  shift 2
  mkdir -p "$dir"
  (cd "$dir" && exec "$ENS" train "$@") >"$dir/log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    grep -q "epoch 1/" "$dir/log" 2>/dev/null && break
    sleep 0.05
  done
  kill -"$sig" $pid
  wait $pid || code=$?
  [ $code = 75 ] || { cat "$dir/log"; fail "exit code $code after SIG$sig, expected 75"; }
}
sums() { md5sum "$@" | awk '{print $1}' | tr '\n' ' '; }

# ---- 1. rerunning without --resume ------------------------------------------
run_np 0 ref -c "$WORK/long.ini" || fail "uninterrupted long run"
stop INT a -c "$WORK/long.ini"
ck=a/long/result.h5.ckpt
before=$(sums $ck/*.h5)
(cd a && expect 1 "long/result.h5.ckpt holds checkpoints of this job from an earlier run \(.*furthest at epoch [0-9]+ of 40.*--resume.*--restart" "$ENS" train -c "$WORK/long.ini")
mv a/last.txt .
[ "$(sums $ck/*.h5)" = "$before" ] || fail "a run without --resume changed the checkpoints"
grep -q "Nothing was trained" last.txt || fail "the refusal does not say nothing was trained"
# Checkpoints of another configuration are not touched either (with or without --resume).
(cd a && expect 1 "holds checkpoints of another configuration \(unit_[01].h5: \[train\] lr = 0.1 \(this job\) vs 0.05 \(the checkpoints\)\)" "$ENS" train -c "$WORK/long.ini" --set train.lr=0.1)
(cd a && expect 1 "another configuration.*--resume continues only checkpoints of the same configuration" "$ENS" train -c "$WORK/long.ini" --set train.lr=0.1 --resume)
[ "$(sums $ck/*.h5)" = "$before" ] || fail "a run of another configuration changed the checkpoints"
(cd a && expect 1 "give one of the two" "$ENS" train -c "$WORK/long.ini" --resume --restart)
run_np 0 a -c "$WORK/long.ini" --resume || fail "resume"
grep -qE "resumed at|not retrained" a/log || fail "nothing was resumed"
same_result ref/long/result.h5 a/long/result.h5 || fail "resumed result differs from an uninterrupted run"
[ ! -d $ck ] || fail "checkpoints not removed after the result"
no_tmp a/long
echo "ok: without --resume the checkpoints are kept and named; --resume finishes identically"
# --restart discards this job's checkpoints and starts over.
stop INT b -c "$WORK/long.ini"
(cd b && expect 0 "--restart: removed [0-9]+ checkpoint files? of this job from long/result.h5.ckpt" "$ENS" train -c "$WORK/long.ini" --restart)
grep -qE "resumed at|not retrained" b/last.txt && fail "--restart resumed"
same_result ref/long/result.h5 b/long/result.h5 || fail "--restart result differs"

# ---- 2. a finished job again --------------------------------------------------
before=$(sums ref/long/result.h5)
(cd ref && expect 0 "long/result.h5: result complete, nothing to do" "$ENS" train -c "$WORK/long.ini")
(cd ref && expect 0 "result complete, nothing to do" "$ENS" train -c "$WORK/long.ini" --resume)
# [output] keys do not change the result.
(cd ref && expect 0 "result complete" "$ENS" train -c "$WORK/long.ini" --set output.verbose=0)
(cd ref && expect 1 "long/result.h5 holds the result of another configuration: \[train\] epochs = 39 \(this job\) vs 40 \(the result\).*--force" "$ENS" train -c "$WORK/long.ini" --set train.epochs=39)
[ "$(sums ref/long/result.h5)" = "$before" ] || fail "a finished result was rewritten"
# The same configuration on changed data (the same path, other contents).
cp "$WORK/data.h5" changing.h5
run_np 0 c -c "$WORK/job.ini" --set data.path="$WORK/changing.h5" --set output.path=out/ch.h5 ||
  fail "job on changing.h5"
$PY - <<'PYEOF'
import h5py
with h5py.File("changing.h5", "r+") as f:
    x = f["train/x"][:]; x[0, 0] += 1; f["train/x"][...] = x
PYEOF
(cd c && expect 1 "out/ch.h5 was trained on other data \(the data checksum of .*changing.h5 differs" "$ENS" train -c "$WORK/job.ini" --set data.path="$WORK/changing.h5" --set output.path=out/ch.h5)
run_np 0 c -c "$WORK/job.ini" || fail "small job"
echo "not a result" >c/out/junk.h5
(cd c && expect 1 "out/junk.h5 exists and is not an ens result.*--force" "$ENS" train -c "$WORK/job.ini" --set output.path=out/junk.h5)
(cd c && expect 0 "result written to out/result.h5" "$ENS" train -c "$WORK/job.ini" --set train.lr=0.1 --force)
"$ENS" info --config c/out/result.h5 | grep -qx "lr = 0.1" || fail "--force did not retrain"
echo "ok: finished results: nothing to do; other configurations and data never overwritten without --force"

# ---- 3. SIGHUP, SIGPIPE, stale temporary files ---------------------------------
stop HUP d -c "$WORK/long.ini"
ls d/long/result.h5.ckpt/unit_*.h5 >/dev/null 2>&1 || fail "SIGHUP: no checkpoints"
[ ! -e d/long/result.h5 ] || fail "SIGHUP: a result was written"
no_tmp d/long
echo "ok: SIGHUP checkpoints and exits 75"
# A closed stdout pipe: training goes on to the result.
mkdir -p e
set +o pipefail
(cd e && c=0 && { "$ENS" train -c "$WORK/long.ini" --set train.epochs=3 2>&1 || c=$?; } &&
  echo "exit $c" >../e-code) | head -n 1 >/dev/null
set -o pipefail
sleep 0.5
for _ in $(seq 1 200); do [ -s e-code ] && break; sleep 0.1; done
grep -qx "exit 0" e-code || fail "ens train | head: $(cat e-code 2>/dev/null) instead of exit 0"
[ -f e/long/result.h5 ] || fail "ens train | head: no result"
no_tmp e/long
echo "ok: ens train | head -n 1 trains to the end (exit 0, result, no temporary file)"
# Under mpirun (README.md "Stopping and resuming"): Ctrl-C (SIGINT to mpirun)
# still checkpoints, but mpirun exits 1; a closed stdout pipe makes mpirun
# abort the job, whose ranks checkpoint. Nothing is lost either way.
mkdir -p mi
(cd mi && exec mpirun -np 2 "$ENS" train -c "$WORK/long.ini") >mi/log 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q "epoch 1/" mi/log 2>/dev/null && break; sleep 0.05; done
kill -INT $pid
code=0
wait $pid || code=$?
[ $code = 1 ] || { cat mi/log; fail "mpirun after SIGINT exited $code (README says 1)"; }
# mpirun kills a rank still busy about 2 s after its SIGTERM (README), so on a
# slow or loaded machine the checkpoints may be missing; --resume then starts
# over, and the result is still the same.
ls mi/long/result.h5.ckpt/unit_*.h5 >/dev/null 2>&1 ||
  echo "note: mpirun + SIGINT: the ranks were killed before they checkpointed (loaded machine)"
no_tmp mi/long
run_np 2 mi -c "$WORK/long.ini" --resume || fail "resume after Ctrl-C under mpirun"
same_result ref/long/result.h5 mi/long/result.h5 || fail "resumed after Ctrl-C under mpirun: differs"
mkdir -p mp
set +o pipefail
(cd mp && c=0 && { mpirun -np 2 "$ENS" train -c "$WORK/long.ini" 2>/dev/null || c=$?; } &&
  echo "exit $c" >../mp-code) | head -n 1 >/dev/null
set -o pipefail
for _ in $(seq 1 200); do [ -s mp-code ] && break; sleep 0.1; done
# mpirun's own code: 1 after its abort, or 141 when it writes more output
# after the pipe closed (with every rank's lines coming through rank 0 it
# usually writes none); either way the job checkpoints (checked below).
# The first line ("start: ...") comes before training, and Open MPI 4.1.4's
# mpirun can crash in its own abort path (SIGSEGV in ess_hnp, 139) when the
# pipe closes that early (README).
grep -qxE "exit (1|139|141)" mp-code || fail "mpirun | head: $(cat mp-code) (README says 1, 139 or 141)"
ls mp/long/result.h5.ckpt/unit_*.h5 >/dev/null 2>&1 ||
  echo "note: mpirun | head: the ranks were killed before they checkpointed (loaded machine)"
no_tmp mp/long
echo "ok: under mpirun, Ctrl-C (exit 1; resumed to an identical result) and a closed pipe (exit 1 or 141) leave checkpoints"

# Stale temporary files of dead processes go; a live process's and another
# host's stay.
mkdir -p f/out
host=$(hostname | tr './' '__')
sleep 1000 &
live=$!
dead=$($PY -c 'import os; p = os.fork()
if p == 0: os._exit(0)
os.waitpid(p, 0); print(p)')
touch f/out/result.h5.tmp.$host.$dead f/out/result.h5.tmp.$dead f/out/result.h5.tmp.$host.$live \
  f/out/result.h5.tmp.otherhost.$dead
mkdir -p f/out/result.h5.ckpt && touch f/out/result.h5.ckpt/unit_0.h5.tmp
(cd f && expect 0 "removed 2 temporary files of out/result.h5 left by ens processes that no longer run" "$ENS" train -c "$WORK/job.ini")
kill $live
[ ! -e f/out/result.h5.tmp.$host.$dead ] && [ ! -e f/out/result.h5.tmp.$dead ] || fail "stale temporary files kept"
[ -e f/out/result.h5.tmp.$host.$live ] || fail "a live process's temporary file was removed"
[ -e f/out/result.h5.tmp.otherhost.$dead ] || fail "another host's temporary file was removed"
grep -q "removed 1 unfinished checkpoint file" f/last.txt || fail "stale checkpoint .tmp not removed"
echo "ok: stale temporary files of dead processes removed, others kept"

# ---- 5. output folders ------------------------------------------------------
mkdir -p g
(cd g && expect 0 "result written to deep/er/r.h5" "$ENS" train -c "$WORK/job.ini" --set output.path=deep/er/r.h5)
(cd g && expect 1 "\[output\] path = $WORK/job.ini/r.h5: cannot create its folder $WORK/job.ini \(Not a directory\)" "$ENS" train -c "$WORK/job.ini" --set output.path="$WORK/job.ini/r.h5")
grep -q "\.tmp" g/last.txt && fail "a message shows a temporary name"
(cd g && expect 0 "-> p/q/pred.h5" "$ENS" predict -m deep/er/r.h5 -i "$WORK/data.h5" -o p/q/pred.h5)
(cd g && expect 1 "-o $WORK/job.ini/p.h5: cannot create its folder" "$ENS" predict -m deep/er/r.h5 -i "$WORK/data.h5" -o "$WORK/job.ini/p.h5")
echo "ok: output folders created; messages name the output, not a temporary file"

# ---- 6. paths that do not resolve ---------------------------------------------
mkdir -p h
(cd h && expect 1 "\[data\] path = data/fashion.h5: No such file or directory \(resolved from the current folder, $WORK/h; .*scripts/demo.*ens import idx" "$ENS" train -c "$WORK/job.ini" --set data.path=data/fashion.h5)
(cd h && expect 1 "\[data\] path = nope.h5: No such file or directory \(resolved from the current folder, $WORK/h" "$ENS" train -c "$WORK/job.ini" --set data.path=nope.h5)
grep -q "demo" h/last.txt && fail "the Fashion-MNIST hint for another file"
(cd h && expect 1 "\[trunk\] file = t.h5: No such file" "$ENS" train -c "$WORK/job.ini" --set trunk.source=file --set trunk.file=t.h5 --set trunk.layers=1)
echo "ok: input paths named with the folder they resolve from"

# ---- 7. mismatches list the keys; suggestions ------------------------------------
printf '[model]\nhiden = 8\n' >typo.ini
expect 1 "typo.ini:2: unknown key 'hiden' in section \[model\] \(did you mean hidden\?\)" "$ENS" train -c typo.ini
mkdir -p m
(cd m && "$ENS" train -c "$WORK/job.ini" --set ensemble.members=4 --set ensemble.count=2 --set output.path=a.h5 >/dev/null) || fail "slice a"
(cd m && "$ENS" train -c "$WORK/job.ini" --set ensemble.members=4 --set ensemble.first_member=2 --set ensemble.count=2 --set output.path=b.h5 --set train.lr=0.1 >/dev/null) || fail "slice b"
(cd m && expect 1 "come from different jobs.*\[train\] lr = 0.05 \(a.h5\) vs 0.1 \(b.h5\)" "$ENS" merge a.h5 b.h5 -o ab.h5)
"$ENS" info --config m/a.h5 >cfg.txt || fail "ens info --config"
grep -qx "\[train\]" cfg.txt && grep -qx "members = 4" cfg.txt || { cat cfg.txt; fail "ens info --config"; }
stop USR1 k -c "$WORK/long.ini"
(cd k && expect 1 "checkpoints of another configuration \(unit_[01].h5: \[model\] dropout = 0.1 \(this job\) vs 0 \(the checkpoints\)\)" "$ENS" train -c "$WORK/long.ini" --set model.dropout=0.1 --resume)
echo "ok: mismatches list the keys that differ"

# ---- 8. keys that would be silently ignored --------------------------------------
(cd h && expect 1 "\[train\] schedule = step contradicts \[ensemble\] mode = snapshot" "$ENS" train -c "$WORK/job.ini" --set ensemble.mode=snapshot --set ensemble.snapshots=2 --set train.schedule=step)
(cd h && expect 1 "\[ensemble\] snapshots = 2 applies only to mode = snapshot" "$ENS" train -c "$WORK/job.ini" --set ensemble.snapshots=2)
(cd h && expect 0 "warning: \[train\] step_size = 5 is not used: it applies to schedule = step" "$ENS" train -c "$WORK/job.ini" --set train.step_size=5 --set output.path=w.h5)
[ "$(grep -c "step_size" h/last.txt)" = 1 ] || fail "the warning was not printed once"
"$ENS" info --config h/w.h5 | grep -qx "step_size = 30" || fail "the unused value was recorded"
(cd h && expect 0 "result written" "$ENS" train -c "$WORK/job.ini" --set ensemble.mode=snapshot --set ensemble.snapshots=2 --set train.epochs=4 --set output.path=s.h5)
"$ENS" info --config h/s.h5 | grep -qx "schedule = cyclic" || fail "snapshot mode did not record schedule = cyclic"
"$ENS" info --config h/s.h5 | grep -qx "cycles = 2" || fail "snapshot mode did not record cycles = snapshots"
# Keys that the data leaves unused: errors (the configuration is stored first).
$PY - <<'PYEOF'
import h5py
with h5py.File("data.h5", "r") as f, h5py.File("withval.h5", "w") as g:
    for s in ("train", "test"):
        g[s + "/x"] = f[s + "/x"][:]; g[s + "/y"] = f[s + "/y"][:]
    g["val/x"] = f["train/x"][:50]; g["val/y"] = f["train/y"][:50]
    g.attrs["classes"] = f.attrs["classes"]
PYEOF
(cd h && expect 1 "\[data\] val_fraction = 0.2 is not used: .*withval.h5 has validation rows of its own \(/val, 50 rows\)" "$ENS" train -c "$WORK/job.ini" --set data.path="$WORK/withval.h5" --set data.val_fraction=0.2)
(cd h && expect 1 "\[model\] loss = mse is not used: it applies to regression, and .*data.h5 holds class labels" "$ENS" train -c "$WORK/job.ini" --set model.loss=mse)
echo "ok: contradicting keys are errors, unused keys warned once and recorded as defaults"

# ---- 9. progress: terminal width, quiet ----------------------------------------
(cd h && "$ENS" train -c "$WORK/job.ini" --set output.path=q.h5 >q.out 2>q.err) || fail "quiet run"
grep -qE "progress|epoch 1/" h/q.out h/q.err && fail "verbose = 0 printed progress or epoch lines"
grep -q "ensemble (average)" h/q.out || fail "verbose = 0 lost the summary"
if command -v script >/dev/null; then
  (cd h && script -qec "stty cols 60; '$ENS' train -c '$WORK/long.ini' --set train.epochs=8 --set model.hidden=512,256 --set output.path=tty.h5 --set output.verbose=1" /dev/null) >tty.txt 2>&1 ||
    { cat tty.txt; fail "run on a terminal"; }
  # Split at carriage returns: no piece of the live line may reach 60 columns,
  # and every epoch line starts on a cleared line.
  tr '\r' '\n' <tty.txt | sed 's/\x1b\[K//g' | grep "^progress:" | awk 'length($0) >= 60 { print; bad = 1 } END { exit bad }' ||
    fail "the live progress line is wider than the terminal"
  tr '\r' '\n' <tty.txt | grep -qE "^progress: [0-2]/2 members  epoch" || fail "no live progress line on a terminal"
  tr '\r' '\n' <tty.txt | sed 's/\x1b\[K//g' | grep -F "[member" | grep -v '^\[member' &&
    fail "an epoch line was written into the live line"
  echo "ok: the live line fits 60 columns and is cleared before epoch lines"
fi

# ---- 10. partial results -----------------------------------------------------
(cd m && expect 1 "the parts hold members 0-1, 2 of the ensemble's 4.*members? 2-3 are missing.*--partial" "$ENS" merge a.h5 -o part.h5)
(cd m && expect 0 "result written to part.h5" "$ENS" merge a.h5 -o part.h5 --partial)
"$ENS" info m/part.h5 | grep -q "2 of 4 members (members 0-1: a partial result)" || fail "info: k of M"
"$ENS" info m/a.h5 | grep -q "2 of 4 members" || fail "info of a slice: k of M"
(cd m && expect 0 "partial result: it holds members 0-1 of the ensemble's 4" "$ENS" predict -m part.h5 -i "$WORK/data.h5" -o p.h5)
grep -q "200 rows, 2 of 4 members" m/last.txt || fail "predict: k of M members"
echo "ok: partial merges need --partial; info and predict say k of M members"

# ---- 11. the smaller ones ------------------------------------------------------
expect 1 "unexpected argument 'extra'" "$ENS" predict -m m/a.h5 -i data.h5 -o p.h5 extra
expect 1 "nope.h5: No such file or directory" "$ENS" info nope.h5
"$ENS" info m/a.h5 c/out/result.h5 >two.txt || fail "ens info of two files"
[ "$(grep -c "^  architecture" two.txt)" = 2 ] || fail "ens info a.h5 b.h5 did not print both"
expect 0 "usage: ens import" "$ENS" import --help
printf '[train]\nlr = 0.1  # a comment\nepochs = 2 ; another\n[model]\nhidden = 8\n[data]\npath = %s\n[output]\npath = cm.h5\nverbose = 0\n' "$WORK/data.h5" >comments.ini
expect 0 "result written to cm.h5" "$ENS" train -c comments.ini
printf '[train]\nlr = 0.1\nepochs = 2\nlr = 0.2\n' >dup.ini
expect 1 "dup.ini:4: \[train\] lr is set a second time \(first on line 2\)" "$ENS" train -c dup.ini
(cd c && expect 1 "has no /trunk.*\[trunk\] dataset = ensemble.*member:<k>" "$ENS" train -c "$WORK/job.ini" --set trunk.source=file --set trunk.file="$WORK/c/out/result.h5" --set trunk.layers=1 --set output.path=t.h5)
$PY - c/out/result.h5 <<'PYEOF' || fail "member seed attributes"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    seeds = [int(f[f"members/{k}"].attrs["seed"]) for k in range(2)]
    assert seeds == [0, 1], seeds
    assert int(f["members/1"].attrs["ensemble_seed"]) == 42
PYEOF
(cd h && expect 0 "vote: nll and brier are computed on vote shares" "$ENS" train -c "$WORK/job.ini" --set ensemble.combine=vote --set output.path=v.h5)
(cd h && expect 0 "params: the members were initialized independently" "$ENS" train -c "$WORK/job.ini" --set ensemble.combine=params --set ensemble.share_init=false --set output.path=pa.h5)
"$ENS" info h/pa.h5 | grep -q "initialized independently" || fail "info: params note"
for s in bench-step deps demo slurm-cluster test fuzz export_torch_trunk.py hetero.py ood.py plot.py uci.py; do
  out=$(timeout 30 "$SRC/scripts/$s" --help 2>&1) || fail "scripts/$s --help exited non-zero"
  echo "$out" | grep -qi "usage" || fail "scripts/$s --help printed no usage"
done
echo "ok: every script takes --help"

# ---- 13. no test split ----------------------------------------------------------
$PY - <<'PYEOF'
import h5py
with h5py.File("data.h5", "r") as f, h5py.File("notest.h5", "w") as g:
    g["train/x"] = f["train/x"][:]; g["train/y"] = f["train/y"][:]
    g.attrs["classes"] = f.attrs["classes"]
PYEOF
mkdir -p n
(cd n && expect 1 "notest.h5 has no /test split and no validation rows.*val_fraction" "$ENS" train -c "$WORK/job.ini" --set data.path="$WORK/notest.h5")
(cd n && expect 1 "no /test split.*combine = select fits on the validation rows.*scored on the rows it was fitted on" "$ENS" train -c "$WORK/job.ini" --set data.path="$WORK/notest.h5" --set data.val_fraction=0.2 --set ensemble.combine=select)
(cd n && expect 0 "scores on 120 held-out validation rows \(\[data\] val_fraction of /train\)" "$ENS" train -c "$WORK/job.ini" --set data.path="$WORK/notest.h5" --set data.val_fraction=0.2)
"$ENS" info n/out/result.h5 | grep -q "480 train, 120 held-out validation rows" || fail "info: no test split"
$PY - n/out/result.h5 <<'PYEOF' || fail "no-test result layout"
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    assert f.attrs["test_split"] in (b"val_fraction", "val_fraction"), f.attrs["test_split"]
    assert f["members/probs"].shape == (2, 120, 3), f["members/probs"].shape
    assert "val_probs" not in f["members"]
PYEOF
(cd n && expect 1 "has neither /x nor /test/x.*--dataset" "$ENS" predict -m out/result.h5 -i "$WORK/notest.h5" -o p.h5)
(cd n && expect 0 "600 rows, 2 of 2 members" "$ENS" predict -m out/result.h5 -i "$WORK/notest.h5" --dataset /train/x -o p.h5)
# An IDX import without test files says what train will need.
$PY - <<'PYEOF'
import gzip, struct
import numpy as np
rng = np.random.default_rng(0)
x = rng.integers(0, 255, size=(200, 4, 4), dtype=np.uint8); y = (x[:, 0, 0] > 127).astype(np.uint8)
with gzip.open("img.gz", "wb") as f: f.write(struct.pack(">IIII", 0x803, 200, 4, 4) + x.tobytes())
with gzip.open("lab.gz", "wb") as f: f.write(struct.pack(">II", 0x801, 200) + y.tobytes())
PYEOF
expect 0 "note: imp/i.h5 has no test split.*val_fraction" "$ENS" import idx --images img.gz --labels lab.gz -o imp/i.h5
(cd n && expect 0 "result written" "$ENS" train -c "$WORK/job.ini" --set data.path="$WORK/imp/i.h5" --set data.val_fraction=0.25 --set output.path=idx.h5)
echo "ok: without /test the validation rows are scored; select refuses; predict applies to new rows"

# ---- 15. ens info --------------------------------------------------------------
(cd h && "$ENS" train -c "$WORK/job.ini" --set data.val_fraction=0.2 --set ensemble.mode=bootstrap --set output.path=bs.h5 >/dev/null) || fail "bootstrap job"
"$ENS" info h/bs.h5 >info.txt || fail "ens info"
grep -qE "^  data +$WORK/data.h5: 480 train, 200 test, 120 validation rows$" info.txt || { cat info.txt; fail "info: data line"; }
grep -qE "^  training +3 epochs, batch 32" info.txt || { cat info.txt; fail "info: epochs"; }
grep -q "val acc" info.txt && grep -q "oob acc" info.txt || { cat info.txt; fail "info: val and oob columns"; }
# Aligned: every column header ends where the numbers under it end.
hdr=$(grep -E "^  member +accuracy" info.txt)
row=$(grep -E "^  0 " info.txt | head -n 1)
ens=$(grep -E "^  ensemble +[0-9.]+%" info.txt | head -n 1)
for col in "accuracy" "nll" "brier" "ece" "val acc" "val nll" "oob acc" "weight"; do
  end=$(($(echo "$hdr" | grep -bo "$col" | head -n 1 | cut -d: -f1) + ${#col}))
  c=$(echo "$row" | cut -c"$end")
  n=$(echo "$row" | cut -c"$((end + 1))")
  [ -n "$c" ] && [ "$c" != " " ] && [ "$n" = " " -o -z "$n" ] || { echo "$hdr"; echo "$row"; fail "info: column '$col' misaligned"; }
done
c=$(echo "$ens" | cut -c"$(($(echo "$hdr" | grep -bo "accuracy" | cut -d: -f1) + 8))")
[ "$c" = "%" ] || { echo "$hdr"; echo "$ens"; fail "info: the ensemble row is misaligned"; }
echo "ok: ens info shows data, rows, epochs, val and oob columns, aligned"

# ---- 16. members no better than the prior --------------------------------------
# Labels drawn apart from the features: no member can beat the class
# frequencies on the validation rows, and training and ens info both say so;
# on data with a signal (data.h5) neither does.
mkdir -p nl
$PY - <<'PYEOF'
import h5py, numpy as np
rng = np.random.default_rng(5)
with h5py.File("noise.h5", "w") as f:
    for s, n in (("train", 600), ("test", 200)):
        f[s + "/x"] = rng.normal(size=(n, 8)).astype(np.float32)
        f[s + "/y"] = rng.integers(0, 3, size=n).astype(np.int8)
    f.attrs["classes"] = np.int32(3)
PYEOF
(cd nl && expect 0 "warning: 2 finished members are no better than the prior \(0, 1\): validation nll not 0.01 below [0-9.]+, that of predicting the training class frequencies for every row; combine = average includes them" \
  "$ENS" train -c "$WORK/job.ini" --set data.path="$WORK/noise.h5" --set data.val_fraction=0.25 --set output.path=noise.h5)
"$ENS" info nl/noise.h5 >nl.txt || fail "ens info of the noise result"
grep -qE "^  warning: no better than the prior: members 0, 1 \(validation nll not 0.01 below [0-9.]+" nl.txt || { cat nl.txt; fail "info: members no better than the prior"; }
$PY - <<'PYEOF' || fail "prior_nll is not that of the training class frequencies"
import h5py, numpy as np
with h5py.File("nl/noise.h5") as f:
    got = f["metrics/ensemble"].attrs["prior_nll"]
    val = f["metrics/member_val_nll"][:]
print("prior_nll", got, "member val nll", val)
assert 1.05 < got < 1.15, got          # about ln 3 = 1.0986 for 3 balanced classes
assert (val > got - 0.01).all(), val
PYEOF
grep -q "no better than the prior" info.txt && { cat info.txt; fail "info: a learning member was named"; }
(cd nl && expect 0 "result written" "$ENS" train -c "$WORK/job.ini" --set data.val_fraction=0.25 --set output.path=signal.h5)
grep -q "no better than the prior" nl/last.txt && { cat nl/last.txt; fail "train: a learning member was named"; }
echo "ok: members no better than the class frequencies are named by train and ens info"
echo "everyday: all passed"
