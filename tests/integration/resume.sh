# Stop and resume: `kill -USR1` on mpirun mid-run makes every rank write
# checkpoints and exit 75; `--resume` then finishes with a result identical
# (ens diff, timing attributes excluded) to an uninterrupted run.
source "$(dirname "$0")/lib.bash"
$PY "$SRC/tests/integration/make_data.py" data.h5 30000 64 5
cat >job.ini <<INI
[data]
path = $WORK/data.h5
[model]
hidden = 256,128
dropout = 0.1
[train]
epochs = 4
batch = 64
[ensemble]
members = 4
[output]
path = result.h5
verbose = 1
INI
stop_resume seed -c "$WORK/job.ini" --set ensemble.mode=seed
stop_resume snapshot -c "$WORK/job.ini" --set ensemble.mode=snapshot --set ensemble.snapshots=2
echo "resume: all passed"
