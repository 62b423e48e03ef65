#!/usr/bin/python3
"""Exports an ens result file as one TorchScript module of the whole
ensemble: input standardization, the shared trunk, every member, the combine
rule and the stored calibration.

    scripts/export_torch.py RESULT.h5 -o MODEL.pt [--rule average|vote|params|select]
                            [--no-calibration]

The module takes raw rows, (n, features) or (n, *input shape), and returns the
probabilities (n, C) for a classification result, or a dict with "mean" and
"var" (n, T) for a regression result (original units of y), as `ens predict`
writes them: networks run in float32 like ens, member sums, calibration and
variance mixtures in float64 like ens. Members may be MLPs or layer-list
networks (conv, batch norm per feature or channel, max/avg/global average
pooling, flatten, relu, dropout, dense), weight-normalized or not, after a
shared trunk or not; image results take (n, C*H*W), (n, H, W) or (n, C, H, W)
rows. Layers it does not know are refused by name. MC-dropout is not
exported (the module is deterministic: dropout is the identity).

Exit codes: 0 written, 1 input or usage error (the message names the file and
the dataset), 2 runtime failure. Nothing is left behind on failure.

build(path, rule=None, calibrate=True) returns the eager nn.Module (used by
the tests and scripts/bench_infer.py)."""
import argparse
import configparser
import os
import re
import sys
from typing import Dict, List

import numpy as np

RULES = ("average", "vote", "params", "select")
# Kinds of /model layers (the description ens writes) and of a layer list.
KNOWN_LAYERS = ("dense", "wndense", "conv", "wnconv", "batchnorm", "relu", "dropout", "maxpool",
                "avgpool", "gap", "flatten")
LIST_KINDS = ("dense", "conv", "bn", "relu", "dropout", "maxpool", "avgpool", "gap", "flatten")
VAR_FLOOR = 1e-6  # ENS_VAR_FLOOR, in the standardized units of y
SOFTPLUS_LINEAR = 20.0
BN_EPS = 1e-5
CAL_FLOOR = 1e-12


class ExportError(Exception):
    """An input the exporter cannot use; the message names the file and dataset."""


def _torch():
    import torch  # imported late so --help and input errors need no torch
    return torch


def _read(f, path, name):
    if name not in f:
        raise ExportError(f"{path}: dataset {name} is missing")
    return f[name][()]


def _attr(obj, key, path, where):
    if key not in obj.attrs:
        raise ExportError(f"{path}: {where} has no attribute '{key}' (not an ens result file?)")
    v = obj.attrs[key]
    return v.decode() if isinstance(v, bytes) else v


def _as_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def _hidden_list(v):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        return [int(t) for t in re.split(r"[,\s]+", v.strip()) if t]
    return [int(t) for t in np.atleast_1d(v)]


def _parse_int(word, lo, item, path):
    try:
        v = int(word)
    except ValueError:
        v = lo - 1
    if v < lo:
        raise ExportError(f"{path}: layer list item '{item}': '{word}' is not an integer >= {lo}")
    return v


def _parse_layers(text, path, where):
    """The layer-list syntax of src/nn/layerlist.c ('conv 32 3 pad 1, bn, relu,
    maxpool 2, flatten, dense 128, relu') -> specs [(kind, n, k, stride, pad, block)];
    a block starts at each weight layer after the first."""
    specs, weights, block = [], 0, 0
    for item in text.split(","):
        w = item.split()
        if not w:
            raise ExportError(f"{path}: layer list '{text}' has an empty item")
        kind, n, k, stride, pad = w[0].lower(), 0, 0, 1, 0
        if kind in ("dense", "linear") and len(w) == 2:
            kind, n = "dense", _parse_int(w[1], 1, item, path)
        elif kind == "conv" and len(w) >= 3 and len(w) % 2 == 1:
            n, k = _parse_int(w[1], 1, item, path), _parse_int(w[2], 1, item, path)
            for i in range(3, len(w), 2):
                if w[i].lower() == "stride":
                    stride = _parse_int(w[i + 1], 1, item, path)
                elif w[i].lower() == "pad":
                    pad = _parse_int(w[i + 1], 0, item, path)
                else:
                    raise ExportError(f"{path}: layer list item '{item.strip()}': unknown word '{w[i]}'")
        elif kind in ("maxpool", "avgpool") and len(w) in (2, 4):
            k = stride = _parse_int(w[1], 1, item, path)
            if len(w) == 4:
                if w[2].lower() != "stride":
                    raise ExportError(f"{path}: layer list item '{item.strip()}': expected 'stride S'")
                stride = _parse_int(w[3], 1, item, path)
        elif kind in ("bn", "batchnorm") and len(w) == 1:
            kind = "batchnorm"
        elif kind in ("gap", "globalavgpool") and len(w) == 1:
            kind = "gap"
        elif kind in ("relu", "flatten") and len(w) == 1:
            pass
        elif kind == "dropout" and len(w) == 2:
            pass  # the identity at inference (MC-dropout is not exported)
        else:
            raise ExportError(f"{path}: cannot export layer '{w[0]}' (item '{item.strip()}' of "
                              f"{where} = '{text}'): export_torch.py knows "
                              f"{', '.join(LIST_KINDS)}")
        if kind in ("dense", "conv"):
            if weights > 0:
                block += 1
            weights += 1
        specs.append((kind, n, k, stride, pad, block))
    return specs, block + 1


