# Full and read-only file systems, on small tmpfs mounts (issue 11):
#  a. at the start: not enough space for the result and the checkpoints ->
#     exit 2 before training, both numbers in the message, nothing left;
#     a read-only output directory -> exit 1 naming it; a shared-memory
#     file system too small for the node's data block -> exit 2, both numbers;
#  b. during a checkpoint: the disk fills up while training (another
#     process's file), the next checkpoint write fails with "No space left on
#     device" and its path -> exit 2; the previous result and the last good
#     checkpoints are intact, no temporary file is left; after freeing the
#     space --resume gives the uninterrupted result;
#  c. ens predict, ens import csv, ens import idx and ens merge writing to a
#     full disk say so, exit 2, and leave nothing.
# Mounting needs root. The test enters its own mount namespace with unshare,
# so the mounts vanish with it; where unshare cannot make one (in a chroot,
# say) it mounts in the current namespace and unmounts at exit. Without root
# it is reported as skipped.
if [ -z "${ENS_STORAGE_NS:-}" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null &&
  unshare -m true 2>/dev/null; then
  ENS_STORAGE_NS=1 exec unshare -m --propagation private bash "$0" "$@"
fi
source "$(dirname "$0")/lib.bash"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root to mount small file systems"; exit 77; }
mounted=()
if [ -z "${ENS_STORAGE_NS:-}" ]; then
  echo "note: no mount namespace here (unshare -m fails); mounting in this one, unmounted at exit"
  trap 'for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null; done' EXIT
fi

# mount_tmpfs DIR SIZE [ro]: mounts a tmpfs or skips the test (exit 77).
mount_tmpfs() {
  mkdir -p "$1"
  local opts="size=$2"
  [ "${3:-}" = ro ] && opts="$opts,ro"
  if ! mount -t tmpfs -o "$opts" tmpfs "$1" 2>mount.err; then
    echo "SKIP: cannot mount a tmpfs (needs root and mount privileges): $(cat mount.err)"
    exit 77
  fi
  mounted+=("$(readlink -f "$1")")
}

$PY "$SRC/tests/integration/make_data.py" data.h5 8000 24 5
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 512,256
[train]
epochs = 4
batch = 32
[ensemble]
members = 4
[output]
path = mnt/result.h5
verbose = 1
INI

# no_temporaries DIR: no *.tmp* file anywhere below DIR.
no_temporaries() {
  local t
  t=$(find "$1" -name '*.tmp*' 2>/dev/null)
  [ -z "$t" ] || fail "temporary files left: $t"
}

# The uninterrupted reference, on an ordinary directory with the same
# relative output path.
mkdir -p full/mnt
run_np 2 full -c "$WORK/job.ini" || fail "uninterrupted run"

# ---------------------------------------------------------- a. at the start
mount_tmpfs small/mnt 256k
code=$(run2 small -c "$WORK/job.ini")
[ "$code" = 2 ] || { cat small/log; fail "tiny disk: exit $code, expected 2"; }
one_error small "not enough free space: the result \(up to .*\) and the checkpoints \(up to .*\) need .* \([0-9]+ bytes\) in mnt, which has .* \([0-9]+ bytes\) free"
[ -z "$(ls -A small/mnt)" ] || { ls -la small/mnt; fail "files left on the tiny disk"; }
grep -q "epoch 1/" small/log && fail "training started on the tiny disk"

mount_tmpfs ro/mnt 1m ro
code=$(run2 ro -c "$WORK/job.ini")
[ "$code" = 1 ] || { cat ro/log; fail "read-only disk: exit $code, expected 1"; }
one_error ro "\[output\] path: cannot create files in directory 'mnt': Read-only file system"

# Node-shared memory: the file system of Open MPI's shared windows
# (osc_sm_backing_directory, /dev/shm by default) cannot hold the node's
# data block -> exit 2 before training, both numbers and the directory named.
mount_tmpfs shm/fs 256k
code=$(export OMPI_MCA_osc_sm_backing_directory="$WORK/shm/fs"; run2 shm -c "$WORK/job.ini")
[ "$code" = 2 ] || { cat shm/log; fail "small shared-memory file system: exit $code, expected 2"; }
one_error shm "node-shared memory for the input data: [0-9]+ bytes needed on node .*, but .*shm/fs \(where Open MPI places shared windows\) has only [0-9]+ bytes free"
grep -q "epoch 1/" shm/log && fail "training started without room for the node's data"

# ------------------------------------------------ b. during a checkpoint
mount_tmpfs fill/mnt 16m
printf 'an earlier result\n' >fill/mnt/result.h5
sum0=$(md5sum <fill/mnt/result.h5)
mkdir -p fill
(cd fill && exec mpirun -np 2 "$ENS" train -c "$WORK/job.ini" --force) >fill/log 2>&1 &
pid=$!
# After the first epoch's checkpoints, freeze the ranks, let another
# process take every free byte, and let the ranks go on.
for _ in $(seq 1 1500); do
  [ "$(grep -c "epoch 1/" fill/log 2>/dev/null)" -ge 2 ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.02
done
kids=$(pgrep -P $pid || true)
[ -n "$kids" ] || { cat fill/log; fail "training ended before the disk could be filled"; }
kill -STOP $kids
cat /dev/zero >fill/mnt/filler 2>/dev/null || true
kill -CONT $kids
code=0
wait $pid || code=$?
[ "$code" = 2 ] || { cat fill/log; fail "full disk during training: exit $code, expected 2"; }
one_error fill "cannot write checkpoint mnt/result.h5.ckpt/(unit|member)_[0-9]+.h5: No space left on device \(.* needed, .* free\).*kept in mnt/result.h5.ckpt.*--resume"
[ "$(md5sum <fill/mnt/result.h5)" = "$sum0" ] || fail "the earlier result was changed"
no_temporaries fill/mnt
ls fill/mnt/result.h5.ckpt/unit_*.h5 >/dev/null 2>&1 || fail "no checkpoint kept"
for f in fill/mnt/result.h5.ckpt/*.h5; do
  h5dump -H "$f" >/dev/null 2>&1 || fail "damaged checkpoint left: $f"
done
rm fill/mnt/filler
[ "$(run2 fill -c "$WORK/job.ini" --resume --force)" = 0 ] || { cat fill/log; fail "resume after freeing space"; }
grep -q "resumed at" fill/log || fail "no checkpoint was resumed"
same_result full/mnt/result.h5 fill/mnt/result.h5 || fail "resumed result differs"
[ ! -e fill/mnt/result.h5.ckpt ] || fail "checkpoints not removed after success"
echo "ok: resumed after the full disk, result identical"

# --------------------------------- c. predict, import and merge outputs
mount_tmpfs out/mnt 4m
cat /dev/zero >out/mnt/filler 2>/dev/null || true
# expect_full CMD...: exit 2, "No space left on device" with the path.
expect_full() {
  local code=0
  "$@" >out/stdout 2>out/stderr || code=$?
  [ "$code" = 2 ] || { cat out/stdout out/stderr; fail "'$*' exited $code, expected 2"; }
  grep -qE "$(basename "${@: -1}").*No space left on device|not enough free space" out/stderr ||
    { cat out/stderr; fail "'$*': no word of the full disk"; }
  [ "$(wc -l <out/stderr)" -le 3 ] || { cat out/stderr; fail "'$*': message too long"; }
  no_temporaries out/mnt
  echo "ok: exit 2: $(head -c 300 out/stderr)"
}
expect_full "$ENS" predict -m full/mnt/result.h5 -i data.h5 -o out/mnt/p.h5
printf 'a,b,y\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n9,1,x\n' >t.csv
expect_full "$ENS" import csv t.csv --target y -o out/mnt/t.h5
$PY - <<'PY'
import struct
import numpy as np
imgs = np.random.default_rng(0).integers(0, 256, size=(40, 4, 4), dtype=np.uint8)
with open("imgs.idx", "wb") as f:
    f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, 40, 4, 4) + imgs.tobytes())
with open("labels.idx", "wb") as f:
    f.write(struct.pack(">BBBBI", 0, 0, 8, 1, 40) + (np.arange(40) % 3).astype(np.uint8).tobytes())
PY
expect_full "$ENS" import idx --images imgs.idx --labels labels.idx -o out/mnt/i.h5
expect_full "$ENS" merge full/mnt/result.h5 -o out/mnt/m.h5
for o in p t i m; do
  [ ! -e out/mnt/$o.h5 ] || fail "output out/mnt/$o.h5 on a full disk"
done
echo "storage: all passed"
