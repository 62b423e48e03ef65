#!/usr/bin/python3
"""Figures from an ens result file (PNG, one file per figure).

    scripts/plot.py RESULT.h5 [-o DIR] [--data FILE]

writes into DIR (default: <result stem>-plots/ next to the result) and prints
the path of every figure it wrote, or one "skipping NAME: reason" line for a
figure whose data the result does not hold:

    size_curve.png       ensemble metric against the number of members combined
                         (accuracy and NLL; regression: RMSE and NLL); the
                         best single member as for reliability.png; the final
                         ensemble (a star) at the number of members it
                         combines (select: those with a positive weight); a
                         vote's NLL is of vote shares, marked as such
    reliability.png      reliability diagram, best single member (lowest
                         validation NLL, as ens train and ens info name it;
                         test NLL only without validation rows) against the
                         ensemble, 15 confidence bins, ECE in
                         the legend; regression: observed coverage of central
                         Gaussian intervals against the nominal level
    learning_curves.png  per-member training loss and eval metric per epoch
                         (failed members dashed)
    disagreement.png     fraction of test points on which members i, j differ
    grad_norm.png        per member, the global gradient norm before clipping
                         over training (per epoch: min-max band, median, p90,
                         p99) with the clip threshold c in force
    search.png           member NLL (validation, else test) against each drawn
                         hyperparameter; only for mode = search or members with
                         differing hyperparameters

Test labels are not part of a result: they are /test/y of the data file named
in the result's config ([data] path, relative paths resolved from the current
directory), or of --data FILE. Without them the reliability figure is skipped.

Exit codes: 0 done (possibly with skipped figures), 1 a missing or unreadable
file, or a file that is not an ens result.
"""
import configparser
import os
import statistics
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import uci  # noqa: E402  (Parser, UsageError)

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.transforms as mtransforms  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FixedLocator,
    FuncFormatter,
    FormatStrFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
)

PROG = "plot.py"
DPI = 120
ECE_BINS = 15
# Hyperparameters a member group may carry, with how their axis is drawn.
HYPERPARAMS = [
    ("lr", "log"),
    ("weight_decay", "log"),
    ("momentum", "linear"),
    ("dropout", "linear"),
    ("batch", "category"),
    ("hidden", "category"),
    ("init", "category"),
    ("batchnorm", "category"),
]
# Enough distinct colours for a legend entry per member; more members share a colormap.
LEGEND_MAX_MEMBERS = 12


# Usage errors exit 1 like every ens command (uci.Parser); UsageError ends
# the script with exit code 1.
Parser, UsageError = uci.Parser, uci.UsageError


class Skip(Exception):
    """A figure whose data is absent: one printed line, no file."""