def _mlp_specs(hidden, bn):
    """The MLP form of src/nn/model.c: dense, [batchnorm], relu per block
    (dropout is the identity at inference)."""
    specs = []
    for b, h in enumerate(hidden):
        specs.append(("dense", h, 0, 1, 0, b))
        if bn:
            specs.append(("batchnorm", 0, 0, 1, 0, b))
        specs.append(("relu", 0, 0, 1, 0, b))
    return specs, len(hidden)


class _Net:
    """One network's architecture: specs, block count, input shape, weightnorm."""

    def __init__(self, specs, n_hidden, shape, wn):
        self.specs, self.n_hidden, self.shape, self.wn = specs, n_hidden, shape, wn


def _layers(net, first, last, with_output, outputs, path):
    """Blocks [first, last) (+ the output dense) as (kind, spec, in shape, out
    shape), shapes inferred from the network's input like build_layers in
    src/nn/model.c. A shape is (C, H, W) for an image, (n,) for a flat row."""
    specs = list(net.specs)
    if with_output:
        specs.append(("dense", outputs, 0, 1, 0, net.n_hidden))
    cur, out = net.shape, []
    for i, sp in enumerate(specs):
        kind, n, k, stride, pad, block = sp
        img = len(cur) == 3
        where = f"{path}: layer {i + 1} ({kind}) on input shape {cur}"
        if kind == "dense":
            if img:
                raise ExportError(f"{where}: a dense layer needs a flat input")
            nxt = (n,)
        elif kind in ("conv", "maxpool", "avgpool"):
            if not img:
                raise ExportError(f"{where}: needs an image input")
            C, H, W = cur
            if k > H + 2 * pad or k > W + 2 * pad:
                raise ExportError(f"{where}: the window is larger than the input")
            Ho, Wo = (H + 2 * pad - k) // stride + 1, (W + 2 * pad - k) // stride + 1
            nxt = (n if kind == "conv" else C, Ho, Wo)
        elif kind == "gap":
            if not img:
                raise ExportError(f"{where}: needs an image input")
            nxt = (cur[0],)
        elif kind == "flatten":
            nxt = (int(np.prod(cur)),)
        else:
            nxt = cur
        if first <= block and (block < last or i == len(net.specs)):
            out.append((kind, sp, cur, nxt))
        cur = nxt
    return out


def _wn(v, g):
    """Effective weights of weightnorm.c: per row, one float scale g / ||v||
    (norm in double), times v in float."""
    v2 = v.reshape(v.shape[0], -1)
    s = np.sqrt((v2.astype(np.float64) ** 2).sum(axis=1))
    scale = np.where(s > 0, g.astype(np.float64) / np.where(s > 0, s, 1.0), 0.0).astype(np.float32)
    return (scale[:, None] * v2).astype(np.float32).reshape(v.shape)


