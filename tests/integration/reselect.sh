# ens-reselect (tests/tools/reselect.c, the development tool of docs/SEARCH.md
# "Second round") re-runs combine = select on a stored result's rows without
# training: on a search trained on 2 ranks it must reproduce the stored rule,
# picks and calibrated test NLL, and refuse a data file whose rows do not match.
source "$(dirname "$0")/lib.bash"
TOOL=$(dirname "$ENS")/tests/ens-reselect
[ -x "$TOOL" ] || { echo "skip: no $TOOL"; exit 77; }
$PY "$SRC/tests/integration/make_data.py" data.h5 2000 16 4
$PY "$SRC/tests/integration/make_data.py" other.h5 1000 16 4
cat >job.ini <<INI
[data]
path = $WORK/data.h5
val_fraction = 0.2
[model]
hidden = 32,16
[train]
epochs = 3
batch = 32
[ensemble]
members = 6
mode = search
combine = select
calibrate = temperature
seed = 13
[search]
lr = 0.01,0.3
hidden = 32,16 | 48 | 16,16,16
dropout = 0,0.3
[output]
path = result.h5
INI
run_np 2 np2 -c "$WORK/job.ini" || fail "search on 2 ranks"
"$TOOL" np2/result.h5 data.h5 13 0.2 >re.txt || { cat re.txt; fail "ens-reselect"; }
cat re.txt
$PY - np2/result.h5 re.txt <<'PY' || fail "ens-reselect does not reproduce the stored selection"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
m = f["/metrics/ensemble"].attrs
lines = open(sys.argv[2]).read().split("\n")
rule = m["select_rule"]
rule = rule.decode() if isinstance(rule, bytes) else str(rule)
assert lines[0].split()[1] == rule, (lines[0], rule)
picks = [int(v) for v in lines[1].split()[1:]]
assert picks == [int(v) for v in f["/ensemble/picks"][...]], (picks, f["/ensemble/picks"][...])
cal = float(lines[2].split("calibrated")[1].split()[0])
assert abs(cal - float(m["nll"])) < 6e-5, (cal, float(m["nll"]))
PY
if "$TOOL" np2/result.h5 other.h5 13 0.2 >bad.txt 2>&1; then fail "ens-reselect accepted other rows"; fi
grep -q "do not match" bad.txt || { cat bad.txt; fail "ens-reselect: no clear message"; }
echo "ok: ens-reselect reproduces the stored selection"
