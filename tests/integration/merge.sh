# `ens merge` for every task and mode (issue 20, item 8): member slices
# trained apart and merged (parts given in any order) give a result that
# `ens diff` finds bitwise identical to one run over all members, for
# regression (Gaussian and MSE heads, two targets; seed, bootstrap with
# out-of-bag rows, snapshot, search with select, MC-dropout rows) and
# classification (bootstrap, search with select and temperature).
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_regression.py" reg.h5 900 2 3
$PY "$SRC/tests/integration/make_data.py" cls.h5 900 12 3
cat >job.ini <<INI
[data]
val_fraction = 0.2
[model]
hidden = 16
[train]
epochs = 3
batch = 32
[ensemble]
members = 4
seed = 5
[search]
lr = 0.01,0.1
hidden = 16 | 8,8
dropout = 0,0.2
[output]
path = full.h5
verbose = 0
INI

# merge_case NAME DATA SLICES ARGS...: full run, the slices (FIRST:COUNT
# words) trained apart and merged in reverse order, and the merged result
# identical to the full one.
merge_case() {
  local name=$1 data=$2 slices=$3 parts=() s
  shift 3
  mkdir -p "$name"
  set -- -c "$WORK/job.ini" --set data.path="$WORK/$data" "$@"
  (cd "$name" && "$ENS" train "$@" >log 2>&1) || { cat "$name/log"; fail "$name: full run"; }
  for s in $slices; do
    (cd "$name" && "$ENS" train "$@" --set ensemble.first_member=${s%:*} --set ensemble.count=${s#*:} \
      --set output.path=part${s%:*}.h5 >>log 2>&1) || { cat "$name/log"; fail "$name: slice $s"; }
    parts=("part${s%:*}.h5" "${parts[@]}")
  done
  (cd "$name" && "$ENS" merge "${parts[@]}" -o merged.h5 >merge.log 2>&1) ||
    { cat "$name/merge.log"; fail "$name: merge ${parts[*]}"; }
  grep -q "result written to merged.h5" "$name/merge.log" || { cat "$name/merge.log"; fail "$name: merge said nothing"; }
  same_result "$name/full.h5" "$name/merged.h5" || fail "$name: merged result differs from one run"
  echo "ok: $name: slices $slices merged = one run"
}

merge_case reg-gauss-seed reg.h5 "0:1 1:2 3:1" --set model.loss=gaussian
merge_case reg-mse-bootstrap reg.h5 "0:2 2:2" --set model.loss=mse --set ensemble.mode=bootstrap
merge_case reg-gauss-mc reg.h5 "0:3 3:1" --set model.loss=gaussian --set model.dropout=0.2 --set ensemble.mc_samples=3
merge_case reg-snapshot reg.h5 "0:2 2:2" --set ensemble.mode=snapshot --set ensemble.snapshots=2 --set train.epochs=4
merge_case reg-search reg.h5 "0:1 1:2 3:1" --set ensemble.mode=search --set ensemble.combine=select
merge_case cls-bootstrap cls.h5 "0:2 2:2" --set ensemble.mode=bootstrap
merge_case cls-search cls.h5 "0:1 1:3" --set ensemble.mode=search --set ensemble.combine=select --set ensemble.calibrate=temperature
# A partial regression merge (--partial) says k of M.
(cd reg-gauss-seed && "$ENS" merge part0.h5 part1.h5 -o part.h5 --partial >plog 2>&1) || { cat reg-gauss-seed/plog; fail "partial regression merge"; }
"$ENS" info reg-gauss-seed/part.h5 | grep -q "3 of 4 members" || fail "partial regression merge: info does not say 3 of 4"
echo "merge: all passed"