def _sequential(net, first, last, with_output, outputs, params, stats, path, pname):
    """nn.Sequential of a network's blocks over its flat parameter (and
    statistics) vectors, in the layouts of src/nn/layers.c and weightnorm.c:
    dense W (out, in) then b; conv W (O, C, k, k) then b; weight-normalized
    v, g (per output unit), b; batch norm gamma, beta (params) and running
    mean, var (stats) per feature or channel."""
    torch = _torch()
    nn = torch.nn
    layers = _layers(net, first, last, with_output, outputs, path)
    need_p = need_s = 0
    for kind, sp, si, so in layers:
        if kind == "dense":
            need_p += so[0] * si[0] + so[0] + (so[0] if net.wn else 0)
        elif kind == "conv":
            need_p += sp[1] * si[0] * sp[2] * sp[2] + sp[1] + (sp[1] if net.wn else 0)
        elif kind == "batchnorm":
            need_p += 2 * si[0]
            need_s += 2 * si[0]
    if params.size != need_p or stats.size != need_s:
        raise ExportError(f"{path}: {pname} holds {params.size} parameters and {stats.size} "
                          f"statistics; the stored architecture needs {need_p} and {need_s}")
    mods, po, so_ = [], 0, 0
    if first == 0 and len(net.shape) == 3:
        mods.append(nn.Unflatten(1, net.shape))  # standardized rows -> NCHW
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731

    def weights(shape):
        nonlocal po
        rows, size = shape[0], int(np.prod(shape))
        w = params[po:po + size].reshape(shape)
        po += size
        if net.wn:
            w = _wn(w, params[po:po + rows])
            po += rows
        b = params[po:po + rows]
        po += rows
        return t(w), t(b)

    for kind, sp, si, sout in layers:
        if kind == "dense":
            lin = nn.Linear(si[0], sout[0])
            lin.weight.data, lin.bias.data = weights((sout[0], si[0]))
            mods.append(lin)
        elif kind == "conv":
            conv = nn.Conv2d(si[0], sp[1], sp[2], stride=sp[3], padding=sp[4])
            conv.weight.data, conv.bias.data = weights((sp[1], si[0], sp[2], sp[2]))
            mods.append(conv)
        elif kind == "batchnorm":
            c = si[0]
            bn = (nn.BatchNorm2d if len(si) == 3 else nn.BatchNorm1d)(c, eps=BN_EPS)
            bn.weight.data, bn.bias.data = t(params[po:po + c]), t(params[po + c:po + 2 * c])
            po += 2 * c
            bn.running_mean, bn.running_var = t(stats[so_:so_ + c]), t(stats[so_ + c:so_ + 2 * c])
            so_ += 2 * c
            mods.append(bn)
        elif kind == "relu":
            mods.append(nn.ReLU())
        elif kind == "maxpool":
            mods.append(nn.MaxPool2d(sp[2], stride=sp[3]))
        elif kind == "avgpool":
            mods.append(nn.AvgPool2d(sp[2], stride=sp[3]))
        elif kind == "gap":
            mods.append(nn.AdaptiveAvgPool2d(1))
            mods.append(nn.Flatten())
        elif kind == "flatten":
            mods.append(nn.Flatten())
    return nn.Sequential(*mods).eval()


