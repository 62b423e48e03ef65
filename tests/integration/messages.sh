# The small defects of issue 20 (item 13), each with the message it now
# prints: MC-dropout without dropout, --combine select on another result,
# out-of-bag accuracy and coverage in percent everywhere, unknown options
# pointing to --help (with the option or config key meant), a TSV without
# --delimiter, a CSV given as [data] path, a missing -m file, ens diff of a
# result against a data file, and the --help texts.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" cls.h5 600 8 3
$PY "$SRC/tests/integration/make_regression.py" reg.h5 600 1 3
cat >job.ini <<INI
[data]
val_fraction = 0.2
[model]
hidden = 16
[train]
epochs = 2
batch = 32
[ensemble]
members = 2
[output]
verbose = 0
INI
# expect CODE PATTERN cmd...: exit CODE, stdout+stderr match PATTERN (kept in last.txt).
expect() {
  local want=$1 pattern=$2 code=0
  shift 2
  "$@" >last.txt 2>&1 || code=$?
  [ "$code" = "$want" ] || { cat last.txt; fail "'$*' exited $code, expected $want"; }
  grep -qE -- "$pattern" last.txt || { cat last.txt; fail "'$*': output does not match /$pattern/"; }
  echo "ok: $(grep -E -- "$pattern" last.txt | head -1)"
}
"$ENS" train -c job.ini --set data.path=cls.h5 --set output.path=nodrop.h5 >/dev/null || fail "train nodrop"

# MC-dropout on a model without dropout: a warning, the plain ensemble.
expect 0 "warning: --mc-samples 3: no member of nodrop.h5 has dropout .*predicting the plain ensemble \(no MC-dropout\)" \
  "$ENS" predict -m nodrop.h5 -i cls.h5 -o p.h5 --mc-samples 3
grep -q "(MC-dropout)" last.txt && fail "still called MC-dropout"
[ "$($PY -c 'import h5py; print(int(h5py.File("p.h5")["/"].attrs["mc_samples"]))')" = 0 ] || fail "mc_samples recorded"
# --combine select on an average result.
expect 1 "--combine select: nodrop.h5 was trained with \[ensemble\] combine = average, so it holds no selection to apply" \
  "$ENS" predict -m nodrop.h5 -i cls.h5 -o p2.h5 --combine select
# Out-of-bag accuracy in percent in train and info; coverage in percent in predict.
expect 0 "^out-of-bag ensemble accuracy: [0-9]+\.[0-9]{2}%$" \
  "$ENS" train -c job.ini --set data.path=cls.h5 --set output.path=boot.h5 --set ensemble.mode=bootstrap
grep -qE "^member .* oob acc " last.txt || fail "train: oob column header"
oob=$(grep "^out-of-bag" last.txt | sed 's/.*: //')
expect 0 "^  out-of-bag ensemble accuracy: $oob$" "$ENS" info boot.h5
"$ENS" train -c job.ini --set data.path=reg.h5 --set output.path=reg-r.h5 >train.txt || fail "train reg"
cov=$(grep -oE "coverage_90 [0-9.]+%" train.txt | head -1)
[ -n "$cov" ] || { cat train.txt; fail "train: no coverage_90 in percent"; }
expect 0 "against /test/y: rmse .* $cov$" "$ENS" predict -m reg-r.h5 -i reg.h5 -o rp.h5
# Unknown options point to --help and to what was meant.
expect 1 "ens predict: unknown option '--set' \(ens predict takes no configuration keys.*see ens predict --help\)" \
  "$ENS" predict --set a=b -m nodrop.h5 -i cls.h5 -o x.h5
expect 1 "ens merge: unknown option '--bogus' \(see ens merge --help\)" "$ENS" merge --bogus a.h5 -o b.h5
expect 1 "ens import csv: unknown option '--val_fraction' \(did you mean --val-fraction\? See ens import csv --help\)" \
  "$ENS" import csv --val_fraction 0.1 x.csv
expect 1 "ens train: unknown option '--val_fraction' \(\[data\] val_fraction is a config key: --set data.val_fraction=VALUE; see ens train --help\)" \
  "$ENS" train --val_fraction 0.1 -c job.ini
expect 2 "ens diff: unknown option '--al' \(did you mean --all\? See ens diff --help\)" "$ENS" diff --al a b
# A TSV read with the default comma.
printf 'a\tb\tc\n1\t2\t0\n3\t4\t1\n5\t6\t0\n7\t8\t1\n' >t.tsv
expect 1 "no target column named 'c' .*the header holds '\\\\t': is that the delimiter\\? use --delimiter tab" \
  "$ENS" import csv t.tsv --target c -o t.h5
expect 0 "wrote t.h5" "$ENS" import csv t.tsv --target c -o t.h5 --delimiter '\t'
# A CSV as [data] path.
printf 'a,b,c\n1,2,0\n' >x.csv
expect 1 "x.csv: not an HDF5 file; it looks like a text table: convert it with \`ens import csv x.csv --target COLUMN -o data.h5\`" \
  "$ENS" train -c job.ini --set data.path=x.csv
# Missing files.
expect 1 "ens predict: -m nothere.h5: No such file or directory" "$ENS" predict -m nothere.h5 -i cls.h5 -o x.h5
expect 1 "ens merge: nothere.h5: No such file or directory" "$ENS" merge nothere.h5 -o x.h5
# ens diff of a result and a data file: one sentence, exit 2.
expect 2 "ens diff: cls.h5 is not an ens result \(no root attributes members and config\), and nodrop.h5 is" \
  "$ENS" diff nodrop.h5 cls.h5
[ "$(wc -l <last.txt)" = 1 ] || { cat last.txt; fail "diff: more than the one sentence"; }
# --help texts.
"$ENS" predict --help | grep -q "average|vote|params|select" || fail "predict --help: select"
"$ENS" diff --help | grep -qE "^  --all " && "$ENS" diff --help | grep -qE "^  -v " || fail "diff --help: --all, -v"
grep -q "reads *$" "$SRC/docs/DESIGN.md" && grep -q "class labels only" "$SRC/docs/DESIGN.md" &&
  fail "DESIGN.md still says train reads class labels only"
echo "messages: all passed"
