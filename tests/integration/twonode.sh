# Two nodes simulated on this machine (DESIGN.md "Two nodes on one machine"):
# host names node1 (127.0.0.2) and node2 (127.0.0.3), and scripts/simnode-rsh
# as Open MPI's rsh agent, which starts each node's daemon in its own UTS
# namespace; ranks then talk over TCP between the "nodes". Checks, with
# 2 nodes x 2 ranks:
#  a. each node reads the input file once and holds one copy of the data
#     (and of the trunk features, each rank computing a slice): the per-node
#     line of the log and /ranks of the result;
#  b. results are bitwise identical to 1 rank and to 1 node x 4 ranks in seed,
#     bootstrap, snapshot and trunk mode (a trunk file: any rank count; a
#     pretrained trunk: the same 4 ranks on 1 or 2 nodes); conv members with
#     augmentation and a conv trunk file too;
#  c. kill -USR1 on mpirun stops all four ranks on both nodes with exit 75, and
#     --resume on the two nodes finishes with an identical result;
#  and the layout line at start (nodes, ranks, threads, cores, warning).
# Skips (exit 77) when the names cannot be set up or namespaces are not
# allowed. As root it adds the two /etc/hosts lines when they are missing and
# leaves them there (another test may be using them at the same time).
# shellcheck shell=bash source=tests/integration/lib.bash
source "$(dirname "$0")/lib.bash"
RSH=$SRC/scripts/simnode-rsh
need_simnodes 2
[ -x "$RSH" ] || fail "$RSH is missing or not executable"

# run_nodes dir args...: ens train on node1:2,node2:2.
TWO=(--host "node1:2,node2:2" -np 4 --mca plm_rsh_agent "$RSH" --mca btl "self,tcp")
run_nodes() {
  local dir=$1
  shift
  mkdir -p "$dir"
  (cd "$dir" && mpirun "${TWO[@]}" "$ENS" train "$@" </dev/null) >"$dir/log" 2>&1 ||
    { cat "$dir/log"; return 1; }
}

# Probe: the simulated launch works and gives two nodes.
mkdir -p probe
(cd probe && timeout 60 mpirun "${TWO[@]}" hostname </dev/null) >probe/log 2>&1 ||
  { cat probe/log; fail "mpirun on node1:2,node2:2 through simnode-rsh"; }
[ "$(grep -E '^node[12]$' probe/log | sort | uniq -c | awk '{ print $1 $2 }' | tr '\n' ' ')" = \
  "2node1 2node2 " ] ||
  { cat probe/log; fail "expected 2 processes on node1 and 2 on node2"; }
echo "ok: mpirun starts 2 ranks on each of node1 and node2"

# ------------------------------------------------------------------ the job
$PY "$SRC/tests/integration/make_data.py" data.h5 1200 16 4
cat >job.ini <<INI
[data]
path = $WORK/data.h5
val_fraction = 0.1
[model]
hidden = 32,16
dropout = 0.1
[train]
epochs = 3
batch = 32
lr = 0.05
[ensemble]
members = 4
seed = 11
[output]
path = result.h5
verbose = 1
INI
# The data block each node should hold: every array of the file (x float32,
# y int32), each rounded up to 64 bytes.
expect_bytes=$($PY - data.h5 <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
print(sum((f[s][k].size * 4 + 63) // 64 * 64 for s in ("train", "test", "val") if s in f
          for k in ("x", "y")))
PY
)

# check_ranks result.h5 nodes feature_rows: /ranks as 2 nodes x 2 ranks must be.
check_ranks() {
  $PY - "$@" "$expect_bytes" <<'PY'
import sys, h5py
path, trunk, want = sys.argv[1], sys.argv[2] == "trunk", int(sys.argv[3])
r = h5py.File(path, "r")["ranks"]
def bad(msg):
    sys.exit(f"{path}: /ranks: {msg}")
names = [n.decode() if isinstance(n, bytes) else n for n in r["node_names"][()]]
if names != ["node1", "node2"]: bad(f"node_names {names}, expected node1, node2")
if list(r["node"][()]) != [0, 0, 1, 1]: bad(f"node {list(r['node'][()])}, expected 0 0 1 1")
if list(r["node_ranks"][()]) != [2, 2]: bad(f"node_ranks {list(r['node_ranks'][()])}")
if list(r["data_reads"][()]) != [1, 0, 1, 0]:
    bad(f"data_reads {list(r['data_reads'][()])}: each node must read the file exactly once")
if list(r["node_data_bytes"][()]) != [want, want]:
    bad(f"node_data_bytes {list(r['node_data_bytes'][()])}, expected {want} on each node")
rss = r["peak_rss"][()]
if len(rss) != 4 or min(rss) <= 0: bad(f"peak_rss {list(rss)}")
rows = list(r["feature_rows"][()])
if trunk:
    # Every row of the data (train, val, test) once per node, a slice per rank.
    d = h5py.File("data.h5", "r")
    total = sum(d[s]["x"].shape[0] for s in ("train", "test", "val") if s in d)
    fb = list(r["node_feature_bytes"][()])
    if fb[0] != fb[1] or fb[0] <= 0: bad(f"node_feature_bytes {fb}")
    for node in (0, 1):
        a, b = rows[2 * node], rows[2 * node + 1]
        if a <= 0 or b <= 0: bad(f"feature_rows {rows}: every rank computes a slice")
        if a + b != total: bad(f"feature_rows {rows}: node {node} computed {a + b} rows, not {total}")
else:
    if rows != [0, 0, 0, 0]: bad(f"feature_rows {rows} without a trunk")
print(f"ranks ok: reads {list(r['data_reads'][()])}, node data bytes "
      f"{list(r['node_data_bytes'][()])}, feature rows {rows}, peak_rss MB "
      f"{[round(v / 2**20, 1) for v in rss]}")
PY
}