def as_str(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape == ():
        return as_str(v[()])
    if isinstance(v, np.ndarray) and v.size == 1:
        return as_str(v.reshape(-1)[0])
    return str(v)


def as_scalar(v):
    """An attribute value as a Python float, int or str (1-element arrays unwrapped)."""
    if isinstance(v, np.ndarray):
        if v.size != 1:
            return v
        v = v.reshape(-1)[0]
    if isinstance(v, (bytes, str)):
        return as_str(v)
    if isinstance(v, (np.integer, int)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v)
    return v


class Result:
    """Read access to one ens result file. Every dataset read says which
    dataset was wrong when its shape does not fit."""

    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        if not os.path.exists(path):
            raise UsageError(f"{path}: no such file")
        if os.path.isdir(path):
            raise UsageError(f"{path}: is a directory, not an ens result file")
        try:
            ok = h5py.is_hdf5(path)
        except OSError as e:
            raise UsageError(f"{path}: cannot read: {e}")
        if not ok:
            raise UsageError(f"{path}: not an HDF5 file (expected an ens result)")
        try:
            self.f = h5py.File(path, "r")
        except OSError as e:
            raise UsageError(f"{path}: cannot open as HDF5: {e}")
        if "members" not in self.f.attrs:
            raise UsageError(f"{path}: not an ens result: no root attribute 'members'")
        if not isinstance(self.f.get("metrics"), h5py.Group) and not isinstance(
            self.f.get("members"), h5py.Group
        ):
            raise UsageError(f"{path}: not an ens result: no /metrics or /members group")
        try:
            self.M = int(as_scalar(self.f.attrs["members"]))
        except (TypeError, ValueError):
            raise UsageError(f"{path}: root attribute 'members' is not an integer")
        if self.M < 1:
            raise UsageError(f"{path}: root attribute 'members' is {self.M}, expected >= 1")
        self.first = int(as_scalar(self.f.attrs.get("first_member", 0)))
        self.task = as_str(self.f.attrs.get("task", "classify"))
        self.mode = as_str(self.f.attrs.get("mode", "?"))
        self.combine = as_str(self.f.attrs.get("combine", "?"))
        self.members = list(range(self.first, self.first + self.M))
        self.status = [self._member_status(k) for k in self.members]
        self.failed = np.array([s == "failed" for s in self.status])

    @property
    def regress(self):
        return self.task == "regress"

    def has(self, name):
        return isinstance(self.f.get(name), h5py.Dataset)

    def ds(self, name, shape=None, dtype=np.float64):
        """Dataset `name` as an array, or None when absent. `shape` may hold
        None for any extent; a mismatch is a UsageError naming the dataset."""
        obj = self.f.get(name)
        if obj is None:
            return None
        if not isinstance(obj, h5py.Dataset):
            raise UsageError(f"{self.path}: {name} is not a dataset")
        if shape is not None:
            if len(obj.shape) != len(shape) or any(
                w is not None and w != h for w, h in zip(shape, obj.shape)
            ):
                want = "[" + ", ".join("*" if w is None else str(w) for w in shape) + "]"
                raise UsageError(
                    f"{self.path}: dataset {name} has shape {list(obj.shape)}, expected {want}"
                )
        try:
            return np.asarray(obj[()], dtype=dtype)
        except (OSError, ValueError, TypeError) as e:
            raise UsageError(f"{self.path}: cannot read dataset {name}: {e}")

    def member_ds(self, name):
        """Per-member metric /metrics/<name> [M] or None."""
        return self.ds(f"/metrics/{name}", (self.M,))

    def attrs(self, name):
        obj = self.f.get(name)
        return {} if obj is None else {k: as_scalar(v) for k, v in obj.attrs.items()}

    def member_group(self, k):
        g = self.f.get(f"/members/{k}")
        return g if isinstance(g, h5py.Group) else None

    def member_attr(self, k, key):
        """Attribute of member k: on /members/<k>, else (older files) on
        /members/<k>/params."""
        g = self.member_group(k)
        if g is None:
            return None
        if key in g.attrs:
            return as_scalar(g.attrs[key])
        p = g.get("params")
        if isinstance(p, h5py.Dataset) and key in p.attrs:
            return as_scalar(p.attrs[key])
        return None

    def _member_status(self, k):
        s = self.member_attr(k, "status")
        return "done" if s is None else as_str(s)

    def title(self, what):
        failed = int(self.failed.sum())
        extra = f", {failed} failed" if failed else ""
        return (
            f"{what}\n{self.name}: {self.M} member{'s' if self.M != 1 else ''}{extra}"
            f" (mode {self.mode}, combine {self.combine})"
        )

    def data_path(self):
        """[data] path from the root attribute config, or None."""
        text = self.f.attrs.get("config")
        if text is None:
            return None
        cp = configparser.ConfigParser(
            interpolation=None, strict=False, inline_comment_prefixes=(";", "#")
        )
        try:
            cp.read_string(as_str(text))
        except configparser.Error:
            return None
        p = cp.get("data", "path", fallback=None)
        return p.strip().strip('"') if p else None


def test_labels(res, override, n_test):
    """Test targets of the result: /test/y of --data or of the configured data
    file. Returns (y, data file path), or (None, reason) when they cannot be
    had from the config. A bad --data file is a UsageError (the user named it)."""
    path = override if override else res.data_path()
    if not path:
        return None, "no [data] path in the result's config; give --data FILE"
    where = "--data" if override else "the data file named in the config"
    problem = None
    if not os.path.exists(path):
        problem = f"{path} ({where}): no such file"
    elif not h5py.is_hdf5(path):
        problem = f"{path} ({where}): not an HDF5 file"
    else:
        try:
            with h5py.File(path, "r") as f:
                d = f.get("/test/y")
                if not isinstance(d, h5py.Dataset):
                    problem = f"{path} ({where}): no dataset /test/y"
                elif d.shape[0] != n_test:
                    problem = (
                        f"{path} ({where}): /test/y has {d.shape[0]} rows, "
                        f"the result has {n_test} test rows"
                    )
                else:
                    return np.asarray(d[()]), path
        except OSError as e:
            problem = f"{path} ({where}): cannot read: {e}"
    if override:
        raise UsageError(problem)
    return None, problem + " (give --data FILE)"


def check_data_file(path):
    """--data is checked before any figure is written."""
    if not os.path.isfile(path):
        raise UsageError(f"{path} (--data): no such file")
    if not h5py.is_hdf5(path):
        raise UsageError(f"{path} (--data): not an HDF5 file")
    with h5py.File(path, "r") as f:
        if not isinstance(f.get("/test/y"), h5py.Dataset):
            raise UsageError(f"{path} (--data): no dataset /test/y")


def save(fig, outdir, name):
    path = os.path.join(outdir, name)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def finite_min_index(v, exclude):
    """Index of the smallest finite value of v outside `exclude`, or None."""
    v = np.where(exclude | ~np.isfinite(v), np.inf, v)
    return None if not np.isfinite(v).any() else int(np.argmin(v))


def best_member(res):
    """The best single member as ens train and ens info name it: the
    result's /metrics/ensemble best_member (combine = select), else the
    lowest validation NLL; the lowest test NLL only when the result has no
    validation scores. Returns (index into res.members, words for a label)
    or (None, None)."""
    bm = res.attrs("/metrics/ensemble").get("best_member")
    if isinstance(bm, int) and bm in res.members and not res.failed[res.members.index(bm)]:
        return res.members.index(bm), "validation NLL"
    val = res.member_ds("member_val_nll")
    if val is not None and np.isfinite(val[~res.failed]).any():
        return finite_min_index(val, res.failed), "validation NLL"
    nll = res.member_ds("member_nll")
    if nll is not None:
        i = finite_min_index(nll, res.failed)
        if i is not None:
            return i, "test NLL: no validation rows"
    return None, None


def final_size(res):
    """Members the final ensemble combines: those with a positive weight for
    combine = select (picks may repeat a member), else every finished one."""
    if res.combine == "select":
        w = res.ds("/ensemble/weights", (res.M,))
        if w is not None and (w > 0).any():
            return int((w > 0).sum())
    return int((~res.failed).sum())


def integer_locator(top):
    """Ticks at whole numbers 1..top (MaxNLocator falls back to fractions
    when the range holds a single integer)."""
    if top <= 12:
        return FixedLocator(np.arange(1, top + 1))
    return MaxNLocator(integer=True)


def member_colors(M):
    cmap = plt.get_cmap("tab10" if M <= 10 else "viridis")
    return [cmap(i if M <= 10 else i / max(M - 1, 1)) for i in range(M)]


# ---------------------------------------------------------------- size curve


def fig_size_curve(res, outdir, _data):
    if res.regress:
        panels = [("curve_rmse", "member_rmse", "RMSE", "min"), ("curve_nll", "member_nll", "NLL", "min")]
    else:
        panels = [
            ("curve_accuracy", "member_accuracy", "accuracy (%)", "max"),
            ("curve_nll", "member_nll", "NLL", "min"),
        ]
    curves = [res.member_ds(c) for c, _, _, _ in panels]
    if all(c is None for c in curves):
        raise Skip(f"no /metrics/{panels[0][0]} or /metrics/{panels[1][0]}")
    rule = as_str(res.attrs("/metrics/" + panels[0][0]).get("rule", res.combine))
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.8))
    x = np.arange(1, res.M + 1)
    bi, bhow = best_member(res)
    for ax, (cname, mname, label, best), curve in zip(axes, panels, curves):
        scale = 100.0 if label.startswith("accuracy") else 1.0
        if curve is None:
            ax.text(0.5, 0.5, f"no /metrics/{cname}", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        # Vote shares are not probabilities: their NLL is large by
        # construction and not comparable with the members' NLL.
        shares = rule == "vote" and label == "NLL"
        ax.plot(x, curve * scale, "o-", color="C0",
                label=f"ensemble of first k ({rule}{' shares' if shares else ''})")
        member = res.member_ds(mname)
        if member is not None:
            ok = ~res.failed & np.isfinite(member)
            if ok.any():
                vals = member[ok] * scale
                if bi is not None and np.isfinite(member[bi]):
                    ax.axhline(member[bi] * scale, color="C2", ls="--", lw=1.2,
                               label=f"best single member by {bhow} "
                                     f"(member {res.members[bi]}: {member[bi] * scale:.4g})")
                ax.axhline(vals.mean(), color="0.5", ls=":", lw=1.2, label=f"mean single member ({vals.mean():.4g})")
        final = res.attrs("/metrics/ensemble").get(cname.replace("curve_", ""))
        if isinstance(final, float) and np.isfinite(final) and not np.isclose(final, curve[-1], rtol=1e-6):
            # At the number of members the final ensemble combines (a
            # selection of 2 sits at k = 2, not at the number trained).
            kf = final_size(res)
            what = f"{res.combine}, {kf} member{'s' if kf != 1 else ''}"
            ax.plot([kf], [final * scale], "*", color="C3", ms=13, mec="k", mew=0.6,
                    label=f"final ensemble ({what}: {final * scale:.4g})", zorder=4)
        if shares:
            ax.text(0.5, 0.97, "vote shares are not probabilities: their NLL is large\n"
                    "by construction; compare accuracy, not NLL, with members",
                    ha="center", va="top", fontsize=8, color="C3", transform=ax.transAxes,
                    bbox=dict(facecolor="white", edgecolor="C3", alpha=0.9, boxstyle="round"))
        ax.set_xlabel("number of members combined (k)")
        ax.set_ylabel(f"test {label}")
        ax.xaxis.set_major_locator(integer_locator(res.M))
        ax.set_xlim(0.5, res.M + 0.5)
        ax.grid(alpha=0.3)
        # Below the panel: the reference lines span the whole width, so no
        # place inside is free for sure.
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
        ax.set_title(f"test {label.split(' ')[0]}" + (" (vote shares)" if shares else ""))
    fig.suptitle(res.title("Ensemble size"))
    fig.tight_layout()
    return save(fig, outdir, "size_curve.png")


# --------------------------------------------------------------- reliability


def ece_bins(p, y):
    """Per-bin (count, mean confidence, accuracy) over the max probability,
    ECE_BINS equal-width bins (lo, hi] as in src/ensemble/metrics.c, and the ECE."""
    p = np.asarray(p, dtype=np.float32)
    pred = np.argmax(p, axis=1)
    conf = p[np.arange(len(p)), pred]
    correct = pred == y
    edges = (np.arange(ECE_BINS + 1, dtype=np.float64) / ECE_BINS).astype(np.float32)
    b = np.searchsorted(edges[1:-1], conf, side="left")
    b[~(conf > 0)] = 0
    count = np.bincount(b, minlength=ECE_BINS).astype(np.float64)
    sconf = np.bincount(b, weights=conf.astype(np.float64), minlength=ECE_BINS)
    sacc = np.bincount(b, weights=correct.astype(np.float64), minlength=ECE_BINS)
    ece = np.abs(sacc - sconf).sum() / max(len(p), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return count, sconf / count, sacc / count, ece


def fig_reliability(res, outdir, data):
    if res.regress:
        return fig_coverage(res, outdir, data)
    ens = res.ds("/ensemble/probs", (None, None))
    if ens is None:
        raise Skip("no /ensemble/probs")
    n, C = ens.shape
    mprobs = res.ds("/members/probs", (res.M, n, C), dtype=np.float32)
    y, why = test_labels(res, data, n)
    if y is None:
        raise Skip(f"no test labels: {why}")
    y = y.astype(np.int64).reshape(-1)
    if y.min() < 0 or y.max() >= C:
        raise UsageError(f"{why}: /test/y has labels outside [0, {C}) for a result with {C} classes")
    curves = []
    if mprobs is not None:
        best, how = best_member(res)
        if best is None:
            pick = np.clip(mprobs[:, np.arange(n), y], 1e-12, None)
            best = finite_min_index(-np.log(pick).mean(axis=1), res.failed)
            how = "test NLL: no metrics stored"
        if best is not None:
            tn = -np.log(np.clip(mprobs[best][np.arange(n), y], 1e-12, None)).mean()
            curves.append((f"best member {res.members[best]} by {how} (test NLL {tn:.3f})", mprobs[best], "C1", "s"))
    ens_attrs = res.attrs("/metrics/ensemble")
    label = f"ensemble ({res.combine}{' shares' if res.combine == 'vote' else ''})"
    if "temperature" in ens_attrs:
        label += f", T = {ens_attrs['temperature']:.3g}"
    curves.append((label, ens, "C0", "o"))

    fig, (ax, axh) = plt.subplots(
        2, 1, figsize=(6.4, 7.2), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}
    )
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="perfect calibration")
    centers = (np.arange(ECE_BINS) + 0.5) / ECE_BINS
    width = 1.0 / ECE_BINS
    for i, (name, p, color, marker) in enumerate(curves):
        count, conf, acc, ece = ece_bins(p, y)
        has = count > 0
        extra = ""
        if name.startswith("ensemble") and "ece_uncalibrated" in ens_attrs:
            extra = f", uncalibrated {ens_attrs['ece_uncalibrated']:.3f}"
        ax.plot(conf[has], acc[has], marker=marker, color=color, lw=1.6, ms=5,
                label=f"{name}: ECE {ece:.3f}{extra}")
        off = (i - (len(curves) - 1) / 2) * width / len(curves)
        axh.bar(centers + off, count, width=width / len(curves), color=color, alpha=0.8, label=name.split(" (")[0])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy in bin")
    ax.set_aspect("auto")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.01), frameon=False)
    axh.set_xlabel(f"confidence (max probability), {ECE_BINS} equal-width bins, {n} test points")
    axh.set_ylabel("points in bin")
    axh.set_yscale("log")
    axh.grid(alpha=0.3, axis="y")
    axh.legend(fontsize=8, loc="upper left")
    fig.suptitle(res.title("Reliability"))
    fig.tight_layout()
    return save(fig, outdir, "reliability.png")


