# Small results for the libens tests (sourced after lib.bash): make_fixtures
# trains, in the current folder, cls.h5 (batch norm, dropout, temperature),
# params.h5 (combine = params), reg-out.h5 (Gaussian head, dropout, variance
# scale), mse.h5 (MSE head, variance scale), search.h5 (search + select +
# temperature, members of different architectures) and trunk.h5 (a pretrained
# trunk + heads), from data.h5 (3 classes, 12 features) and reg.h5 (2 targets).
make_fixtures() {
  $PY "$SRC/tests/integration/make_data.py" data.h5 1200 12 3
  $PY "$SRC/tests/integration/make_regression.py" reg.h5 1200 2 4
  local common="[train]
epochs = 3
batch = 32
lr = 0.05"
  cat >cls.ini <<INI
[data]
path = data.h5
val_fraction = 0.2
[model]
hidden = 24,16
batchnorm = true
dropout = 0.2
$common
[ensemble]
members = 3
calibrate = temperature
seed = 3
[output]
path = cls.h5
INI
  sed -e 's/^members = 3/members = 3\ncombine = params/' -e 's/cls.h5/params.h5/' -e '/calibrate/d' cls.ini >params.ini
  cat >reg.ini <<INI
[data]
path = reg.h5
val_fraction = 0.2
[model]
hidden = 32,16
batchnorm = false
dropout = 0.1
loss = gaussian
$common
[ensemble]
members = 3
calibrate = temperature
seed = 4
[output]
path = reg-out.h5
INI
  sed -e 's/gaussian/mse/' -e 's/reg-out.h5/mse.h5/' -e 's/dropout = 0.1/dropout = 0/' reg.ini >mse.ini
  cat >search.ini <<INI
[data]
path = data.h5
val_fraction = 0.2
[model]
hidden = 32,16
$common
[ensemble]
members = 5
mode = search
combine = select
calibrate = temperature
seed = 11
[search]
lr = 0.01,0.3
hidden = 32,16 | 48 | 16,16,16
batch = 32,64
dropout = 0,0.3
[output]
path = search.h5
INI
  cat >trunk.ini <<INI
[data]
path = data.h5
[model]
hidden = 32,16,8
batchnorm = true
$common
[ensemble]
members = 3
seed = 5
[trunk]
source = pretrain
layers = 2
pretrain_epochs = 2
[output]
path = trunk.h5
INI
  local j
  for j in cls params reg mse search trunk; do
    "$ENS" train -c $j.ini >$j.log 2>&1 || { cat $j.log; fail "training fixture $j"; }
  done
}
