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
variance mixtures in float64 like ens. Layers it does not know (anything but
dense, batchnorm, relu and dropout) are refused by name. MC-dropout is not
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
KNOWN_LAYERS = ("dense", "batchnorm", "relu", "dropout")
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


def _hidden_list(v):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str):
        return [int(t) for t in re.split(r"[,\s]+", v.strip()) if t]
    return [int(t) for t in np.atleast_1d(v)]


def _blocks(in_w, hidden, bn, first, last, with_output, outputs):
    """Layer list of blocks [first, last) (+ output) as in src/nn/model.c:
    dense, [batchnorm], relu, [dropout] per block, then the output dense."""
    layers, w = [], in_w if first == 0 else hidden[first - 1]
    for b in range(first, last):
        layers.append(("dense", w, hidden[b]))
        if bn:
            layers.append(("batchnorm", hidden[b], hidden[b]))
        layers.append(("relu", hidden[b], hidden[b]))
        w = hidden[b]
    if with_output:
        layers.append(("dense", w, outputs))
    return layers


def _sequential(layers, params, stats, path, pname):
    """nn.Sequential over the flat parameter (and statistics) vectors."""
    torch = _torch()
    nn = torch.nn
    need_p = sum(o * i + o if k == "dense" else 2 * o if k == "batchnorm" else 0
                 for k, i, o in layers)
    need_s = sum(2 * o for k, i, o in layers if k == "batchnorm")
    if params.size != need_p or stats.size != need_s:
        raise ExportError(f"{path}: {pname} holds {params.size} parameters and {stats.size} "
                          f"statistics; the stored architecture needs {need_p} and {need_s}")
    mods, po, so = [], 0, 0
    for kind, i, o in layers:
        if kind == "dense":
            lin = nn.Linear(i, o)
            lin.weight.data = torch.from_numpy(params[po:po + o * i].reshape(o, i).copy())
            po += o * i
            lin.bias.data = torch.from_numpy(params[po:po + o].copy())
            po += o
            mods.append(lin)
        elif kind == "batchnorm":
            bn = nn.BatchNorm1d(o, eps=BN_EPS)
            bn.weight.data = torch.from_numpy(params[po:po + o].copy())
            bn.bias.data = torch.from_numpy(params[po + o:po + 2 * o].copy())
            po += 2 * o
            bn.running_mean = torch.from_numpy(stats[so:so + o].copy())
            bn.running_var = torch.from_numpy(stats[so + o:so + 2 * o].copy())
            so += 2 * o
            mods.append(bn)
        elif kind == "relu":
            mods.append(nn.ReLU())
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
        hidden0 = _hidden_list(_read(f, path, "/model/hidden"))
        bn0 = int(_attr(model, "batchnorm", path, "/model"))
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
            trunk = _sequential(_blocks(d, hidden0, bn0, 0, tl, False, 0),
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
            nets.append(_sequential(_blocks(d, hidden0, bn0, tl, len(hidden0), True, outputs),
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
                hidden = _hidden_list(g.attrs["hidden"]) if "hidden" in g.attrs else hidden0
                bn = int(g.attrs["batchnorm"]) if "batchnorm" in g.attrs else bn0
                st = g["bn_stats"][()] if "bn_stats" in g else np.zeros(0)
                nets.append(_sequential(_blocks(d, hidden, bn, tl, len(hidden), True, outputs),
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
