# Random search, greedy selection, calibration, failed members, MC-dropout
# and per-row uncertainty: determinism on 1, 2 and 3 ranks and across a
# stop + --resume, members of different architectures in one result, in
# predict and in merge, and the config errors of issue 8.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 3000 16 4
cat >job.ini <<INI
[data]
path = $WORK/data.h5
val_fraction = 0.2
[model]
hidden = 32,16
[train]
epochs = 4
batch = 32
[ensemble]
members = 6
mode = search
combine = select
calibrate = temperature
mc_samples = 3
seed = 11
[search]
lr = 0.01,0.3
hidden = 32,16 | 48 | 16,16,16
batch = 32,64
dropout = 0,0.3
[output]
path = result.h5
verbose = 1
INI
for np in 0 2 3; do
  run_np $np "np$np" -c "$WORK/job.ini" || fail "search on $np ranks"
done
for np in 2 3; do
  same_result np0/result.h5 "np$np/result.h5" || fail "search: 1 and $np ranks differ"
done
echo "ok: search + select + temperature identical on 1, 2, 3 ranks"
# Members differ in architecture, and the result records what they drew.
h5ls -r np0/result.h5 | grep -q "/members/0/params" || fail "no member params"
sizes=$(for k in 0 1 2 3 4 5; do h5ls "np0/result.h5/members/$k/params" | awk '{print $3}'; done | sort -u | wc -l)
[ "$sizes" -ge 2 ] || fail "all members have the same number of parameters"
h5dump -a /members/0/lr np0/result.h5 >/dev/null || fail "no drawn lr attribute"
h5dump -a /members/0/hidden np0/result.h5 >/dev/null || fail "no drawn hidden attribute"
h5dump -d /ensemble/weights np0/result.h5 >/dev/null || fail "no /ensemble/weights"
h5dump -d /ensemble/uncertainty np0/result.h5 >/dev/null || fail "no /ensemble/uncertainty"
for a in temperature; do
  h5dump -a /ensemble/$a np0/result.h5 >/dev/null || fail "no /ensemble $a"
done
for a in best_member average_nll best_member_nll uncalibrated_nll mc_nll; do
  h5dump -a /metrics/ensemble/$a np0/result.h5 >/dev/null || fail "no /metrics/ensemble $a"
done
"$ENS" info np0/result.h5 >info.txt || fail "ens info"
grep -q "hyperparameters" info.txt && grep -q "best single member" info.txt ||
  { cat info.txt; fail "ens info lacks the search table"; }