def _make_classes():
    torch = _torch()
    nn = torch.nn
    Tensor = torch.Tensor

    class Classifier(nn.Module):
        """Raw rows -> combined (and calibrated) class probabilities (n, C)."""

        def __init__(self, xmean, xstd, trunk, nets, weights, vote: bool, params: bool,
                     temperature: float):
            super().__init__()
            self.register_buffer("xmean", xmean)
            self.register_buffer("xstd", xstd)
            self.trunk = trunk
            self.nets = nn.ModuleList(nets)
            self.register_buffer("weights", weights)
            self.vote = vote
            self.params = params
            self.temperature = temperature
            self.floor = CAL_FLOOR


        def standardize(self, x: Tensor) -> Tensor:
            """Raw rows (n, features) or (n, *shape) -> standardized trunk output."""
            h = x.reshape(x.shape[0], -1).to(torch.float32)
            if h.shape[1] != self.xmean.shape[0]:
                raise ValueError("input rows have {} features; the model expects {}".format(
                    h.shape[1], self.xmean.shape[0]))
            if not bool(torch.isfinite(h).all()):
                raise ValueError("input has a non-finite value (NaN or Inf)")
            return self.trunk((h - self.xmean) / self.xstd)

        def forward(self, x: Tensor) -> Tensor:
            h = self.standardize(x)
            acc = torch.zeros(0, dtype=torch.float64)
            count = 0
            i = 0
            for net in self.nets:
                p = torch.softmax(net(h), dim=1)
                if self.vote:
                    part = nn.functional.one_hot(torch.argmax(p, dim=1), p.shape[1]).to(torch.float64)
                else:
                    part = self.weights[i] * p.to(torch.float64)
                acc = part if count == 0 else acc + part
                count += 1
                i += 1
            if self.vote:
                out = (acc / count).to(torch.float32)
            elif self.params:
                out = acc.to(torch.float32)
            else:
                out = (acc / self.weights.sum()).to(torch.float32)
            if self.temperature > 0:
                lp = torch.log(torch.clamp(out.to(torch.float64), min=self.floor)) / self.temperature
                lp = lp - lp.max(dim=1, keepdim=True)[0]
                e = torch.exp(lp)
                out = (e / e.sum(dim=1, keepdim=True)).to(torch.float32)
            return out

    class Regressor(nn.Module):
        """Raw rows -> {"mean", "var"} (n, T) of the combined ensemble, in the
        original units of y."""

        def __init__(self, xmean, xstd, trunk, nets, weights, ymean, ystd, gaussian: bool,
                     params: bool, scale: float, T: int):
            super().__init__()
            self.register_buffer("xmean", xmean)
            self.register_buffer("xstd", xstd)
            self.trunk = trunk
            self.nets = nn.ModuleList(nets)
            self.register_buffer("weights", weights)
            self.register_buffer("ymean", ymean)
            self.register_buffer("ystd", ystd)
            self.gaussian = gaussian
            self.params = params
            self.scale = scale
            self.T = T
            self.var_floor = float(np.float32(VAR_FLOOR))  # a float in ens, added in double
            self.linear = SOFTPLUS_LINEAR


        def standardize(self, x: Tensor) -> Tensor:
            """Raw rows (n, features) or (n, *shape) -> standardized trunk output."""
            h = x.reshape(x.shape[0], -1).to(torch.float32)
            if h.shape[1] != self.xmean.shape[0]:
                raise ValueError("input rows have {} features; the model expects {}".format(
                    h.shape[1], self.xmean.shape[0]))
            if not bool(torch.isfinite(h).all()):
                raise ValueError("input has a non-finite value (NaN or Inf)")
            return self.trunk((h - self.xmean) / self.xstd)

        def forward(self, x: Tensor) -> Dict[str, Tensor]:
            h = self.standardize(x)
            T = self.T
            s1 = torch.zeros(0, dtype=torch.float64)
            s2 = torch.zeros(0, dtype=torch.float64)
            mean = torch.zeros(0)
            var = torch.zeros(0)
            i = 0
            for net in self.nets:
                z = net(h)
                mu = z[:, :T]
                if self.gaussian:
                    raw = z[:, T:2 * T].to(torch.float64)
                    sp = torch.where(raw > self.linear, raw, torch.log1p(torch.exp(raw)))
                    v = (sp + self.var_floor).to(torch.float32)
                else:
                    v = torch.zeros_like(mu)
                mu = mu * self.ystd + self.ymean
                v = v * self.ystd * self.ystd
                mean = mu
                var = v
                w = self.weights[i]
                m64 = mu.to(torch.float64)
                if i == 0:
                    s1 = w * m64
                    s2 = w * (v.to(torch.float64) + m64 * m64)
                else:
                    s1 = s1 + w * m64
                    s2 = s2 + w * (v.to(torch.float64) + m64 * m64)
                i += 1
            if not self.params:
                W = self.weights.sum()
                mu64 = s1 / W
                v64 = torch.clamp(s2 / W - mu64 * mu64, min=0.0)
                mean = mu64.to(torch.float32)
                var = v64.to(torch.float32)
            if self.scale > 0:
                var = (var.to(torch.float64) * self.scale).to(torch.float32)
            return {"mean": mean, "var": var}

    return Classifier, Regressor