def coverage(mean, var, y, levels):
    sd = np.sqrt(np.clip(var, 0, None))
    err = np.abs(y - mean)
    out = []
    for lv in levels:
        z = statistics.NormalDist().inv_cdf(0.5 + lv / 2)
        out.append(float(np.mean(err <= z * sd)))
    return np.array(out)


def fig_coverage(res, outdir, data):
    mean = res.ds("/ensemble/mean")
    var = res.ds("/ensemble/var")
    if mean is None or var is None:
        raise Skip("no /ensemble/mean or /ensemble/var")
    if mean.ndim == 1:
        mean, var = mean[:, None], var[:, None]
    n, T = mean.shape
    if var.shape != (n, T):
        raise UsageError(f"{res.path}: /ensemble/var has shape {list(var.shape)}, expected [{n}, {T}]")
    y, why = test_labels(res, data, n)
    if y is None:
        raise Skip(f"no test targets: {why}")
    y = y.astype(np.float64).reshape(n, -1)
    if y.shape[1] != T:
        raise UsageError(f"{why}: /test/y has {y.shape[1]} targets, the result has {T}")
    levels = np.round(np.arange(1, 20) * 0.05, 2)
    curves = []
    mm = res.ds("/members/mean")
    mv = res.ds("/members/var")
    if mm is not None and mv is not None:
        mm = mm.reshape(res.M, n, T)
        mv = mv.reshape(res.M, n, T)
        best, how = best_member(res)
        if best is not None:
            nll = res.member_ds("member_nll")
            tn = f" (test NLL {nll[best]:.3f})" if nll is not None else ""
            curves.append((f"best member {res.members[best]} by {how}{tn}", mm[best], mv[best], "C1", "s"))
    curves.append((f"ensemble ({res.combine})", mean, var, "C0", "o"))
    fig, ax = plt.subplots(figsize=(6.4, 6))
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", lw=1, label="perfect calibration")
    for name, m, v, color, marker in curves:
        cov = coverage(m, v, y, levels)
        area = float(np.mean(np.abs(cov - levels)))
        ax.plot(levels, cov, marker=marker, color=color, ms=4, label=f"{name}: mean |gap| {area:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("nominal level of the central Gaussian interval")
    ax.set_ylabel("observed coverage on the test set")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"{n} test points x {T} target{'s' if T != 1 else ''}; above the diagonal = too wide", fontsize=9)
    fig.suptitle(res.title("Calibration of predictive intervals"))
    fig.tight_layout()
    return save(fig, outdir, "reliability.png")


