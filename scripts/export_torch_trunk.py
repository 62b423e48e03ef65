#!/usr/bin/python3
"""Exports a PyTorch trunk to the HDF5 trunk layout that `ens train` reads
with `[trunk] source = file` (and tests/tools/ens-trunk-forward).

Conv trunks: a whole pickled module (torch.save(model, ...)) made of Conv2d,
BatchNorm2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), Flatten, ReLU,
Dropout, Linear (and BatchNorm1d), with --shape C,H,W, becomes a layer list
(/model layer_list, input_channels/height/width): the ens job's [model]
layers must begin with the printed list, [trunk] layers = its blocks (one per
Conv2d/Linear). Any other module is refused by name.

MLP trunks:

The input is what torch.save wrote: the state_dict of an nn.Sequential, or a
whole pickled nn.Sequential, made of blocks
    Linear(in, out) [, BatchNorm1d(out)], ReLU() [, Dropout(p)]
Every block becomes one ens hidden block; dropout has no parameters and is off
in eval mode, so it needs nothing in the file. The output file holds

    /model/hidden     int32 [L]   block widths
    /model            attrs inputs, batchnorm (int), dropout (0)
    /trunk/params     float32     per block: W (out, in) row-major, b (out)
                                  [, gamma (out), beta (out)]
    /trunk/bn_stats   float32     per block with batch norm: running_mean, running_var
    /trunk            attrs layers (L), source "pytorch", origin (input path)

ens evaluates batch norm with eps = 1e-5 (PyTorch's default) and uses the
stored running statistics: the trunk is frozen, as after model.eval().

Note: ens standardizes its inputs with the train split's mean/std unless the
job sets `[data] standardize = false`; the trunk sees those standardized rows.
Set standardize = false when the PyTorch trunk was trained on raw inputs.
"""
import argparse
import sys
from collections import OrderedDict

BN_EPS = 1e-5  # fixed in ens (src/nn/model.c)


class ExportError(Exception):
    """A problem with the input that makes the export impossible."""


def warn(msg):
    print("export_torch_trunk.py: warning: " + msg, file=sys.stderr)


def load_object(path):
    import torch
    try:
        # torch 1.13 has no weights_only default; newer versions need False
        # to unpickle whole modules.
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except TypeError:
            obj = torch.load(path, map_location="cpu")
    except Exception as e:  # pickle, zip or I/O errors
        raise ExportError(f"{path}: cannot load with torch.load: {e}") from e
    return obj


def blocks_from_module(module, path):
    """Walks an nn.Module (nn.Sequential, possibly nested) and returns the
    blocks as dicts. Module types are known here, so eps/affine/activation
    are checked exactly."""
    import torch.nn as nn
    leaves = [(name, m) for name, m in module.named_modules() if len(list(m.children())) == 0]
    blocks = []
    cur = None
    expect = "linear"  # what may come next
    for name, m in leaves:
        label = f"{path}: module '{name}' ({type(m).__name__})"
        if isinstance(m, nn.Linear):
            if cur is not None and not cur["relu"]:
                raise ExportError(f"{label}: Linear follows a Linear/BatchNorm1d without a ReLU "
                                  "between them (blocks must be Linear [, BatchNorm1d], ReLU "
                                  "[, Dropout])")
            if m.bias is None:
                raise ExportError(f"{label}: Linear without bias; ens dense layers have a bias "
                                  "(construct it with bias=True)")
            cur = {"name": name, "weight": m.weight.detach(), "bias": m.bias.detach(),
                   "bn": None, "relu": False}
            blocks.append(cur)
            expect = "bn_or_relu"
        elif isinstance(m, nn.BatchNorm1d):
            if cur is None or expect != "bn_or_relu":
                raise ExportError(f"{label}: BatchNorm1d must directly follow a Linear")
            if abs(m.eps - BN_EPS) > 1e-12:
                raise ExportError(f"{label}: eps = {m.eps:g}, but ens uses {BN_EPS:g}; the "
                                  "exported trunk would compute different features")
            if not m.track_running_stats or m.running_mean is None:
                raise ExportError(f"{label}: track_running_stats=False; ens needs running "
                                  "statistics for a frozen trunk")
            bn = {"running_mean": m.running_mean.detach(), "running_var": m.running_var.detach()}
            if m.affine:
                bn["weight"] = m.weight.detach()
                bn["bias"] = m.bias.detach()
            cur["bn"] = bn
            expect = "relu"
        elif isinstance(m, nn.ReLU):
            if cur is None or cur["relu"]:
                raise ExportError(f"{label}: ReLU must follow a Linear or BatchNorm1d")
            cur["relu"] = True
            expect = "dropout_or_linear"
        elif isinstance(m, nn.Dropout):
            if cur is None or not cur["relu"] or expect != "dropout_or_linear":
                raise ExportError(f"{label}: Dropout must directly follow a ReLU")
            expect = "linear"
        elif isinstance(m, (nn.Identity, nn.Flatten)):
            continue
        else:
            raise ExportError(f"{label}: unsupported module; a trunk is made of Linear, "
                              "BatchNorm1d, ReLU and Dropout")
    return blocks


