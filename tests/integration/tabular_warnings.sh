# Training on tabular data that trains without error and answers wrongly
# (issue 20, items 2 and 3): a warning (once, under mpirun -np 2 too) when
#  a. a regression target takes few distinct whole values (class codes
#     regressed: [model] task = regress on labels, or a numeric 0/1 column
#     imported as a regression target, named by its column name);
#  b. a classification has many classes with few rows each (a continuous
#     quantity classified);
#  c. the batch is at least the training rows (one step per epoch), with the
#     start-up line saying so when batch norm runs on that single batch;
# and no warning on ordinary data. Also ens info on a search result (item 9).
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" cls.h5 600 6 3
$PY "$SRC/tests/integration/make_regression.py" reg.h5 600 1 3
$PY - <<'PY'
import numpy as np
r = np.random.default_rng(1)
n = 400
x = r.normal(size=(n, 3))
y = (x[:, 0] + 0.5 * r.normal(size=n) > 0).astype(int)
with open("outcome.csv", "w") as f:
    f.write("a,b,c,Outcome\n")
    for i in range(n):
        f.write("%.3f,%.3f,%.3f,%d\n" % (x[i, 0], x[i, 1], x[i, 2], y[i]))
oz = np.round(40 + 30 * x[:, 0] + 5 * r.normal(size=n)).astype(int)
with open("ozone.csv", "w") as f:
    f.write("a,b,c,Ozone\n")
    for i in range(111):
        f.write("%.3f,%.3f,%.3f,%d\n" % (x[i, 0], x[i, 1], x[i, 2], oz[i]))
PY
"$ENS" import csv outcome.csv --target Outcome -o outcome.h5 >/dev/null || fail "import outcome.csv"
"$ENS" import csv ozone.csv --target Ozone --task classify -o ozone.h5 >/dev/null || fail "import ozone.csv"
cat >job.ini <<INI
[model]
hidden = 16
batchnorm = false
[train]
epochs = 2
batch = 32
[ensemble]
members = 2
[output]
path = result.h5
verbose = 1
INI

# train DIR DATA ARGS...: ens train on 2 ranks; stdout in DIR/out, stderr in DIR/err.
train() {
  local dir=$1 data=$2
  shift 2
  mkdir -p "$dir"
  (cd "$dir" && mpirun -np 2 "$ENS" train -c "$WORK/job.ini" --set data.path="$WORK/$data" "$@") \
    >"$dir/out" 2>"$dir/err" || { cat "$dir/out" "$dir/err"; fail "$dir: training"; }
}
# warned DIR PATTERN: exactly one warning line on stderr, matching PATTERN.
warned() {
  local n
  n=$(grep -c "^ens: warning:" "$1/err" || true)
  [ "$n" = 1 ] || { cat "$1/err"; fail "$1: $n warnings, expected 1"; }
  grep "^ens: warning:" "$1/err" | grep -qE "$2" || { cat "$1/err"; fail "$1: the warning does not match /$2/"; }
  echo "ok: $1: $(grep '^ens: warning:' "$1/err")"
}
quiet() {
  ! grep -q "warning" "$1/err" || { cat "$1/err"; fail "$1: a warning on ordinary data"; }
  ! grep -q "^batch norm:" "$1/out" || fail "$1: the single-batch line without a single batch"
}

# a. class codes regressed
train a1 cls.h5 --set model.task=regress
warned a1 "regression target /train/y column 0 of $WORK/cls.h5 takes only 3 distinct whole values \(0 to 2\) on 600 training rows: they look like class codes.*\[model\] task = regress makes them numbers: task = classify \(or auto\)"
train a2 outcome.h5
warned a2 "regression target 'Outcome' \(/train/y column 0 of $WORK/outcome.h5\) takes only 2 distinct whole values \(0 to 1\) on 320 training rows.*ens import csv --task classify"
# b. a continuous quantity classified (74 classes on 89 rows)
train b ozone.h5 --set train.batch=16
warned b "classification into [0-9]+ classes on 89 training rows \([0-9.]+ rows per class\): the labels look like the values of a continuous quantity.*task = regress"
# c. batch larger than the rows, with batch norm
train c reg.h5 --set train.batch=1024 --set model.batchnorm=true
warned c "\[train\] batch = 1024 is at least the 600 training rows: the batch is clamped to the rows, so every epoch is a single step on all 600 rows \(2 steps in all\); e.g. batch = 128 gives 5 steps per epoch; batch norm then normalizes by the statistics of the whole training set"
grep -qx "batch norm: a single batch per epoch (all 600 training rows)" c/out || { cat c/out; fail "c: no start-up line on batch norm"; }
train c2 reg.h5 --set train.batch=600
warned c2 "batch = 600 is at least the 600 training rows"
grep -q "^batch norm:" c2/out && fail "c2: the batch norm line without batch norm"
train c3 reg.h5 --set ensemble.mode=search --set data.val_fraction=0.2 --set search.batch=1024,2048 --set search.hidden=16 --set ensemble.members=4
grep "^ens: warning:" c3/err | grep -qE "^ens: warning: 4 of 4 members draw a batch \(member [0-3]: [0-9]+\) of at least the 480 training rows" ||
  { cat c3/err; fail "c3: search members with a batch beyond the rows"; }
# ens info on a search result (item 9): the ranges and each member's draws,
# not the job's [model]/[train] values, which no member used.
"$ENS" info c3/result.h5 >c3/info || fail "ens info of a search result"
grep -q "architecture  dense(" c3/info && { cat c3/info; fail "info: the job's architecture for a search"; }
grep -q "batch 32" c3/info && { cat c3/info; fail "info: the job's batch for a search"; }
grep -qx "  training      2 epochs, sgd, schedule cosine" c3/info || { cat c3/info; fail "info: training line of a search"; }
grep -qx "  search        each member drew from these \[search\] ranges (its draws: hyperparameters below)" c3/info &&
  grep -qx "                  lr            0.03 to 0.15, log-uniform" c3/info &&
  grep -qx "                  batch         one of 1024,2048" c3/info || { cat c3/info; fail "info: the search ranges"; }
[ "$(grep -cE "^  [0-3] .* lr [0-9.e-]+ wd .* batch (1024|2048) hidden 16 " c3/info)" = 4 ] ||
  { cat c3/info; fail "info: each member's draws"; }
echo "ok: ens info of a search shows its ranges and each member's draws"
# ordinary data: nothing
train q1 cls.h5
quiet q1
train q2 reg.h5 --set model.batchnorm=true
quiet q2
echo "tabular: all passed"