# check_log dir trunk|plain: layout and the per-node data lines.
check_log() {
  local log=$1/log
  grep -q "^layout: 4 ranks on 2 nodes, 1 BLAS thread per rank" "$log" ||
    { cat "$log"; fail "$1: no layout line for 4 ranks on 2 nodes"; }
  for n in 1 2; do
    local ranks=$(( (n - 1) * 2 ))-$(( (n - 1) * 2 + 1 ))
    grep -qE "^  node node$n: 2 ranks \($ranks\) x 1 thread = 2 threads on [0-9]+ cores" "$log" ||
      { cat "$log"; fail "$1: no layout line for node$n"; }
    grep -q "^node node$n: data read once, $expect_bytes bytes shared by 2 ranks ($ranks)" "$log" ||
      { cat "$log"; fail "$1: node$n did not report one copy of $expect_bytes bytes shared by 2 ranks"; }
  done
  if [ "$(nproc)" -ge 2 ]; then
    ! grep -q "oversubscribed" "$log" || fail "$1: oversubscription warning with 2 ranks on $(nproc) cores"
  fi
  if [ "$2" = trunk ]; then
    [ "$(grep -c "^node node[12]: .*; trunk features [1-9][0-9]* bytes" "$log")" = 2 ] ||
      { cat "$log"; fail "$1: no trunk feature block per node"; }
  fi
}

# A trunk file: the trunk of a 1-rank pretraining run.
run_np 0 pre -c "$WORK/job.ini" --set trunk.source=pretrain --set trunk.layers=1 \
  --set trunk.pretrain_epochs=2 --set ensemble.members=1 || fail "pretraining a trunk file"

modes=(
  "seed|--set ensemble.mode=seed"
  "bootstrap|--set ensemble.mode=bootstrap --set ensemble.combine=vote"
  "snapshot|--set ensemble.mode=snapshot --set ensemble.snapshots=2"
  "trunk|--set trunk.source=file --set trunk.file=$WORK/pre/result.h5 --set trunk.layers=1 --set model.batchnorm=true"
)
for m in "${modes[@]}"; do
  name=${m%%|*}
  read -r -a sets <<<"${m#*|}"
  run_np 0 "$name-1" -c "$WORK/job.ini" "${sets[@]}" || fail "$name on 1 rank"
  run_np 4 "$name-1x4" -c "$WORK/job.ini" "${sets[@]}" || fail "$name on 1 node x 4 ranks"
  run_nodes "$name-2x2" -c "$WORK/job.ini" "${sets[@]}" || fail "$name on 2 nodes x 2 ranks"
  kind=plain
  [ "$name" = trunk ] && kind=trunk
  check_log "$name-2x2" $kind
  check_ranks "$name-2x2/result.h5" $kind || fail "$name: /ranks of the 2-node run"
  same_result "$name-1/result.h5" "$name-2x2/result.h5" || fail "$name: 1 rank and 2 nodes x 2 ranks differ"
  same_result "$name-1x4/result.h5" "$name-2x2/result.h5" || fail "$name: 1 node x 4 and 2 nodes x 2 differ"
  echo "ok: $name: 2 nodes x 2 ranks identical to 1 rank and to 1 node x 4 ranks; one data copy per node"
done
# Convolutional members on small images: augmentation, and a conv trunk file
# whose features each node computes in slices. The second convolution (8 ->
# 8, 3x3, padding 1) runs through Winograd.
$PY "$SRC/tests/integration/make_images.py" img.h5 240 8 0 6
csets=(--set data.path="$WORK/img.h5" --set data.val_fraction=0 --set data.standardize_by=global
  --set "model.layers=conv 8 3 pad 1, bn, relu, maxpool 2, conv 8 3 pad 1, relu, dropout 0.1, flatten, dense 12, relu")
run_np 0 conv-pre -c "$WORK/job.ini" "${csets[@]}" --set trunk.source=pretrain --set trunk.layers=2 \
  --set trunk.pretrain_epochs=1 --set ensemble.members=1 || fail "pretraining a conv trunk file"
