# Successive halving on 2 simulated nodes x 2 ranks (DESIGN.md "Two nodes on
# one machine"; see twonode.sh): the rungs go through the placement queue
# across the nodes, and the result is bitwise identical to 1 rank, also
# after a stop (USR1 on mpirun, inside rung 1) and --resume on the two nodes.
# Skips (exit 77) when the simulated nodes cannot be set up.
# shellcheck shell=bash source=tests/integration/lib.bash
source "$(dirname "$0")/lib.bash"
RSH=$SRC/scripts/simnode-rsh
need_simnodes 2
[ -x "$RSH" ] || fail "$RSH is missing or not executable"
TWO=(--host "node1:2,node2:2" -np 4 --mca plm_rsh_agent "$RSH" --mca btl "self,tcp")
$PY "$SRC/tests/integration/make_data.py" data.h5 4000 16 4
cat >job.ini <<INI
[data]
path = $WORK/data.h5
val_fraction = 0.2
[model]
hidden = 32
[train]
epochs = 12
batch = 32
[ensemble]
members = 9
mode = search
combine = select
calibrate = temperature
seed = 3
[search]
lr = 0.003,0.3
hidden = 32 | 16,16 | 64
batch = 32,64
halving = true
halving_min_epochs = 2
halving_factor = 3
[output]
path = result.h5
verbose = 1
INI
run_np 0 one -c "$WORK/job.ini" || fail "halving on 1 rank"
mkdir -p two
(cd two && mpirun "${TWO[@]}" "$ENS" train -c "$WORK/job.ini" </dev/null) >two/log 2>&1 ||
  { cat two/log; fail "halving on 2 nodes x 2 ranks"; }
grep -q "2 nodes" two/log || grep -q "node2" two/log || { cat two/log; fail "the job did not run on two nodes"; }
same_result one/result.h5 two/result.h5 || fail "halving: 2 nodes x 2 ranks differ from 1 rank"
$PY - two/result.h5 <<'PY' || fail "rung record on two nodes"
import h5py, sys
with h5py.File(sys.argv[1], "r") as f:
    assert f["/search/rung_epochs"][...].tolist() == [2, 6, 12]
    assert f["/search/rung_members"][...].tolist() == [9, 3, 1]
    rr = f["/ranks/rung_rank"][...]
    assert set(rr[:, 0].tolist()) == {0, 1, 2, 3}, rr[:, 0]   # rung 0 on all four ranks
PY
echo "ok: halving on 2 nodes x 2 ranks identical to 1 rank; rung 0 trained on all 4 ranks"

# Stops inside the later rungs (issue 18): a longer job (rungs at epochs 4,
# 12, 36; rung 1 trains 3 members for 8 epochs, the last rung 1 member for
# 24), stopped inside rung 1 (every rank signalled, as SLURM does) and inside
# the last rung (USR1 to mpirun only, which forwards it through the remote
# daemons). Each must exit 75 with the ranking of the rungs before it
# checkpointed, and --resume on the two nodes must give the unstopped result.
$PY "$SRC/tests/integration/make_data.py" data2.h5 200000 16 4
sed -e "s|/data.h5|/data2.h5|" -e "s|^epochs = 12|epochs = 36|" \
  -e "s|^halving_min_epochs = 2|halving_min_epochs = 4|" job.ini >job2.ini
grep -q "^epochs = 36" job2.ini && grep -q "^halving_min_epochs = 4" job2.ini || fail "job2.ini"
run_np 0 one2 -c "$WORK/job2.ini" || fail "the longer halving job on 1 rank"
$PY - one2/result.h5 <<'PY' || fail "rungs of the longer job"
import h5py, sys
with h5py.File(sys.argv[1], "r") as f:
    assert f["/search/rung_epochs"][...].tolist() == [4, 12, 36]
    assert f["/search/rung_members"][...].tolist() == [9, 3, 1]
