# Logs under mpirun with verbose = 1 (issue 20, item 10): every rank's member
# lines reach the log whole, through rank 0, so that
#  a. on 3 ranks every line of a combined stdout+stderr log is one whole line
#     of a known form, and every member's every epoch line is there once;
#     under mpirun --tag-output every member line comes from rank 0;
#  b. after a stop (USR1), no member line comes after "stopped by a signal",
#     on 2 and 3 ranks.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 3000 16 2
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 16
[train]
epochs = 25
batch = 32
[ensemble]
members = 6
[output]
path = result.h5
verbose = 1
progress_interval = 0.01
INI

# a. whole lines
run_np 3 a -c "$WORK/job.ini" || fail "a: training on 3 ranks"
member='^\[member [0-5]\] epoch [0-9]+/(25|400)  loss [0-9.]+  test acc [0-9.]+%  nll [0-9.]+  [0-9]+ samples/s  lr [0-9.e-]+$'
progress='^progress: [0-6]/6 members(  epoch [0-9]+/(25|400)  loss [0-9.]+  [0-9]+ samples/s  [0-9.]+%  elapsed [0-9a-z.]+  ETA [0-9a-z.]+| done  elapsed [0-9a-z.]+)$'
other='^(start: |ens: warning: node [a-z0-9.-]+ is oversubscribed|layout: |  node |node |scores on |member  |[0-5]  |ensemble|result written|$)'
bad=$(grep -vE "$member|$progress|$other" a/log || true)
[ -z "$bad" ] || { echo "$bad" | head; fail "a: lines that are not whole"; }
for k in 0 1 2 3 4 5; do
  [ "$(grep -cE "^\[member $k\] epoch" a/log)" = 25 ] || fail "a: member $k has not 25 epoch lines"
done
echo "ok: a: $(wc -l <a/log) lines on 3 ranks, all whole, 150 member lines"

# One writer: under --tag-output, mpirun names the rank and stream of every
# line; every member line must come from rank 0's stdout, whichever rank
# trained the member (each of the 3 ranks trains 2 of the 6).
mkdir -p t
(cd t && mpirun -np 3 --tag-output "$ENS" train -c "$WORK/job.ini" --set train.epochs=3) >t/log 2>&1 ||
  { cat t/log; fail "t: training under --tag-output"; }
[ "$(grep -c '\[member [0-5]\] epoch' t/log)" = 18 ] || { cat t/log; fail "t: expected 18 member lines"; }
bad=$(grep '\[member [0-5]\] epoch' t/log | grep -vE '^\[[0-9]+,0\]<stdout>:\[member' || true)
[ -z "$bad" ] || { echo "$bad" | head -5; fail "t: member lines written by a rank other than 0"; }
echo "ok: t: all 18 member lines of 3 ranks written by rank 0"

# b. nothing after the stop's last words
for np in 2 3; do
  mkdir -p "b$np"
  (cd "b$np" && exec mpirun -np $np "$ENS" train -c "$WORK/job.ini" --set train.epochs=400) \
    >"b$np/log" 2>&1 &
  pid=$!
  stop_at "epoch 3/" "b$np/log" $pid
  code=0
  wait $pid || code=$?
  [ $code = 75 ] || { cat "b$np/log"; fail "b$np: exit $code after USR1, expected 75"; }
  stop=$(grep -nE "stopped by (a signal|SIG[A-Z0-9]+)" "b$np/log" | head -1 | cut -d: -f1)
  [ -n "$stop" ] || { cat "b$np/log"; fail "b$np: no stop message"; }
  last=$(grep -n "^\[member" "b$np/log" | tail -1 | cut -d: -f1)
  [ "$last" -lt "$stop" ] || { tail -20 "b$np/log"; fail "b$np: member lines after the stop message"; }
  [ "$(grep -vE "$member|$progress|$other|stopped by (a signal|SIG[A-Z0-9]+)|^mpirun: Forwarding signal|^-{20,}$|^ens train: |^$" "b$np/log" | grep -cE "^\[member|epoch [0-9]")" = 0 ] ||
    fail "b$np: cut member lines"
  echo "ok: b$np: last member line $last, stop message at line $stop"
done
echo "logs: all passed"