for name in conv-augment conv-gen conv-trunk; do
  sets=("${csets[@]}")
  if [ $name = conv-augment ]; then
    sets+=(--set data.augment_crop=1 --set data.augment_flip=true)
  elif [ $name = conv-gen ]; then # the conv generator of a search
    sets+=(--set ensemble.mode=search --set ensemble.combine=select --set data.val_fraction=0.2
      --set model.layers= --set search.conv_blocks=1,3 --set search.conv_width=4,8
      --set search.conv_kernel=3,5 --set search.conv_bn=true,false --set search.pool=max,avg
      --set "search.dense=0 | 12")
  else
    sets+=(--set trunk.source=file --set "trunk.file=$WORK/conv-pre/result.h5" --set trunk.layers=2)
  fi
  run_np 0 "$name-1" -c "$WORK/job.ini" "${sets[@]}" || fail "$name on 1 rank"
  run_nodes "$name-2x2" -c "$WORK/job.ini" "${sets[@]}" || fail "$name on 2 nodes x 2 ranks"
  same_result "$name-1/result.h5" "$name-2x2/result.h5" || fail "$name: 1 rank and 2 nodes x 2 ranks differ"
  echo "ok: $name: 2 nodes x 2 ranks identical to 1 rank"
done
"$ENS" info seed-2x2/result.h5 | grep -q "^  placement     2 nodes (ranks per node: 2 2), data" ||
  { "$ENS" info seed-2x2/result.h5; fail "ens info does not show the 2-node placement"; }
# 1 node x 4 ranks on this machine: one node, four ranks, one copy.
grep -q "^node .*: data read once, $expect_bytes bytes shared by 4 ranks (0-3)" seed-1x4/log ||
  { cat seed-1x4/log; fail "1 node x 4 ranks: no single data copy shared by 4 ranks"; }
if [ "$(nproc)" -lt 4 ]; then
  grep -q "warning: node .* is oversubscribed: 4 ranks x 1 BLAS thread = 4 threads on $(nproc) core" \
    seed-1x4/log || { cat seed-1x4/log; fail "no oversubscription warning for 4 ranks on $(nproc) cores"; }
fi

# A pretrained trunk depends on the rank count only: 4 ranks on 1 or 2 nodes.
pre=(--set trunk.source=pretrain --set trunk.layers=1 --set trunk.pretrain_epochs=2 --set trunk.check_sync=true)
run_np 4 pretrain-1x4 -c "$WORK/job.ini" "${pre[@]}" || fail "pretrained trunk on 1 node x 4"
run_nodes pretrain-2x2 -c "$WORK/job.ini" "${pre[@]}" || fail "pretrained trunk on 2 nodes x 2"
check_log pretrain-2x2 trunk
same_result pretrain-1x4/result.h5 pretrain-2x2/result.h5 ||
  fail "pretrained trunk: 1 node x 4 and 2 nodes x 2 differ"
echo "ok: pretrained trunk: 2 nodes x 2 ranks identical to 1 node x 4 ranks"

# ------------------------------------------------------- c. stop and resume
long=(--set train.epochs=30 --set "model.hidden=128,64")
run_np 0 long-1 -c "$WORK/job.ini" "${long[@]}" || fail "uninterrupted long run"
mkdir -p stop
(cd stop && exec mpirun "${TWO[@]}" "$ENS" train -c "$WORK/job.ini" "${long[@]}" </dev/null) \
  >stop/log 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  grep -q "epoch 1/" stop/log 2>/dev/null && break
  sleep 0.05
done
grep -q "epoch 1/" stop/log || { kill $pid; cat stop/log; fail "no training progress on the two nodes"; }
kill -USR1 $pid
code=0
wait $pid || code=$?
[ $code = 75 ] || { cat stop/log; fail "two nodes: exit code $code after USR1, expected 75"; }
[ ! -e stop/result.h5 ] || fail "a result was written despite the stop"
ls stop/result.h5.ckpt/unit_*.h5 >/dev/null 2>&1 || fail "no checkpoints after the stop"
run_nodes stop -c "$WORK/job.ini" "${long[@]}" --resume || fail "resume on two nodes"
grep -qE "resumed at|not retrained" stop/log || fail "the two-node resume resumed nothing"
same_result long-1/result.h5 stop/result.h5 || fail "stopped and resumed on two nodes differs from 1 rank"
echo "ok: stop (USR1 to mpirun) and --resume on 2 nodes x 2 ranks identical to an uninterrupted run"

# The checks can fail: another seed on the two nodes gives another result.
run_nodes other -c "$WORK/job.ini" --set ensemble.seed=12 || fail "other seed"
if same_result seed-1/result.h5 other/result.h5 >/dev/null; then
  fail "same_result did not notice a different seed"
fi
echo "twonode: all passed"