PY
# Stop inside rung 0 (the longer job: the 12-epoch one above can finish
# before the signal reaches its ranks on a fast machine) and resume on the
# two nodes. stop_ranks_at freezes the ranks on both nodes at the line and
# signals each. A job that still finished first (exit 0) tested nothing, so
# it is tried again (3 times).
stop_ranks_retry stop "epoch 1/36" mpirun "${TWO[@]}" "$ENS" train -c "$WORK/job2.ini"
[ $code = 75 ] || { cat stop/log; fail "exit $code after USR1 on two nodes, expected 75"; }
(cd stop && mpirun "${TWO[@]}" "$ENS" train -c "$WORK/job2.ini" --resume </dev/null) >>stop/log 2>&1 ||
  { cat stop/log; fail "resume on two nodes"; }
same_result one2/result.h5 stop/result.h5 || fail "halving: stopped in rung 0 + resumed on two nodes differs"
echo "ok: halving stop in rung 0 + --resume on 2 nodes identical"
# later_stop NAME PATTERN HOW RANKED: stops the longer job at the first log
# line matching PATTERN (HOW: ranks = stop_ranks_at, mpirun = USR1 to mpirun
# only), expects exit 75 with exactly RANKED rungs ranked before the stop
# (else the stop landed elsewhere: tried again, 3 times), resumes, compares.
later_stop() {
  local name=$1 pattern=$2 how=$3 ranked=$4 attempt pid code got
  for attempt in 1 2 3; do
    rm -rf "$name"
    mkdir -p "$name"
    (cd "$name" && exec mpirun "${TWO[@]}" "$ENS" train -c "$WORK/job2.ini" </dev/null) \
      >"$name/log" 2>&1 &
    pid=$!
    if [ "$how" = ranks ]; then
      stop_ranks_at "$pattern" "$name/log" $pid
    else
      wait_line "$pattern" "$name/log" $pid
      kill -USR1 $pid 2>/dev/null || true
    fi
    code=0
    wait $pid || code=$?
    got=$(grep -c "^successive halving: rung [0-9]* (epoch" "$name/log" || true)
    [ $code = 75 ] && [ "$got" = "$ranked" ] && break
    [ $attempt -lt 3 ] && echo "$name: exit $code, $got rungs ranked (the stop missed); again"
  done
  [ $code = 75 ] || { cat "$name/log"; fail "$name: exit $code after USR1 on two nodes, expected 75"; }
  [ "$got" = "$ranked" ] || { cat "$name/log"; fail "$name: stopped after $got ranked rungs, expected $ranked"; }
  [ ! -e "$name/result.h5" ] || fail "$name: a result was written despite the stop"
  [ -f "$name/result.h5.ckpt/halving.h5" ] || fail "$name: no halving checkpoint"
  nstop=$(wc -l <"$name/log")
  (cd "$name" && mpirun "${TWO[@]}" "$ENS" train -c "$WORK/job2.ini" --resume </dev/null) \
    >>"$name/log" 2>&1 || { cat "$name/log"; fail "$name: resume on two nodes"; }
  # No work lost: every member the resume trains starts after the last
  # epoch it printed before the stop (none is trained again).
  $PY - "$name/log" "$nstop" <<'PY' || { cat "$name/log"; fail "$name: the resume retrained epochs"; }
import re, sys
lines = open(sys.argv[1]).read().splitlines()
stop = int(sys.argv[2])
pat = re.compile(r"^\[member (\d+)\] epoch (\d+)/")
before, after = {}, {}
for i, line in enumerate(lines):
    m = pat.match(line)
    if m:
        (before if i < stop else after).setdefault(int(m[1]), []).append(int(m[2]))
assert after, "no epoch lines after the resume"
again = [(k, max(v), min(after[k])) for k, v in before.items() if k in after and min(after[k]) <= max(v)]
assert not again, "member, last epoch before the stop, first after: %s" % again
PY
  grep -q "rungs 0..$((ranked - 1)) were ranked before the stop" "$name/log" ||
    { cat "$name/log"; fail "$name: the resume did not start from the checkpointed ranking"; }
  same_result one2/result.h5 "$name/result.h5" || fail "$name: stopped + resumed differs from 1 rank"
  echo "ok: $name: stopped inside rung $ranked on 2 nodes (exit 75), resumed without retraining an epoch, identical to 1 rank"
}
later_stop stop-rung1 "epoch 5/36" ranks 1
later_stop stop-rung2 "epoch 18/36" mpirun 2