# ----------------------------------------------------------- learning curves


METRIC_NAMES = {"accuracy": "accuracy", "rmse": "RMSE", "nll": "NLL", "mae": "MAE"}


def fig_learning_curves(res, outdir, _data):
    from matplotlib.lines import Line2D

    rows = []
    metric, split = None, None
    for i, k in enumerate(res.members):
        if res.member_group(k) is None:
            continue
        tl = res.ds(f"/members/{k}/curve_train_loss", (None,))
        ev = res.ds(f"/members/{k}/curve_eval", (None,))
        if tl is None and ev is None:
            continue
        if ev is not None and metric is None:
            a = res.attrs(f"/members/{k}/curve_eval")
            metric, split = a.get("metric"), a.get("split")
        fail_epoch = res.member_attr(k, "fail_epoch") if res.failed[i] else None
        rows.append((i, k, tl, ev, fail_epoch))
    if not rows:
        raise Skip("no /members/<k>/curve_train_loss or curve_eval")
    metric = as_str(metric) if metric is not None else ("rmse" if res.regress else "accuracy")
    split = {"val": "validation", "test": "test"}.get(as_str(split) if split else "", "eval")
    scale = 100.0 if metric == "accuracy" else 1.0
    colors = member_colors(res.M)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    per_member_legend = len(rows) <= LEGEND_MAX_MEMBERS
    max_epochs = max(max(len(r[2]) if r[2] is not None else 0, len(r[3]) if r[3] is not None else 0) for r in rows)
    for ax, which, ylabel in (
        (axes[0], 2, "mean training loss"),
        (axes[1], 3, f"{split} {METRIC_NAMES.get(metric, metric)}" + (" (%)" if scale != 1 else "")),
    ):
        done_vals, fail_x = [], []
        for row in rows:
            i, k, v, fail_epoch = row[0], row[1], row[which], row[4]
            if v is None or len(v) == 0:
                continue
            v = v * (scale if which == 3 else 1.0)
            ep = np.arange(1, len(v) + 1)
            failed = res.failed[i]
            lab = f"member {k}" + (" (failed)" if failed else "")
            ax.plot(ep, v, ls="--" if failed else "-", color=colors[i], lw=1.4,
                    marker="o" if len(v) <= 25 else None, ms=3, label=lab if per_member_legend else None)
            if failed:
                fe = fail_epoch if isinstance(fail_epoch, int) and 1 <= fail_epoch <= len(v) + 1 else len(v)
                fail_x.append(fe)
            else:
                done_vals.append(v[np.isfinite(v)])
        # Limits from the members that finished: a diverging member would
        # otherwise squash every other curve to a flat line.
        allv = np.concatenate(done_vals) if done_vals else np.array([])
        if allv.size:
            lo, hi = float(allv.min()), float(allv.max())
            if which == 2 and lo > 0 and hi / lo > 30:
                ax.set_yscale("log")
                ax.set_ylim(lo / 1.3, hi * 1.3)
            else:
                pad = 0.08 * (hi - lo) if hi > lo else max(abs(hi) * 0.05, 1e-3)
                ax.set_ylim(lo - pad, hi + pad)
        # A failure is marked at its epoch on the top edge (its loss is off
        # the scale or not finite).
        if fail_x:
            tr = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
            ax.plot(fail_x, np.ones(len(fail_x)), "x", color="C3", ms=9, mew=2, transform=tr, clip_on=False)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(integer_locator(max_epochs))
        ax.grid(alpha=0.3)
        ax.set_title(ylabel, pad=12 if fail_x else 6)
    handles, labels = axes[0].get_legend_handles_labels()
    if not per_member_legend:
        handles = [Line2D([], [], color="0.3", ls="-"), Line2D([], [], color="0.3", ls="--")]
        labels = ["done (colour = member index)", "failed"]
    if res.failed.any():
        handles.append(Line2D([], [], color="C3", ls="", marker="x", mew=2))
        labels.append("epoch of failure")
    rows_legend = -(-len(handles) // 7)
    ncol = -(-len(handles) // rows_legend)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(res.title("Learning curves"))
    fig.tight_layout(rect=(0, 0.045 * rows_legend + 0.01, 1, 1))
    return save(fig, outdir, "learning_curves.png")


# ----------------------------------------------------------- gradient norms

GRAD_NORM_MAX_PANELS = 16


def fig_grad_norm(res, outdir, _data):
    rows = []
    rule = None
    for i, k in enumerate(res.members):
        if res.member_group(k) is None:
            continue
        g = res.ds(f"/members/{k}/grad_norm", (None, 8))
        if g is None or len(g) == 0:
            continue
        if rule is None:
            a = res.attrs(f"/members/{k}/grad_norm")
            clip = as_str(a.get("clip", "off"))
            if clip == "auto" and "clip_percentile" in a:
                rule = f"clip_norm = auto (AutoClip, p{as_scalar(a['clip_percentile']):g})"
            elif clip == "auto":
                rule = (f"clip_norm = auto ({as_scalar(a.get('clip_factor', 0)):g} x median of a "
                        f"{as_scalar(a.get('clip_warmup', 0))}-step warm-up)")
            else:
                rule = f"clip_norm {clip}"
        rows.append((i, k, np.asarray(g, dtype=np.float64)))
    if not rows:
        raise Skip("no /members/<k>/grad_norm (a result of an older ens, or no finished member)")
    shown = rows[:GRAD_NORM_MAX_PANELS]
    n = len(shown)
    ncol = min(n, 4)
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol + 1, 2.8 * nrow + 1), squeeze=False,
                             sharey=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, (i, k, g) in zip(axes.flat, shown):
        ep = np.arange(1, len(g) + 1)
        # Markers on few epochs, as the learning curves: a one-epoch line
        # (and band) is otherwise drawn as nothing.
        few = len(g) <= 25
        if len(g) > 1:
            ax.fill_between(ep, g[:, 0], g[:, 4], color="C0", alpha=0.15, lw=0, label="min-max")
        else:
            ax.vlines(ep, g[:, 0], g[:, 4], color="C0", alpha=0.15, lw=12, label="min-max")
        ax.plot(ep, g[:, 1], color="C0", lw=1.6, marker="o" if few else None, ms=4, label="median")
        ax.plot(ep, g[:, 2], color="C0", lw=1, ls="--", marker="^" if few else None, ms=4,
                label="p90")
        ax.plot(ep, g[:, 3], color="C0", lw=1, ls=":", marker="v" if few else None, ms=4,
                label="p99")
        c = g[:, 7]
        if np.any(c > 0):
            cc = np.where(c > 0, c, np.nan)
            ax.step(ep, cc, where="mid", color="C3", lw=1.6, marker="_" if few else None, ms=10,
                    label="clip threshold c")
        clipped = int(np.nansum(g[:, 6]))
        steps = int(np.nansum(g[:, 5]))
        ax.set_title(f"member {k}: {clipped} of {steps} steps clipped", fontsize=9)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(integer_locator(len(g)))
        ax.grid(alpha=0.3)
    for r in range(nrow):
        axes[r, 0].set_ylabel("gradient norm before clipping")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat[1:n]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles.append(h)
                labels.append(l)
    fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    more = f" (first {n} of {len(rows)} members)" if len(rows) > n else ""
    fig.suptitle(res.title(f"Gradient norms, {rule}{more}"))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return save(fig, outdir, "grad_norm.png")


# -------------------------------------------------------------- disagreement


def fig_disagreement(res, outdir, _data):
    d = res.ds("/metrics/disagreement", (res.M, res.M))
    if d is None:
        raise Skip("no /metrics/disagreement")
    if res.M < 2:
        raise Skip("a single member has no pairwise disagreement")
    if not np.isfinite(d[~np.eye(res.M, dtype=bool)]).any():
        raise Skip("fewer than 2 members have predictions")
    side = min(4.2 + 0.32 * res.M, 12)
    fig, ax = plt.subplots(figsize=(side + 1.4, side))
    # The diagonal (always 0) is left blank so that the colours span the
    # off-diagonal values, which are often all close together.
    eye = np.eye(res.M, dtype=bool)
    masked = np.ma.masked_where(eye | ~np.isfinite(d), d)
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("0.85")
    off = d[~eye & np.isfinite(d)]
    if off.size and off.max() > off.min():
        vmin, vmax = float(off.min()), float(off.max())
    else:
        v = float(off[0]) if off.size else 0.0
        vmin, vmax = max(v - 0.01, 0.0), v + 0.01
    im = ax.imshow(masked, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label("fraction of test points where the predictions differ")
    # Every member up to 25, else every step-th one and all failed ones.
    step = 1 if res.M <= 25 else -(-res.M // 20)
    ticks = np.union1d(np.arange(0, res.M, step), np.nonzero(res.failed)[0])
    labels = [str(res.members[t]) + (" x" if res.failed[t] else "") for t in ticks]
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, rotation=90 if res.M > 12 else 0)
    ax.set_yticks(ticks)
    ax.set_yticklabels(labels)
    if res.M <= 10:
        for i in range(res.M):
            for j in range(res.M):
                if i != j and np.isfinite(d[i, j]):
                    txt_color = "white" if d[i, j] < vmin + 0.6 * (vmax - vmin) else "black"
                    ax.text(j, i, f"{d[i, j]:.3f}", ha="center", va="center", fontsize=8, color=txt_color)
    ax.set_xlabel("member")
    ax.set_ylabel("member")
    note = "; x = failed member (no predictions)" if res.failed.any() else ""
    if off.size:
        ax.set_title(f"mean {off.mean():.3f}, range {off.min():.3f} to {off.max():.3f}; diagonal blank{note}",
                     fontsize=9)
    fig.suptitle(res.title("Pairwise disagreement"))
    fig.tight_layout()
    return save(fig, outdir, "disagreement.png")


# -------------------------------------------------------------------- search


def hyperparam_values(res):
    """{name: list over members of the value (None when absent)}."""
    out = {}
    for name, _ in HYPERPARAMS:
        vals = [res.member_attr(k, name) for k in res.members]
        if any(v is not None for v in vals):
            out[name] = vals
    return out


def category_key(v):
    """Numbers in numeric order, layer lists ("512,256") by depth then
    widths, other strings alphabetically."""
    if isinstance(v, (int, float)):
        return (0, (float(v),), "")
    t = as_str(v)
    try:
        return (1, tuple(int(w) for w in t.split(",")), "")
    except ValueError:
        return (2, (), t)


def log_axis_with_zero(ax, x):
    """Log x axis for positive values; zeros (e.g. weight_decay = 0) are
    drawn one decade below the smallest positive value at a tick labelled 0.
    Returns the x positions to plot."""
    fin = np.isfinite(x)
    pos = x[fin & (x > 0)]
    if not pos.size:
        return x
    ax.set_xscale("log")
    if not (fin & (x <= 0)).any():
        return x
    lo_dec = int(np.floor(np.log10(pos.min())))
    hi_dec = int(np.ceil(np.log10(pos.max())))
    zero_at = 10.0 ** (lo_dec - 1)
    x = np.where(fin & (x <= 0), zero_at, x)
    decades = [10.0 ** e for e in range(lo_dec, hi_dec + 1)]
    step = max(1, len(decades) // 5)
    ticks = [zero_at] + decades[::step]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda v, _p: "0" if np.isclose(v, zero_at) else f"$10^{{{int(round(np.log10(v)))}}}$"))
    ax.set_xlim(zero_at / 2.5, 10.0 ** hi_dec * 1.5)
    ax.axvspan(zero_at * 1.8, 10.0 ** lo_dec / 1.3, color="0.92", zorder=0)
    return x


def log_ticks(ax, lo, hi):
    """At most 5 labelled ticks on a log axis from lo to hi, written as
    plain numbers (0.0002, 0.0005, 0.001): matplotlib's own labels of a
    range under a decade (2x10^-4, 3x10^-4, ...) overlap in a narrow panel."""
    ticks = []
    for subs in ((1.0, 2.0, 5.0), (1.0, 3.0), (1.0,)):
        ticks = [m * 10.0 ** e for e in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
                 for m in subs if lo <= m * 10.0 ** e <= hi]
        if len(ticks) <= 5:
            break
    if len(ticks) > 5:
        ticks = ticks[:: int(np.ceil(len(ticks) / 5))]
    if len(ticks) < 2:
        ticks = [lo * (hi / lo) ** 0.25, hi / (hi / lo) ** 0.25]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.2g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def fig_search(res, outdir, _data):
    hp = hyperparam_values(res)
    drawn = [(n, kind) for n, kind in HYPERPARAMS if n in hp and len({repr(v) for v in hp[n] if v is not None}) > 1]
    if not drawn and res.mode == "search":
        drawn = [(n, kind) for n, kind in HYPERPARAMS if n in hp]
    if not drawn:
        if not hp:
            raise Skip("no member hyperparameter attributes (lr, weight_decay, ...)")
        raise Skip(f"mode {res.mode} and no hyperparameter differs between members")
    score = res.member_ds("member_val_nll")
    ylabel = "validation NLL"
    if score is None or not np.isfinite(score).any():
        score = res.member_ds("member_nll")
        ylabel = "test NLL"
    if score is None:
        raise Skip("no /metrics/member_val_nll or /metrics/member_nll")
    ref = res.attrs("/metrics/ensemble").get("val_nll" if ylabel.startswith("validation") else "nll")
    ref = ref if isinstance(ref, float) and np.isfinite(ref) else None
    weights = res.ds("/ensemble/weights", (res.M,))
    if res.combine != "select":
        weights = None  # every member counts: nothing was selected
    selected = weights > 0 if weights is not None else np.zeros(res.M, dtype=bool)
    failed = res.failed | ~np.isfinite(score)
    ok = ~failed
    n = len(drawn)
    ncols = n if n <= 3 else (2 if n == 4 else 3)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.6 * nrows + 0.8), sharey=True, squeeze=False)
    flat = axes.reshape(-1)
    for ax in flat[n:]:
        ax.remove()
    logy = ok.any() and (score[ok] > 0).all() and score[ok].max() / score[ok].min() > 10
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.12, 0.12, size=res.M)
    for p, (ax, (name, kind)) in enumerate(zip(flat, drawn)):
        vals = hp[name]
        have = np.array([v is not None for v in vals])
        if kind == "category":
            cats = sorted({v for v in vals if v is not None}, key=category_key)
            pos = {c: i for i, c in enumerate(cats)}
            x = np.array([pos[v] + jitter[i] if v is not None else np.nan for i, v in enumerate(vals)])
            names = [("yes" if c else "no") if name == "batchnorm" else as_str(c) for c in cats]
            ax.set_xticks(range(len(cats)))
            ax.set_xticklabels(names, rotation=30 if max(len(s) for s in names) > 4 and len(cats) > 2 else 0,
                               ha="right" if max(len(s) for s in names) > 4 and len(cats) > 2 else "center")
            ax.set_xlim(-0.6, len(cats) - 0.4)
        else:
            x = np.array([float(v) if v is not None else np.nan for v in vals])
            if kind == "log":
                x = log_axis_with_zero(ax, x)
            # Limits from every member's value: the failed markers (drawn in
            # axes coordinates) do not widen the data limits themselves.
            xs = x[np.isfinite(x)]
            if xs.size and ax.get_xscale() == "linear":
                pad = 0.05 * (xs.max() - xs.min()) if xs.max() > xs.min() else max(abs(xs.max()) * 0.1, 0.1)
                ax.set_xlim(xs.min() - pad, xs.max() + pad)
            elif xs.size and ax.get_xscale() == "log" and (xs > 0).all():
                ax.set_xlim(xs.min() / 1.5, xs.max() * 1.5)
                log_ticks(ax, xs.min() / 1.5, xs.max() * 1.5)
        m_sel = have & ok & selected
        m_un = have & ok & ~selected
        m_fail = have & failed
        ax.scatter(x[m_un], score[m_un], s=28, facecolors="none", edgecolors="0.35", lw=1.1,
                   label="not selected" if weights is not None else "member", zorder=2)
        if m_sel.any():
            sizes = 40 + 160 * (weights[m_sel] / weights[m_sel].max())
            ax.scatter(x[m_sel], score[m_sel], s=sizes, marker="*", color="C3", edgecolors="k", lw=0.6,
                       label="selected (weight > 0; size = weight)", zorder=3)
        if m_fail.any():
            tr = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
            ax.scatter(x[m_fail], np.full(m_fail.sum(), 0.97), marker="x", color="C3", s=45, lw=1.8,
                       transform=tr, clip_on=False, label="failed (at the top)", zorder=4)
        if logy:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        if ref is not None:
            ax.axhline(ref, color="C0", ls="--", lw=1.2, label=f"ensemble {ylabel} ({ref:.3g})", zorder=1)
        ax.set_xlabel(name + (" (log)" if kind == "log" else ""))
        if p % ncols == 0:
            ax.set_ylabel(f"member {ylabel}")
        ax.grid(alpha=0.3)
    # Leave room at the top of each axis for the failed markers.
    if ok.any():
        shown = score[ok] if ref is None else np.append(score[ok], ref)
        lo, hi = float(shown.min()), float(shown.max())
        ax0 = flat[0]
        if logy:
            ax0.set_ylim(lo / 1.25, hi * (1.6 if failed.any() else 1.25))
        else:
            span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
            ax0.set_ylim(lo - 0.08 * span, hi + (0.2 if failed.any() else 0.08) * span)
    handles = {}
    for ax in flat[:n]:
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=len(handles),
               fontsize=9, frameon=False)
    sel = f", {int(selected.sum())} selected" if weights is not None else ""
    fig.suptitle(res.title(f"Hyperparameters against member {ylabel}{sel}"))
    fig.tight_layout(rect=(0, 0.05 if nrows == 1 else 0.03, 1, 1))
    return save(fig, outdir, "search.png")


