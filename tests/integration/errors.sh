# Every input a user controls fails with a message naming the file, key or
# dataset, a non-zero exit code (1 for input errors, 2 for runtime failures),
# and no partial output left behind.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 200 8 2
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 16
[train]
epochs = 2
batch = 32
[ensemble]
members = 2
[output]
path = out/result.h5
verbose = 0
INI
mkdir -p out

# expect CODE PATTERN cmd...: runs cmd, checks its exit code and that stderr matches.
expect() {
  local want=$1 pattern=$2
  shift 2
  local code=0
  "$@" >stdout.txt 2>stderr.txt || code=$?
  if [ "$code" != "$want" ]; then
    cat stdout.txt stderr.txt
    fail "'$*' exited $code, expected $want"
  fi
  grep -qE "$pattern" stderr.txt || { cat stderr.txt; fail "'$*': message does not match /$pattern/"; }
  echo "ok: exit $code: $(head -c 200 stderr.txt | tr '\n' ' ')"
}

no_output() {
  [ -z "$(ls -A out)" ] || { ls -la out; fail "partial output left in out/"; }
}

printf '[train]\nepochs = 2\nlerning_rate = 0.1\n' >bad-key.ini
expect 1 "bad-key.ini:3: .*lerning_rate" "$ENS" train -c bad-key.ini
printf '[train]\nlr = fast\n' >bad-value.ini
expect 1 "bad-value.ini:2: .*lr.*fast" "$ENS" train -c bad-value.ini
expect 1 "missing.ini" "$ENS" train -c missing.ini
expect 1 "unknown key" "$ENS" train -c job.ini --set train.nope=1
expect 1 "usage|required" "$ENS" train
expect 1 "unknown command" "$ENS" frobnicate
expect 1 "nothere.h5" "$ENS" train -c job.ini --set data.path=$WORK/nothere.h5
no_output

# Float labels, labels out of range, missing test split.
$PY - <<PYEOF
import h5py, numpy as np
x = np.random.default_rng(0).normal(size=(50, 4))
with h5py.File("float-labels.h5", "w") as f:
    f["train/x"] = x; f["train/y"] = np.zeros(50); f["test/x"] = x; f["test/y"] = np.zeros(50)
with h5py.File("range.h5", "w") as f:
    f["train/x"] = x; f["train/y"] = np.arange(50) % 3; f["test/x"] = x; f["test/y"] = np.arange(50) % 4
    f.attrs["classes"] = 3
with h5py.File("no-test.h5", "w") as f:
    f["train/x"] = x; f["train/y"] = np.arange(50) % 3
with open("not-hdf5.h5", "w") as f:
    f.write("hello")
PYEOF
# Float y means regression (task = auto); with task = classify it is an input error.
expect 1 "float-labels.h5.*/train/y.*task = classify" "$ENS" train -c job.ini --set data.path=$WORK/float-labels.h5 --set model.task=classify
expect 1 "range.h5.*/test/y.*label 3" "$ENS" train -c job.ini --set data.path=$WORK/range.h5
expect 1 "no-test.h5 has no /test split and no validation rows" "$ENS" train -c job.ini --set data.path=$WORK/no-test.h5
expect 1 "not-hdf5.h5" "$ENS" train -c job.ini --set data.path=$WORK/not-hdf5.h5
no_output

# An output folder that cannot be created (a file is in the way): named,
# nothing written.
expect 1 "\[output\] path = $WORK/job.ini/r.h5: cannot create its folder" "$ENS" train -c job.ini --set output.path=$WORK/job.ini/r.h5
# Same under mpirun: every rank stops, exit 1.
expect 1 "lerning_rate" mpirun -np 2 "$ENS" train -c bad-key.ini
expect 1 "float-labels.h5" mpirun -np 2 "$ENS" train -c job.ini --set data.path=$WORK/float-labels.h5 --set model.task=classify

# Divergence is a runtime failure (2) naming the member; no result, no temp file.
expect 2 "NaN|infinite" "$ENS" train -c job.ini --set train.lr=1e30 --set model.batchnorm=false \
  --set train.weight_decay=0
no_output

# predict / info / merge on wrong inputs.
"$ENS" train -c job.ini >/dev/null 2>&1 || fail "a good job failed"
[ -f out/result.h5 ] || fail "no result"
expect 1 "not-hdf5.h5" "$ENS" predict -m not-hdf5.h5 -i data.h5 -o p.h5
expect 1 "data.h5.*not an ens result|missing" "$ENS" predict -m data.h5 -i data.h5 -o p.h5
expect 1 "features" "$ENS" predict -m out/result.h5 -i float-labels.h5 -o p.h5
[ ! -e p.h5 ] || fail "predict left p.h5 behind"
expect 1 "not an ens result" "$ENS" info data.h5
expect 1 "overlap" "$ENS" merge out/result.h5 out/result.h5 -o m.h5
"$ENS" train -c job.ini --set model.hidden=8 --set output.path=other.h5 >/dev/null 2>&1
expect 1 "different jobs|overlap" "$ENS" merge out/result.h5 other.h5 -o m.h5
[ ! -e m.h5 ] || fail "merge left m.h5 behind"
expect 1 "truncated|expected|bytes" "$ENS" import idx --images data.h5 --labels data.h5 -o imp.h5
[ ! -e imp.h5 ] || fail "import left imp.h5 behind"

# Ranks other than 0 keep only the metadata of the members they trained and
# rebuild them from their checkpoints when rank 0 collects them. With 3
# members on 2 ranks, rank 1 waits while rank 0 trains member 2: a member_1.h5
# removed then is a runtime failure naming it (exit 2, no result).
$PY "$SRC/tests/integration/make_data.py" big.h5 20000 32 5
mkdir -p lost
(cd lost && exec mpirun -np 2 "$ENS" train -c "$WORK/job.ini" --set data.path="$WORK/big.h5" \
  --set ensemble.members=3 --set model.hidden=256,128 --set train.epochs=8 --set output.path=result.h5 \
  --set output.verbose=1 </dev/null) >lost/log 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  grep -q "member 1\] epoch 8/8" lost/log 2>/dev/null && [ -f lost/result.h5.ckpt/member_1.h5 ] && break
  sleep 0.05
done
grep -q "member 2\] epoch 8/8" lost/log && fail "rank 0 finished member 2 before the checkpoint could be removed"
rm lost/result.h5.ckpt/member_1.h5 || fail "no checkpoint member_1.h5 after member 1 finished"
code=0
wait $pid || code=$?
[ $code = 2 ] || { cat lost/log; fail "missing checkpoint at collection: exit $code, expected 2"; }
grep -q "collecting member 1 from rank 1: member 1: its checkpoint result.h5.ckpt/member_1.h5 is missing" lost/log ||
  { cat lost/log; fail "missing checkpoint at collection: no message naming it"; }
[ ! -e lost/result.h5 ] || fail "a result was written without member 1"
echo "ok: exit 2: a member whose checkpoint vanished before collection is reported by name"
echo "errors: all passed"