# predict reproduces the selected, calibrated ensemble and its uncertainty.
"$ENS" predict -m np0/result.h5 -i data.h5 -o pred.h5 >/dev/null || fail "predict"
h5diff np0/result.h5 pred.h5 /ensemble/pred /pred || fail "predict /pred differs"
h5diff --exclude-attribute /ensemble/probs np0/result.h5 pred.h5 /ensemble/probs /probs || fail "predict /probs differs"
h5diff --exclude-attribute /ensemble/uncertainty np0/result.h5 pred.h5 /ensemble/uncertainty /uncertainty || fail "predict /uncertainty differs"
# MC-dropout predictions are reproducible, and differ from the deterministic pass.
"$ENS" predict -m np0/result.h5 -i data.h5 -o mc1.h5 --mc-samples 4 >/dev/null || fail "predict mc"
"$ENS" predict -m np0/result.h5 -i data.h5 -o mc2.h5 --mc-samples 4 >/dev/null || fail "predict mc"
h5diff mc1.h5 mc2.h5 /probs /probs || fail "MC-dropout predictions not reproducible"
if h5diff -q pred.h5 mc1.h5 /probs /probs; then fail "MC-dropout changed nothing"; fi
echo "ok: predict reproduces select + calibration + uncertainty; MC-dropout reproducible"
# Merge of two slices of the search equals the one run.
run_np 0 a -c "$WORK/job.ini" --set ensemble.first_member=0 --set ensemble.count=3 --set output.path=a.h5 || fail "slice a"
run_np 0 b -c "$WORK/job.ini" --set ensemble.first_member=3 --set ensemble.count=3 --set output.path=b.h5 || fail "slice b"
(cd np0 && "$ENS" merge ../a/a.h5 ../b/b.h5 -o merged.h5 >/dev/null) || fail "merge"
mv np0/merged.h5 merged.h5
cp np0/result.h5 whole.h5
(cd np0 && "$ENS" merge ../a/a.h5 ../b/b.h5 -o result.h5 >/dev/null) || fail "merge over result"
same_result whole.h5 np0/result.h5 || fail "merged search differs from one run"
echo "ok: merge of search slices equals one run"
# Stop + resume inside a search.
# Long enough (30 epochs) that USR1 after the first epoch line lands in training.
stop_resume search -c "$WORK/job.ini" --set train.epochs=30
# Failed members: an lr range that reaches divergence. They are recorded and
# skipped; clip_norm rescues them.
cat >fail.ini <<INI
[data]
path = $WORK/data.h5
val_fraction = 0.2
[model]
hidden = 32,16
batchnorm = false
[train]
epochs = 3
batch = 32
schedule = constant
[ensemble]
members = 6
mode = search
combine = select
seed = 3
[search]
lr = 0.05,1000
hidden =
batch =
[output]
path = result.h5
verbose = 0
INI
run_np 2 fail -c "$WORK/fail.ini" || fail "a search with diverging members must finish"
nfail=$(grep -c "FAILED" fail/log || true)
[ "$nfail" -ge 1 ] || { cat fail/log; fail "no member diverged"; }
h5dump -a /members/0/status fail/result.h5 | grep -qE '"(done|failed)"' || fail "no status"
grep -rl . fail/log >/dev/null
failed_k=$(grep -m1 -oE '^\[member [0-9]+\] FAILED' fail/log | grep -oE '[0-9]+')
h5dump -a "/members/$failed_k/fail_reason" fail/result.h5 | grep -q "NaN or infinite" ||
  fail "member $failed_k has no failure reason"
h5dump -a "/members/$failed_k/fail_epoch" fail/result.h5 >/dev/null || fail "no fail_epoch"
echo "ok: $nfail of 6 members diverged, recorded as failed, the rest combined"
run_np 2 fail-clip -c "$WORK/fail.ini" --set train.clip_norm=1 || fail "clip_norm run"
nclip=$(grep -c "FAILED" fail-clip/log || true)
[ "$nclip" -lt "$nfail" ] || fail "clip_norm did not rescue diverging members ($nclip vs $nfail)"
echo "ok: clip_norm = 1: $nclip failed (without: $nfail)"
# Too few finished members: exit 2.
code=0
run_np 2 fail-min -c "$WORK/fail.ini" --set ensemble.min_members=6 >/dev/null 2>&1 || code=$?
grep -q "min_members" fail-min/log || { cat fail-min/log; fail "min_members not reported"; }
[ ! -e fail-min/result.h5 ] || fail "a result was written below min_members"
# Config errors before any training.
code=0
"$ENS" train -c job.ini --set ensemble.combine=params >err1 2>&1 || code=$?
[ $code = 1 ] && grep -q "combine = params with mode = search" err1 || { cat err1; fail "params + search"; }
code=0
"$ENS" train -c job.ini --set data.val_fraction=0 >err2 2>&1 || code=$?
[ $code = 1 ] && grep -q "needs validation rows" err2 || { cat err2; fail "search without val rows"; }
grep -q "epoch 1" err2 && fail "trained before the validation check"
code=0
"$ENS" train -c job.ini --set search.lr=abc >err3 2>&1 || code=$?
[ $code = 1 ] && grep -q "\[search\] lr" err3 || { cat err3; fail "bad search range"; }
"$ENS" train --help >help.txt
grep -q "\[search\] hidden" help.txt || fail "train --help lacks [search] keys"
echo "search: all passed"