FIGURES = [
    ("size_curve.png", fig_size_curve),
    ("reliability.png", fig_reliability),
    ("learning_curves.png", fig_learning_curves),
    ("disagreement.png", fig_disagreement),
    ("grad_norm.png", fig_grad_norm),
    ("search.png", fig_search),
]


def main(argv=None):
    ap = Parser(
        prog=PROG,
        description="Writes PNG figures of an ens result file and prints their paths.",
        epilog="Figures: " + ", ".join(n for n, _ in FIGURES) + ". A figure whose data the "
        "result lacks is skipped with one line. Exit 1 on a missing file or a file that "
        "is not an ens result.",
    )
    ap.add_argument("result", metavar="RESULT.h5", help="result file written by `ens train`")
    ap.add_argument("-o", "--outdir", metavar="DIR",
                    help="output directory (default: <result stem>-plots/ beside the result)")
    ap.add_argument("--data", metavar="FILE",
                    help="input data file with /test/y (default: [data] path of the result's config)")
    args = ap.parse_args(argv)
    try:
        res = Result(args.result)
        if args.data:
            check_data_file(args.data)
        outdir = args.outdir
        if not outdir:
            stem = os.path.splitext(args.result)[0]
            outdir = stem + "-plots"
        try:
            os.makedirs(outdir, exist_ok=True)
        except OSError as e:
            raise UsageError(f"{outdir}: cannot create the output directory: {e.strerror}")
        with res.f:
            for name, fn in FIGURES:
                try:
                    print(fn(res, outdir, args.data), flush=True)
                except Skip as s:
                    print(f"skipping {name}: {s}", flush=True)
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