def build(path, rule=None, calibrate=True):
    """The eager nn.Module of result `path` (see the module docstring)."""
    import h5py
    torch = _torch()
    nn = torch.nn
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ExportError(f"{path}: cannot open as an HDF5 result file ({e})")
    with f:
        if "model" not in f or "config" not in f.attrs:
            raise ExportError(f"{path}: not an ens result file (missing /model or root attributes)")
        model = f["model"]
        cfg = configparser.ConfigParser(interpolation=None)
        cfg.read_string(_attr(f, "config", path, "/"))
        layers_desc = str(_attr(model, "layers", path, "/model"))
        for tok in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\(", layers_desc):
            if tok not in KNOWN_LAYERS:
                raise ExportError(f"{path}: cannot export layer '{tok}' (of /model layers = "
                                  f"'{layers_desc}'): export_torch.py knows "
                                  f"{', '.join(KNOWN_LAYERS)}")
        task = f.attrs.get("task", "classify")
        regress = (task.decode() if isinstance(task, bytes) else str(task)) == "regress"
        d = int(_attr(model, "inputs", path, "/model"))
        C = int(_attr(model, "classes", path, "/model"))
        T = int(model.attrs.get("targets", 0))
        tl = int(_attr(model, "trunk_layers", path, "/model"))
        members = int(_attr(f, "members", path, "/"))
        first = int(_attr(f, "first_member", path, "/"))
        shape = (d,)
        ich, ih, iw = (int(model.attrs.get(a, 0)) for a in
                       ("input_channels", "input_height", "input_width"))
        if ich > 0 and ih > 0 and iw > 0 and ich * ih * iw == d:
            shape = (ich, ih, iw)

        def arch(g, where):
            """The network of /model (g None) or of member group g: its layer
            list (on images of the stored shape), else its MLP form."""
            a = model if g is None else g
            text = a.attrs.get("layers" if g is not None else "layer_list", b"")
            text = (text.decode() if isinstance(text, bytes) else str(text)).strip()
            if g is not None and not text and "hidden" not in g.attrs:
                text = _as_str(model.attrs.get("layer_list", b"")).strip()
            wn = int(a.attrs.get("weightnorm", model.attrs.get("weightnorm", 0)))
            if text:
                specs, nh = _parse_layers(text, path, where)
                return _Net(specs, nh, shape, wn)
            hidden = (_hidden_list(g.attrs["hidden"]) if g is not None and "hidden" in g.attrs
                      else _hidden_list(_read(f, path, "/model/hidden")))
            bn = int(a.attrs["batchnorm"]) if "batchnorm" in a.attrs else \
                int(_attr(model, "batchnorm", path, "/model"))
            specs, nh = _mlp_specs(hidden, bn)
            return _Net(specs, nh, (d,), wn)

        net0 = arch(None, "/model layer_list")
        if tl > net0.n_hidden:
            raise ExportError(f"{path}: /model trunk_layers = {tl} but the model has "
                              f"{net0.n_hidden} blocks")
        default_rule = cfg.get("ensemble", "combine", fallback="average")
        rule = rule or default_rule
        if rule not in RULES:
            raise ExportError(f"--rule {rule}: expected one of {', '.join(RULES)}")
        gaussian = regress and cfg.get("model", "loss", fallback="gaussian") != "mse"
        width = T if regress else C
        outputs = 2 * T if gaussian else width
        if int(_attr(model, "standardized", path, "/model")):
            xmean = _read(f, path, "/model/input_mean").astype(np.float32)
            xstd = _read(f, path, "/model/input_std").astype(np.float32)
        else:
            xmean, xstd = np.zeros(d, np.float32), np.ones(d, np.float32)
        if xmean.size != d or xstd.size != d:
            raise ExportError(f"{path}: /model/input_mean or input_std does not hold {d} values")
        trunk = nn.Identity()
        if tl > 0:
            trunk = _sequential(net0, 0, tl, False, 0,
                                _read(f, path, "/trunk/params").astype(np.float32),
                                f["trunk/bn_stats"][()].astype(np.float32) if "trunk/bn_stats" in f
                                else np.zeros(0, np.float32), path, "/trunk/params")
        nets, weights = [], []
        params_rule = rule == "params"
        if rule == "vote" and regress:
            raise ExportError(f"--rule vote: {path} is a regression result (votes need classes)")
        if params_rule:
            if "ensemble/params" not in f:
                raise ExportError(f"{path} has no /ensemble/params: it was trained with combine = "
                                  f"{default_rule} (parameter averaging is stored only for "
                                  f"combine = params)")
            st = f["ensemble/bn_stats"][()] if "ensemble/bn_stats" in f else np.zeros(0)
            nets.append(_sequential(net0, tl, net0.n_hidden, True, outputs,
                                    f["ensemble/params"][()].astype(np.float32),
                                    st.astype(np.float32), path, "/ensemble/params"))
            weights.append(1.0)
        else:
            sel = None
            if rule == "select":
                if "ensemble/weights" not in f or "select_picks" not in f["metrics/ensemble"].attrs:
                    raise ExportError(f"{path}: --rule select needs /ensemble/weights of a "
                                      f"combine = select result")
                picks = int(f["metrics/ensemble"].attrs["select_picks"])
                sel = [float(np.round(w * picks)) for w in f["ensemble/weights"][()].astype(np.float32)]
            for k in range(first, first + members):
                g = f.get(f"members/{k}")
                if g is None:
                    raise ExportError(f"{path}: group /members/{k} is missing")
                status = g.attrs.get("status", b"done")
                status = status.decode() if isinstance(status, bytes) else str(status)
                if status != "done":
                    continue
                w = sel[k - first] if sel is not None else 1.0
                if w == 0.0:
                    continue
                net = arch(g, f"/members/{k} layers")
                st = g["bn_stats"][()] if "bn_stats" in g else np.zeros(0)
                nets.append(_sequential(net, tl, net.n_hidden, True, outputs,
                                        _read(f, path, f"/members/{k}/params").astype(np.float32),
                                        st.astype(np.float32), path, f"/members/{k}/params"))
                weights.append(w)
            if not nets:
                raise ExportError(f"{path}: no finished member to apply")
        cal = 0.0
        key = "variance_scale" if regress else "temperature"
        if calibrate and rule == default_rule and "ensemble" in f and key in f["ensemble"].attrs:
            cal = float(f["ensemble"].attrs[key])
        Classifier, Regressor = _make_classes()
        xm, xs = torch.from_numpy(xmean), torch.from_numpy(xstd)
        wt = torch.tensor(weights, dtype=torch.float64)
        if not regress:
            m = Classifier(xm, xs, trunk, nets, wt, rule == "vote", params_rule, cal)
        else:
            if "model/target_mean" in f:
                ym = _read(f, path, "/model/target_mean").astype(np.float32)
                ys = _read(f, path, "/model/target_std").astype(np.float32)
            else:
                ym, ys = np.zeros(T, np.float32), np.ones(T, np.float32)
            m = Regressor(xm, xs, trunk, nets, wt, torch.from_numpy(ym), torch.from_numpy(ys),
                          gaussian, params_rule, cal, T)
        m.requires_grad_(False)
        return m.eval()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("result", help="ens result file (HDF5)")
    ap.add_argument("-o", "--output", required=True, help="TorchScript file to write (.pt)")
    ap.add_argument("--rule", choices=RULES, help="combine rule (default: the result's own)")
    ap.add_argument("--no-calibration", action="store_true",
                    help="do not apply the stored temperature / variance scale")
    a = ap.parse_args(argv)
    try:
        if os.path.abspath(a.output) == os.path.abspath(a.result):
            raise ExportError(f"-o {a.output}: is the result file itself")
        torch = _torch()
        module = build(a.result, a.rule, not a.no_calibration)
        scripted = torch.jit.script(module)
    except ExportError as e:
        print(f"export_torch.py: {e}", file=sys.stderr)
        return 1
    tmp = f"{a.output}.tmp.{os.getpid()}"
    try:
        scripted.save(tmp)
        os.replace(tmp, a.output)
    except Exception as e:  # noqa: BLE001 - report any write failure, leave nothing
        try:
            os.unlink(tmp)
        except OSError:
            pass
        print(f"export_torch.py: -o {a.output}: cannot write: {e}", file=sys.stderr)
        return 2
    kind = "a dict of mean and var" if hasattr(module, "ymean") else "probabilities"
    print(f"{a.result}: {len(module.nets)} network(s) -> {a.output} (returns {kind})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
