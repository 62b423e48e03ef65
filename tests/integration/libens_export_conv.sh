# scripts/export_torch.py on the member kinds of the layer table (issue 19,
# item 6): each TorchScript module matches `ens predict` on the test rows
# (max abs difference <= 1e-5 for probabilities, relative <= 1e-5 for means
# and variances) for
#   conv     conv (stride, pad), batch norm over channels, max pooling,
#            dropout, flatten, dense + batch norm; 2-channel (n,C,H,W) images
#            standardized per channel; seed mode, average;
#   wnconv   weight-normalized conv and dense, average pooling, global
#            average pooling; (n,H,W) images standardized globally;
#   wnmlp    a weight-normalized MLP with batch norm and dropout (flat rows);
#   wnparams a weight-normalized conv net, combine = params (/ensemble/params);
#   convreg  an image regression (Gaussian heads, per-feature standardization);
#   convtrunk a pretrained conv trunk (2 blocks of the layer list) + heads;
#   convsearch a search over layer lists, combine = select, temperature;
# and flat (n, C*H*W) rows give the same outputs as image-shaped ones. A
# layer-list kind it does not know is refused by name, and nothing is written.
source "$(dirname "$0")/lib.bash"
MK="$SRC/tests/integration/make_images.py"
$PY "$MK" img2c.h5 160 8 2 1
$PY "$MK" img.h5 160 8 0 2
$PY "$MK" imgreg.h5 160 8 0 3 --regress
$PY "$SRC/tests/integration/make_data.py" data.h5 300 12 3

job() { # name data model-line [section.key = value]...
  local name=$1 data=$2 model=$3 sec l
  shift 3
  {
    for sec in data model train ensemble trunk search; do
      case $sec in
        data) printf '[data]\npath = %s\n' "$data";;
        model) printf '[model]\n%s\n' "$model";;
        train) printf '[train]\nepochs = 2\nbatch = 32\n';;
        ensemble) printf '[ensemble]\nmembers = %s\nseed = 5\n' "${MEMBERS:-2}";;
        *) printf '%s\n' "$@" | grep -q "^$sec\." && printf '[%s]\n' $sec;;
      esac
      for l in "$@"; do case $l in $sec.*) printf '%s\n' "${l#$sec.}";; esac; done
    done
    printf '[output]\npath = %s.h5\n' "$name"
  } >$name.ini
  "$ENS" train -c $name.ini >$name.log 2>&1 || { cat $name.log; fail "training $name"; }
  "$ENS" predict -m $name.h5 -i $data -o p-$name.h5 >/dev/null || fail "ens predict $name"
  $PY "$SRC/scripts/export_torch.py" $name.h5 -o $name.pt >export-$name.log 2>&1 ||
    { cat export-$name.log; fail "export_torch.py $name.h5"; }
}
job conv img2c.h5 "layers = conv 4 3 pad 1, bn, relu, maxpool 2, conv 6 3 stride 2 pad 1, relu, dropout 0.1, flatten, dense 12, bn, relu" \
  "data.standardize_by = channel"
job wnconv img.h5 "layers = conv 4 3, relu, avgpool 2 stride 2, conv 6 3 pad 1, bn, relu, gap, dense 8, relu" \
  "model.weightnorm = true" "data.standardize_by = global"
job wnmlp data.h5 "hidden = 16,8" "model.weightnorm = true" "model.batchnorm = true" "model.dropout = 0.1"
job wnparams img.h5 "layers = conv 4 3 pad 1, bn, relu, maxpool 2, flatten, dense 8, relu" \
  "model.weightnorm = true" "ensemble.combine = params"
job convreg imgreg.h5 "layers = conv 4 3 pad 1, relu, maxpool 2, flatten, dense 8, relu" \
  "train.optimizer = adam" "train.lr = 0.005"
job convtrunk img.h5 "layers = conv 4 3 pad 1, bn, relu, maxpool 2, conv 6 3 pad 1, relu, gap, dense 8, relu" \
  "trunk.source = pretrain" "trunk.layers = 2" "trunk.pretrain_epochs = 1"
MEMBERS=4 job convsearch img.h5 "layers = conv 4 3 pad 1, relu, maxpool 2, flatten, dense 8, relu" \
  "ensemble.mode = search" "ensemble.combine = select" "ensemble.calibrate = temperature" \
  "data.val_fraction = 0.2" \
  "search.layers = conv 4 3 pad 1, relu, gap | conv 6 3, bn, relu, maxpool 2, flatten, dense 8, relu | conv 4 5 pad 2, relu, avgpool 2, flatten"
$PY - <<'PY' || fail "TorchScript differs from ens predict"
import h5py, numpy as np, torch
torch.set_num_threads(1)
for r, data in [("conv", "img2c"), ("wnconv", "img"), ("wnmlp", "data"), ("wnparams", "img"),
                ("convreg", "imgreg"),
                ("convtrunk", "img"), ("convsearch", "img")]:
    m = torch.jit.load(f"{r}.pt")
    x = torch.from_numpy(h5py.File(f"{data}.h5", "r")["test/x"][()].astype(np.float64))
    p = h5py.File(f"p-{r}.h5", "r")
    with torch.no_grad():
        out = m(x)
        flat = m(x.reshape(x.shape[0], -1))
    if isinstance(out, dict):
        for k in ("mean", "var"):
            a, b = out[k].numpy(), p[k][()]
            assert np.array_equal(a, flat[k].numpy()), (r, k, "flat rows differ")
            rel = (np.abs(a - b) / np.abs(b)).max()
            print(f"{r} {k}: max relative difference {rel:.3g} over {a.size} values")
            assert rel <= 1e-5, (r, k, rel)
            assert a.std(axis=0).min() > 1e-3, (r, k, "constant outputs: the test would not see errors")
    else:
        assert torch.equal(out, flat), (r, "flat rows differ")
        d = np.abs(out.numpy() - p["probs"][()]).max()
        print(f"{r} probs: max abs difference {d:.3g} over {out.numel()} values")
        assert d <= 1e-5, (r, d)
        assert out.numpy().std(axis=0).min() > 1e-3, (r, "constant probabilities")
f = h5py.File("convtrunk.h5", "r")
assert f["model"].attrs["trunk_layers"] == 2 and "trunk/params" in f
assert f["members/0"].attrs["weightnorm"] == 0 and h5py.File("wnconv.h5")["members/0"].attrs["weightnorm"] == 1
PY
# A layer-list kind the exporter does not know is refused by name.
cp conv.h5 bad.h5
$PY - <<'PY'
import h5py
with h5py.File("bad.h5", "r+") as f:
    for g in (f["model"], f["members/0"], f["members/1"]):
        k = "layer_list" if g.name == "/model" else "layers"
        g.attrs[k] = "conv 4 3 pad 1, sigmoid, flatten, dense 12"
PY
code=0
$PY "$SRC/scripts/export_torch.py" bad.h5 -o bad.pt 2>err || code=$?
[ $code = 1 ] && grep -q "cannot export layer 'sigmoid'" err || { cat err; fail "unknown layer-list kind not refused (exit $code)"; }
[ ! -e bad.pt ] || fail "bad.pt written"
echo "ok: TorchScript export of conv, weight-normalized, image regression and conv trunk results matches ens predict"