IMAGE_TYPES = ("Conv2d", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d")
LIST_KINDS = ("Conv2d, BatchNorm2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), Flatten, ReLU, "
              "Dropout, Linear (and BatchNorm1d)")


def is_image_model(module):
    return any(type(m).__name__ in IMAGE_TYPES for m in module.modules())


def pair(v, what, label):
    """A square kernel/stride/padding: an int or an equal pair."""
    if isinstance(v, str):
        raise ExportError(f"{label}: {what} = '{v}': ens needs an explicit number")
    if isinstance(v, (tuple, list)):
        if len(v) != 2 or v[0] != v[1]:
            raise ExportError(f"{label}: {what} = {tuple(v)}: ens takes square windows "
                              "(equal height and width)")
        v = v[0]
    return int(v)


def layer_list_from_module(module, path, shape, layers=None):
    """Walks a conv model's leaf modules in order with the image shape of an
    input row (C, H, W) and returns (specs, params, stats, blocks, shape): the
    canonical ens layer-list text of each layer (what src/nn/layerlist.c's
    ens_layers_format writes), the flat parameters and statistics in ens's
    layout, and the number of blocks (one per Conv2d/Linear)."""
    import numpy as np
    import torch.nn as nn
    c, h, w = shape
    image = True
    specs, params, stats = [], [], []
    blocks = 0
    last_weight = None  # index in specs of the last Conv2d/Linear
    leaves = [(name, m) for name, m in module.named_modules() if len(list(m.children())) == 0]

    def arr(t):
        return t.detach().cpu().double().numpy()

    for name, m in leaves:
        kind = type(m).__name__
        label = f"{path}: module '{name}' ({kind})"
        where = f"input {(c, h, w) if image else (c,)}"
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if layers is not None and blocks == layers:
                break  # the first `layers` blocks only
            blocks += 1
            last_weight = len(specs)
        if isinstance(m, nn.Conv2d):
            if not image:
                raise ExportError(f"{label}: on a flat {where}: a Conv2d needs images")
            k = pair(m.kernel_size, "kernel_size", label)
            st = pair(m.stride, "stride", label)
            pd = pair(m.padding, "padding", label)
            if pair(m.dilation, "dilation", label) != 1 or m.groups != 1:
                raise ExportError(f"{label}: dilation {m.dilation}, groups {m.groups}: ens "
                                  "convolutions have dilation 1 and groups 1")
            if m.padding_mode != "zeros":
                raise ExportError(f"{label}: padding_mode = '{m.padding_mode}': ens pads with "
                                  "zeros")
            if m.in_channels != c:
                raise ExportError(f"{label}: takes {m.in_channels} channels, {where}")
            if k > h + 2 * pd or k > w + 2 * pd:
                raise ExportError(f"{label}: a {k}x{k} kernel is larger than the padded {where}")
            o = m.out_channels
            params += [arr(m.weight).reshape(-1),
                       arr(m.bias) if m.bias is not None else np.zeros(o)]
            specs.append(f"conv {o} {k} stride {st} pad {pd}")
            c, h, w = o, (h + 2 * pd - k) // st + 1, (w + 2 * pd - k) // st + 1
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            want_image = isinstance(m, nn.BatchNorm2d)
            if want_image != image:
                raise ExportError(f"{label}: on {'a flat' if image is False else 'an image'} "
                                  f"{where}")
            if m.num_features != c:
                raise ExportError(f"{label}: has {m.num_features} features, {where}")
            if abs(m.eps - BN_EPS) > 1e-12:
                raise ExportError(f"{label}: eps = {m.eps:g}, but ens uses {BN_EPS:g}")
            if not m.track_running_stats or m.running_mean is None:
                raise ExportError(f"{label}: track_running_stats=False; ens needs running "
                                  "statistics for a frozen trunk")
            g = arr(m.weight) if m.affine else np.ones(c)
            b = arr(m.bias) if m.affine else np.zeros(c)
            rv = arr(m.running_var)
            if np.any(rv < 0) or not np.all(np.isfinite(rv)):
                raise ExportError(f"{label}: running_var has negative or non-finite values")
            params += [g, b]
            stats += [arr(m.running_mean), rv]
            specs.append("bn")
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            if not image:
                raise ExportError(f"{label}: on a flat {where}")
            k = pair(m.kernel_size, "kernel_size", label)
            st = pair(m.stride if m.stride is not None else m.kernel_size, "stride", label)
            if pair(m.padding, "padding", label) != 0 or m.ceil_mode:
                raise ExportError(f"{label}: padding {m.padding}, ceil_mode {m.ceil_mode}: ens "
                                  "pools without padding, windows tiling the input")
            if isinstance(m, nn.MaxPool2d) and (pair(m.dilation, "dilation", label) != 1 or
                                                m.return_indices):
                raise ExportError(f"{label}: dilation or return_indices are not supported")
            if isinstance(m, nn.AvgPool2d) and m.divisor_override is not None:
                raise ExportError(f"{label}: divisor_override is not supported")
            if k > h or k > w or (h - k) % st or (w - k) % st:
                raise ExportError(f"{label}: {k}x{k} windows every {st} pixels do not tile the "
                                  f"{where} (ens refuses windows that drop rows or columns)")
            specs.append(f"{'maxpool' if isinstance(m, nn.MaxPool2d) else 'avgpool'} {k} "
                         f"stride {st}")
            h, w = (h - k) // st + 1, (w - k) // st + 1
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            out = m.output_size
            if out not in (1, (1, 1), [1, 1]):
                raise ExportError(f"{label}: output_size = {out}: ens has global average "
                                  "pooling, AdaptiveAvgPool2d(1), only")
            if not image:
                raise ExportError(f"{label}: on a flat {where}")
            specs.append("gap")
            image, h, w = False, 1, 1
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ExportError(f"{label}: start_dim {m.start_dim}, end_dim {m.end_dim}: ens "
                                  "flattens everything but the batch dimension")
            specs.append("flatten")
            c, h, w, image = c * h * w, 1, 1, False
        elif isinstance(m, nn.ReLU):
            specs.append("relu")
        elif isinstance(m, nn.Dropout) and type(m) is nn.Dropout:
            if not 0 <= m.p < 1:
                raise ExportError(f"{label}: p = {m.p}")
            specs.append("dropout %g" % float(np.float32(m.p)))
        elif isinstance(m, nn.Linear):
            if image:
                raise ExportError(f"{label}: on an image {where}: add Flatten before it")
            if m.in_features != c:
                raise ExportError(f"{label}: takes {m.in_features} features, {where}")
            params += [arr(m.weight).reshape(-1),
                       arr(m.bias) if m.bias is not None else np.zeros(m.out_features)]
            specs.append(f"dense {m.out_features}")
            c = m.out_features
        elif isinstance(m, nn.Identity):
            continue
        else:
            raise ExportError(f"{label}: unsupported module '{kind}'; a conv trunk is made of "
                              f"{LIST_KINDS}")
    if blocks == 0:
        raise ExportError(f"{path}: no Conv2d or Linear layer found")
    if specs[-1].startswith("dense"):
        raise ExportError(f"{path}: the last layer is a Linear without a ReLU after it: it looks "
                          "like a classifier output layer, not a trunk; export the blocks "
                          f"before it (--layers {blocks - 1})")
    params = np.concatenate(params).astype(np.float32)
    stats = (np.concatenate(stats) if stats else np.zeros(0)).astype(np.float32)
    if not np.all(np.isfinite(params)) or not np.all(np.isfinite(stats)):
        raise ExportError(f"{path}: parameters contain NaN or infinite values")
    return specs, params, stats, blocks, (c, h, w, image)


def write_atomically(out, fill):
    """Writes the HDF5 file out through fill(f) on out.tmp, then renames it
    over out: missing folders of out are created, and a failed write leaves
    neither out.tmp nor a partial out behind (OSError names out)."""
    import h5py
    import os
    tmp = out + ".tmp"
    try:
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        with h5py.File(tmp, "w") as f:
            fill(f)
        os.replace(tmp, out)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OSError(f"{out}: cannot write: {e}") from e
        raise


def write_layer_list_trunk(out, origin, shape, specs, blocks, params, stats):
    """The trunk file of a layer-list model: what ens writes for one
    (src/ensemble/trunk.c ens_trunk_write_layer_list)."""
    import numpy as np
    c, h, w = shape

    def fill(f):
        f.create_dataset("model/hidden", data=np.zeros(blocks, dtype=np.int32))
        m = f["model"]
        m.attrs["inputs"] = np.int64(c * h * w)
        m.attrs["batchnorm"] = np.int64(1)  # the [model] default a layer-list job keeps
        m.attrs["dropout"] = np.float64(0.0)
        m.attrs["layer_list"] = np.bytes_(", ".join(specs).encode())
        m.attrs["input_channels"] = np.int64(c)
        m.attrs["input_height"] = np.int64(h)
        m.attrs["input_width"] = np.int64(w)
        f.create_dataset("trunk/params", data=params, dtype=np.float32)
        f.create_dataset("trunk/bn_stats", data=stats, dtype=np.float32)
        t = f["trunk"]
        t.attrs["layers"] = np.int64(blocks)
        t.attrs["source"] = np.bytes_(b"pytorch")
        t.attrs["origin"] = np.bytes_(origin.encode())

    write_atomically(out, fill)


def split_key(key):
    prefix, _, leaf = key.rpartition(".")
    return prefix, leaf


def blocks_from_state_dict(sd, path):
    """Groups a state dict's tensors by module prefix (in stored order) and
    reads Linear / BatchNorm1d modules from their parameter names and shapes.
    ReLU and Dropout have no parameters, so they are checked, as far as
    possible, from the gaps between nn.Sequential indices."""
    import torch
    mods = OrderedDict()
    for key, val in sd.items():
        if not isinstance(val, torch.Tensor):
            raise ExportError(f"{path}: entry '{key}' is a {type(val).__name__}, not a tensor: "
                              "not a state dict")
        prefix, leaf = split_key(key)
        mods.setdefault(prefix, {})[leaf] = val
    if not mods:
        raise ExportError(f"{path}: the state dict is empty")
    blocks = []
    last_index = None  # (parent, index) of the previous module
    for prefix, t in mods.items():
        leaves = set(t)
        parent, _, idx = prefix.rpartition(".")
        index = (parent, int(idx)) if idx.isdigit() else None
        if "running_mean" in leaves or "running_var" in leaves:
            kind = "batchnorm"
        elif "weight" in leaves and t["weight"].dim() == 2:
            kind = "linear"
        else:
            raise ExportError(f"{path}: module '{prefix}' has tensors {sorted(leaves)}: neither "
                              "Linear (2-d weight, bias) nor BatchNorm1d (running_mean, "
                              "running_var, weight, bias)")
        gap = (index[1] - last_index[1]
               if index and last_index and index[0] == last_index[0] else None)
        if kind == "linear":
            unknown = leaves - {"weight", "bias"}
            if unknown:
                raise ExportError(f"{path}: Linear '{prefix}' has unexpected tensors "
                                  f"{sorted(unknown)}")
            if "bias" not in leaves:
                raise ExportError(f"{path}: Linear '{prefix}' has no bias; ens dense layers "
                                  "have a bias (construct it with bias=True)")
            if blocks and gap is not None:
                # previous module at i: ReLU at i+1 [, Dropout at i+2]
                if gap < 2:
                    raise ExportError(f"{path}: Linear '{prefix}' directly follows module "
                                      f"'{blocks[-1]['last']}': no ReLU between them")
                if gap > 3:
                    warn(f"{gap - 1} parameterless modules between '{blocks[-1]['last']}' and "
                         f"'{prefix}'; assuming ReLU [, Dropout] (a state dict cannot tell; "
                         "pass the pickled module to check)")
            blocks.append({"name": prefix, "last": prefix, "weight": t["weight"],
                           "bias": t["bias"], "bn": None, "relu": True})
        else:
            if not blocks or blocks[-1]["bn"] is not None or (gap is not None and gap != 1):
                raise ExportError(f"{path}: BatchNorm1d '{prefix}' does not directly follow a "
                                  "Linear")
            unknown = leaves - {"weight", "bias", "running_mean", "running_var",
                                "num_batches_tracked"}
            if unknown:
                raise ExportError(f"{path}: BatchNorm1d '{prefix}' has unexpected tensors "
                                  f"{sorted(unknown)}")
            if not {"running_mean", "running_var"} <= leaves:
                raise ExportError(f"{path}: BatchNorm1d '{prefix}' lacks running_mean or "
                                  "running_var")
            if ("weight" in leaves) != ("bias" in leaves):
                raise ExportError(f"{path}: BatchNorm1d '{prefix}' has only one of weight/bias")
            bn = {k: t[k] for k in ("weight", "bias", "running_mean", "running_var") if k in t}
            blocks[-1]["bn"] = bn
            blocks[-1]["last"] = prefix
        last_index = index
    warn(f"{path} is a state dict: assuming every Linear, the last one ('{blocks[-1]['name']}') "
         f"included, is followed by a ReLU, and BatchNorm1d eps = {BN_EPS:g} (a state dict "
         "stores neither); pass --layers to drop a classifier layer, or save the whole module "
         "to have this checked")
    return blocks


def to_layout(blocks, path, inputs_expected=None, layers=None):
    """Checks shapes and returns (inputs, widths, batchnorm, params, stats)."""
    import numpy as np
    if not blocks:
        raise ExportError(f"{path}: no Linear layer found")
    if layers is not None:
        if layers < 1 or layers > len(blocks):
            raise ExportError(f"--layers {layers}: the model has {len(blocks)} block(s)")
        blocks = blocks[:layers]
    if not blocks[-1]["relu"]:
        raise ExportError(f"{path}: the last Linear ('{blocks[-1]['name']}') has no ReLU after "
                          "it: it looks like a classifier output layer, not a trunk block; "
                          f"export the hidden blocks only (--layers {len(blocks) - 1})")
    with_bn = [b["bn"] is not None for b in blocks]
    if any(with_bn) and not all(with_bn):
        names = [b["name"] for b, w in zip(blocks, with_bn) if not w]
        raise ExportError(f"{path}: batch norm in some blocks but not in {names}; ens uses one "
                          "batchnorm setting for all blocks")
    batchnorm = all(with_bn)
    params, stats, widths = [], [], []
    width = None
    for i, b in enumerate(blocks):
        w = b["weight"].detach().cpu().double().numpy()
        bias = b["bias"].detach().cpu().double().numpy()
        out, inn = w.shape
        where = f"{path}: block {i} (Linear '{b['name']}')"
        if width is not None and inn != width:
            raise ExportError(f"{where}: weight is ({out}, {inn}) but the previous block "
                              f"outputs {width} features")
        if bias.shape != (out,):
            raise ExportError(f"{where}: bias has shape {tuple(bias.shape)}, expected ({out},)")
        if i == 0 and inputs_expected is not None and inn != inputs_expected:
            raise ExportError(f"{where}: takes {inn} inputs, but --inputs {inputs_expected} "
                              "was given")
        params += [w.reshape(-1), bias]
        if b["bn"] is not None:
            bn = b["bn"]
            g = bn.get("weight")
            be = bn.get("bias")
            if g is None:
                warn(f"{where}: BatchNorm1d without affine parameters; exported as "
                     "gamma = 1, beta = 0 (equivalent)")
                g = np.ones(out)
                be = np.zeros(out)
            else:
                g = g.detach().cpu().double().numpy()
                be = be.detach().cpu().double().numpy()
            rm = bn["running_mean"].detach().cpu().double().numpy()
            rv = bn["running_var"].detach().cpu().double().numpy()
            for nm, v in (("weight", g), ("bias", be), ("running_mean", rm), ("running_var", rv)):
                if v.shape != (out,):
                    raise ExportError(f"{where}: BatchNorm1d {nm} has shape {tuple(v.shape)}, "
                                      f"expected ({out},) to match the Linear")
            if np.any(rv < 0) or not np.all(np.isfinite(rv)):
                raise ExportError(f"{where}: BatchNorm1d running_var has negative or "
                                  "non-finite values")
            params += [g, be]
            stats += [rm, rv]
        widths.append(out)
        width = out
    params = np.concatenate(params).astype(np.float32)
    stats = (np.concatenate(stats) if stats else np.zeros(0)).astype(np.float32)
    if not np.all(np.isfinite(params)) or not np.all(np.isfinite(stats)):
        raise ExportError(f"{path}: parameters contain NaN or infinite values")
    inputs = int(blocks[0]["weight"].shape[1])
    return inputs, widths, batchnorm, params, stats


def write_trunk(out, origin, inputs, widths, batchnorm, params, stats):
    import numpy as np

    def fill(f):
        f.create_dataset("model/hidden", data=np.asarray(widths, dtype=np.int32))
        m = f["model"]
        m.attrs["inputs"] = np.int64(inputs)
        m.attrs["batchnorm"] = np.int64(1 if batchnorm else 0)
        m.attrs["dropout"] = np.float64(0.0)
        f.create_dataset("trunk/params", data=params, dtype=np.float32)
        f.create_dataset("trunk/bn_stats", data=stats, dtype=np.float32)
        t = f["trunk"]
        t.attrs["layers"] = np.int64(len(widths))
        # fixed-length strings: ens reads only those
        t.attrs["source"] = np.bytes_(b"pytorch")
        t.attrs["origin"] = np.bytes_(origin.encode())

    write_atomically(out, fill)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="export_torch_trunk.py",
        description="Export a PyTorch MLP trunk (nn.Sequential of Linear [, BatchNorm1d], "
                    "ReLU [, Dropout] blocks) to the HDF5 trunk layout read by "
                    "`ens train` with [trunk] source = file.",
        epilog="The ens job must match the trunk: [model] hidden starts with the exported "
               "widths, [model] batchnorm equals the trunk's, [trunk] layers <= the exported "
               "blocks, and the data has as many features as the first Linear's inputs. "
               "ens feeds the trunk standardized inputs unless [data] standardize = false.")
    ap.add_argument("state_dict", help="file written by torch.save: a state_dict of an "
                    "nn.Sequential, or the whole pickled nn.Sequential")
    ap.add_argument("out", help="HDF5 file to write (replaced atomically)")
    ap.add_argument("--inputs", type=int, metavar="D",
                    help="expected input width; fail unless the first Linear takes D inputs")
    ap.add_argument("--shape", metavar="C,H,W",
                    help="image shape of an input row; required for a conv trunk (a pickled "
                    "module with Conv2d, BatchNorm2d, MaxPool2d, AvgPool2d, "
                    "AdaptiveAvgPool2d(1), Flatten, ReLU, Dropout, Linear)")
    ap.add_argument("--layers", type=int, metavar="L",
                    help="export only the first L blocks (e.g. to drop the blocks after the "
                    "trunk); default: all")
    args = ap.parse_args(argv)
    try:
        import torch  # noqa: F401
        import torch.nn as nn
    except ImportError as e:
        print(f"export_torch_trunk.py: cannot import torch ({e}); install python3-torch",
              file=sys.stderr)
        return 1
    try:
        obj = load_object(args.state_dict)
        if isinstance(obj, nn.Module) and is_image_model(obj):
            if not args.shape:
                raise ExportError(f"{args.state_dict}: a conv trunk needs the image shape of "
                                  "an input row: --shape C,H,W (e.g. --shape 1,28,28)")
            try:
                shape = tuple(int(v) for v in args.shape.split(","))
                assert len(shape) == 3 and min(shape) >= 1
            except (ValueError, AssertionError):
                raise ExportError(f"--shape {args.shape}: expected C,H,W, three integers >= 1")
            specs, params, stats, blocks, out_shape = layer_list_from_module(
                obj, args.state_dict, shape, args.layers)
            write_layer_list_trunk(args.out, args.state_dict, shape, specs, blocks, params, stats)
            c, h, w, image = out_shape
            print(f"{args.out}: conv trunk on {shape} images, {blocks} block(s), "
                  f"{params.size} parameters, {stats.size} statistics, features "
                  f"{(c, h, w) if image else (c,)}")
            print(f"layers = {', '.join(specs)}")
            return 0
        if isinstance(obj, dict) and any(getattr(v, "dim", lambda: 0)() == 4 for v in obj.values()):
            raise ExportError(f"{args.state_dict}: a state dict with 4-d (convolution) weights: "
                              "a state dict cannot tell the pooling and flatten layers between "
                              "them; save the whole module (torch.save(model, ...)) and pass "
                              "--shape C,H,W")
        if isinstance(obj, nn.Module):
            blocks = blocks_from_module(obj, args.state_dict)
        elif isinstance(obj, dict):
            for k in ("state_dict", "model_state_dict"):
                if k in obj and isinstance(obj[k], dict):
                    warn(f"{args.state_dict}: using the '{k}' entry of a checkpoint dict")
                    obj = obj[k]
                    break
            blocks = blocks_from_state_dict(obj, args.state_dict)
        else:
            raise ExportError(f"{args.state_dict}: holds a {type(obj).__name__}, expected a "
                              "state dict or an nn.Sequential")
        inputs, widths, bn, params, stats = to_layout(blocks, args.state_dict, args.inputs,
                                                      args.layers)
        write_trunk(args.out, args.state_dict, inputs, widths, bn, params, stats)
    except ExportError as e:
        print(f"export_torch_trunk.py: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"export_torch_trunk.py: error: {e}", file=sys.stderr)
        return 1
    arch = "-".join(str(w) for w in [inputs] + widths)
    print(f"{args.out}: trunk {arch}{' with' if bn else ' without'} batch norm, "
          f"{len(widths)} block(s), {params.size} parameters, {stats.size} statistics")
    return 0


if __name__ == "__main__":
    sys.exit(main())
