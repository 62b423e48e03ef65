#!/usr/bin/python3
"""The deep-ensembles UCI regression protocol (Lakshminarayanan et al. 2017,
following Hernandez-Lobato & Adams 2015) run with ens, next to scikit-learn
baselines on the same splits.

    scripts/uci.py [--dataset boston|diabetes | --csv FILE --target NAME]
                   [--quick] [--lr 0.01] [-o docs/UCI.md] ...

Protocol (defaults; each has an option):
  * --splits 20 random train/test splits, --test-fraction 0.1 held out.
    Seed rule: split i (i = 0, 1, ...) is the permutation
    numpy.random.RandomState(i).permutation(n); its first
    round((1 - test_fraction) * n) rows train, the rest test. ens runs with
    [ensemble] seed = i and the random forest with random_state = i, so every
    split is reproducible on its own.
  * ens: one hidden layer of 50 ReLU units, no batch norm, 5 members (own
    seeds), Gaussian NLL loss (mean and softplus-variance heads), 40 epochs,
    batch 100, Adam with a constant learning rate 0.01 and no weight decay,
    inputs and targets standardized with the train split's statistics,
    combine = average (the Gaussian mixture's moments). No adversarial
    training (the paper's optional extra) and no validation rows.
  * Per split: the ensemble test RMSE and NLL (attributes rmse and nll of
    /metrics/ensemble, original units; the script recomputes both from
    /ensemble/mean and /ensemble/var and stops if they disagree). Reported as
    mean +- standard error over splits, s.e. = std / sqrt(splits) with the
    population std (ddof 0).
  * Baselines on the same splits (scikit-learn):
      Ridge: StandardScaler then RidgeCV over alphas 10^-3 .. 10^3 (25 values,
        log grid; efficient leave-one-out on the train split). NLL: a
        Gaussian around the prediction with the train residual variance
        mean((y - yhat)^2) on the train split (homoscedastic).
      Random forest: RandomForestRegressor(300 trees, random_state = i,
        oob_score). NLL: a Gaussian with variance = variance of the 300
        per-tree predictions at the test point + the mean squared OOB residual
        on the train split (a heuristic, see the notes in the output); also
        with the OOB residual variance alone (homoscedastic).

Data sets: --dataset boston reads scikit-learn's bundled Boston Housing CSV
(target MEDV); --dataset diabetes uses sklearn.datasets.load_diabetes
(scaled=False, bundled files; target: disease progression after one year);
--csv FILE --target NAME any numeric CSV with a header row (a first line of
counts before the header, as in scikit-learn's CSVs, is skipped).

The markdown report (table, per-split figures, machine, exact command, wall
time) is printed and written into -o as a section delimited by
<!-- BEGIN uci.py:KEY --> / <!-- END uci.py:KEY -->; an existing section with
the same KEY (default: the data set name plus the non-default settings) is
replaced and the rest of the file kept.

Exit codes: 0 done, 1 bad arguments or data, 2 ens failed on a split in a way
other than diverging members (log printed).
"""
import argparse
import csv
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

PROG = "uci.py"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOSTON_CSV = "/usr/lib/python3/dist-packages/sklearn/datasets/data/boston_house_prices.csv"
# Table 1 of Lakshminarayanan et al. (2017), "Deep Ensembles" column.
PAPER = {"boston": (3.28, 1.00, 2.41, 0.25)}
DEFAULT_LR = 0.01


class Parser(argparse.ArgumentParser):
    """Usage errors exit 1, like every ens command (argparse would exit 2)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    pass


# ----------------------------------------------------------------- data


def _numeric(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def load_csv(path, target):
    """(x [n, d] float64, y [n] float64, feature names) of a numeric CSV."""
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    if len(rows) < 3:
        raise UsageError(f"{path}: fewer than a header and two rows")
    head = 0
    # scikit-learn's CSVs start with a line of counts ("506,13,,,") before the
    # column names: skip a numeric first line followed by a non-numeric one.
    if all(_numeric(c) or not c.strip() for c in rows[0]) and not all(
            _numeric(c) for c in rows[1]):
        head = 1
    names = [c.strip().strip('"') for c in rows[head]]
    if target not in names:
        raise UsageError(f"{path}: no column {target!r} (columns: {', '.join(names)})")
    data = []
    for ln, r in enumerate(rows[head + 1:], start=head + 2):
        if len(r) != len(names):
            raise UsageError(f"{path}:{ln}: {len(r)} fields, expected {len(names)}")
        try:
            data.append([float(c) for c in r])
        except ValueError:
            raise UsageError(f"{path}:{ln}: a non-numeric field")
    data = np.asarray(data, dtype=np.float64)
    if not np.isfinite(data).all():
        raise UsageError(f"{path}: missing or non-finite values")
    t = names.index(target)
    keep = [j for j in range(len(names)) if j != t]
    return data[:, keep], data[:, t], [names[j] for j in keep]


def load_dataset(args):
    """(name, description, x, y)."""
    if args.csv:
        if not args.target:
            raise UsageError("--csv needs --target NAME")
        x, y, _ = load_csv(args.csv, args.target)
        name = args.name or os.path.splitext(os.path.basename(args.csv))[0]
        return name, f"{args.csv}, target {args.target}", x, y
    if args.target:
        raise UsageError("--target goes with --csv")
    if args.dataset == "boston":
        x, y, _ = load_csv(BOSTON_CSV, "MEDV")
        return (args.name or "boston",
                "Boston Housing (scikit-learn's bundled CSV), target MEDV (in $1000s)", x, y)
    from sklearn.datasets import load_diabetes

    d = load_diabetes(scaled=False)
    return (args.name or "diabetes",
            "Diabetes (sklearn.datasets.load_diabetes, scaled=False), target: "
            "disease progression after one year", d.data.astype(np.float64),
            d.target.astype(np.float64))


def split(n, i, test_fraction):
    perm = np.random.RandomState(i).permutation(n)
    n_train = int(round((1.0 - test_fraction) * n))
    return perm[:n_train], perm[n_train:]


# ------------------------------------------------------------------ ens


def write_input(path, x, y, tr, te):
    with h5py.File(path, "w") as f:
        f["train/x"] = x[tr].astype(np.float32)
        f["train/y"] = y[tr].astype(np.float64)
        f["test/x"] = x[te].astype(np.float32)
        f["test/y"] = y[te].astype(np.float64)


def job_ini(args, data, result, seed, schedule=None):
    """The Gaussian-head regression job of the paper's protocol (also
    scripts/hetero.py's); schedule defaults to args.schedule."""
    return f"""[data]
path = {data}
standardize = true
standardize_y = true
val_fraction = 0

[model]
task = regress
loss = gaussian
hidden = {args.hidden}
batchnorm = false

[train]
optimizer = adam
lr = {args.lr!r}
epochs = {args.epochs}
batch = {args.batch}
weight_decay = {args.weight_decay!r}
schedule = {schedule or args.schedule}
threads = 1

[ensemble]
members = {args.members}
mode = seed
combine = average
seed = {seed}

[output]
path = {result}
checkpoint_dir = {result}.ckpt
checkpoint_every = 0
progress_interval = 3600
verbose = 0
"""


def gaussian_nll(y, mu, var):
    return float(np.mean(0.5 * np.log(2.0 * np.pi * var) + (y - mu) ** 2 / (2.0 * var)))


def run_ens(args, workdir, i, x, y, tr, te):
    """dict of the split's ens figures; rmse/nll None when the run failed (exit 2)."""
    data = os.path.join(workdir, f"split{i:02d}.h5")
    result = os.path.join(workdir, f"result{i:02d}.h5")
    ini = os.path.join(workdir, f"split{i:02d}.ini")
    log = os.path.join(workdir, f"split{i:02d}.log")
    write_input(data, x, y, tr, te)
    with open(ini, "w") as f:
        f.write(job_ini(args, data, result, i))
    cmd = [args.ens, "train", "-c", ini]
    if args.np > 0:
        cmd = ["mpirun", "-np", str(args.np), "--oversubscribe"] + cmd
    env = dict(os.environ)
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    t0 = time.monotonic()
    with open(log, "w") as lf:
        rc = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, env=env).returncode
    secs = time.monotonic() - t0
    with open(log) as lf:
        text = lf.read()
    out = {"seconds": secs, "rc": rc, "rmse": None, "nll": None, "cov90": None,
           "failed": args.members, "note": ""}
    if rc == 2:
        m = re.search(r"^.*(?:member|fail|diverg|NaN).*$", text, re.M | re.I)
        # With min_members = 1 (the default), exit 2 means no member finished.
        out["note"] = m.group(0).strip() if m else (text.strip().splitlines() or ["exit 2"])[-1]
        return out
    if rc != 0:
        sys.stderr.write(text)
        raise RuntimeError(f"split {i}: '{shlex.join(cmd)}' exited {rc} (log above, {log})")
    with h5py.File(result, "r") as f:
        a = f["metrics/ensemble"].attrs
        rmse, nll = float(a["rmse"]), float(a["nll"])
        out.update(rmse=rmse, nll=nll, cov90=float(a["coverage_90"]),
                   failed=int(a.get("members_failed", 0)))
        mu = f["ensemble/mean"][()].astype(np.float64)
        var = f["ensemble/var"][()].astype(np.float64)
    yt = y[te].reshape(mu.shape)
    # The attributes must be what the stored predictions give, in y's units.
    rmse2 = float(np.sqrt(np.mean((yt - mu) ** 2)))
    nll2 = gaussian_nll(yt, mu, var)
    if not (math.isclose(rmse, rmse2, rel_tol=1e-4, abs_tol=1e-6)
            and math.isclose(nll, nll2, rel_tol=1e-4, abs_tol=1e-5)):
        raise RuntimeError(f"split {i}: /metrics/ensemble rmse {rmse} nll {nll} but "
                           f"/ensemble/mean,var give rmse {rmse2} nll {nll2} ({result})")
    return out


# ------------------------------------------------------------ baselines


def baselines(x, y, tr, te, i):
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, ytr, xte, yte = x[tr], y[tr], x[te], y[te]
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 25)))
    ridge.fit(xtr, ytr)
    mu = ridge.predict(xte)
    var = np.mean((ytr - ridge.predict(xtr)) ** 2)
    out = {"ridge_rmse": float(np.sqrt(np.mean((yte - mu) ** 2))),
           "ridge_nll": gaussian_nll(yte, mu, var),
           "ridge_alpha": float(ridge[-1].alpha_)}

    rf = RandomForestRegressor(n_estimators=300, random_state=i, oob_score=True, n_jobs=1)
    rf.fit(xtr, ytr)
    mu = rf.predict(xte)
    trees = np.stack([t.predict(xte) for t in rf.estimators_])
    oob_mse = float(np.mean((ytr - rf.oob_prediction_) ** 2))
    out.update(rf_rmse=float(np.sqrt(np.mean((yte - mu) ** 2))),
               rf_nll=gaussian_nll(yte, mu, trees.var(axis=0) + oob_mse),
               rf_nll_oob=gaussian_nll(yte, mu, oob_mse))
    return out


# --------------------------------------------------------------- report


def mean_se(v):
    v = np.asarray([a for a in v if a is not None], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std() / math.sqrt(len(v))), len(v)


def fmt(v, digits=2):
    m, se, k = mean_se(v)
    return "n/a" if k == 0 else f"{m:.{digits}f} ± {se:.{digits}f}"


def machine():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "") if rev else "?"
    except OSError:
        return "?"


def report(args, key, name, desc, n, d, ntr, nte, rows, wall, ens_secs):
    failed_splits = sum(r["rmse"] is None for r in rows)
    failed_members = sum(r["failed"] for r in rows)
    ens_label = (f"ens deep ensemble ({args.members} × [{args.hidden}] ReLU, Gaussian NLL, "
                 f"Adam lr {args.lr:g})")
    if failed_splits:
        ens_label += f" — {failed_splits}/{len(rows)} splits failed, not in the mean"
    lines = [f"<!-- BEGIN uci.py:{key} -->",
             f"## {name}" + (" (quick)" if args.quick else "") +
             ("" if args.lr == DEFAULT_LR else f", lr {args.lr:g}"),
             "",
             f"{desc}: n = {n}, {d} features; {len(rows)} random splits of "
             f"{ntr} train / {nte} test rows (split i: numpy RandomState(i) permutation, "
             f"ens seed i, forest random_state i). Mean ± standard error over splits "
             f"(std / sqrt({len(rows)}), ddof 0), original units of the target.",
             "",
             "| method | RMSE | NLL |",
             "| --- | --- | --- |",
             f"| {ens_label} | {fmt([r['rmse'] for r in rows])} | {fmt([r['nll'] for r in rows])} |",
             f"| Ridge (RidgeCV, standardized inputs; NLL: homoscedastic Gaussian, train residual variance) "
             f"| {fmt([r['ridge_rmse'] for r in rows])} | {fmt([r['ridge_nll'] for r in rows])} |",
             f"| Random forest (300 trees; NLL: Gaussian, per-tree variance + OOB residual variance) "
             f"| {fmt([r['rf_rmse'] for r in rows])} | {fmt([r['rf_nll'] for r in rows])} |",
             f"| Random forest, NLL with the OOB residual variance alone (homoscedastic) "
             f"| {fmt([r['rf_rmse'] for r in rows])} | {fmt([r['rf_nll_oob'] for r in rows])} |"]
    if name in PAPER and not args.csv:
        r, rs, l, ls = PAPER[name]
        lines.append(f"| Paper, Table 1, Deep Ensembles (Lakshminarayanan et al. 2017; reference) "
                     f"| {r:.2f} ± {rs:.2f} | {l:.2f} ± {ls:.2f} |")
    ens_ok = [r for r in rows if r["rmse"] is not None]
    std = (lambda k: float(np.std([r[k] for r in ens_ok])) if ens_ok else float("nan"))
    cov = np.mean([r["cov90"] for r in ens_ok]) if ens_ok else float("nan")
    lines += ["",
              f"- ens settings: hidden {args.hidden}, no batch norm, {args.members} members "
              f"(mode seed, combine average), {args.epochs} epochs, batch {args.batch}, Adam, "
              f"lr {args.lr:g} ({args.schedule} schedule), weight decay {args.weight_decay:g}, "
              f"standardized inputs and targets, loss gaussian.",
              f"- ens: {failed_members} of {len(rows) * args.members} members failed "
              f"(loss became NaN); {failed_splits} splits without a result (ens exit 2). "
              f"Std over splits: RMSE {std('rmse'):.2f}, NLL {std('nll'):.2f}; mean test "
              f"coverage of the central 90% interval {100 * cov:.1f}%.",
              f"- Ridge alpha chosen per split: median {np.median([r['ridge_alpha'] for r in rows]):.3g} "
              f"(range {min(r['ridge_alpha'] for r in rows):.3g}–{max(r['ridge_alpha'] for r in rows):.3g}).",
              f"- Machine: {machine()}; ens {args.ens_version}, git {git_rev()}; "
              f"ens on {'1 rank (no mpirun)' if args.np == 0 else f'{args.np} ranks'}.",
              f"- Command: `{args.command}`",
              f"- Wall time: {wall:.1f} s in all ({ens_secs:.1f} s in `ens train`, including "
              f"process start), {len(rows)} splits.",
              "",
              "<details><summary>Per split</summary>",
              "",
              "| split | ens RMSE | ens NLL | ens failed members | ens cov90 | Ridge RMSE | Ridge NLL "
              "| RF RMSE | RF NLL |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for i, r in enumerate(rows):
        e = (lambda k, p="{:.3f}": "—" if r[k] is None else p.format(r[k]))
        lines.append(f"| {i} | {e('rmse')} | {e('nll')} | {r['failed']} | "
                     f"{e('cov90', '{:.3f}')} | {r['ridge_rmse']:.3f} | {r['ridge_nll']:.3f} | "
                     f"{r['rf_rmse']:.3f} | {r['rf_nll']:.3f} |")
    lines += ["", "</details>", f"<!-- END uci.py:{key} -->", ""]
    return "\n".join(lines)


HEADER = """# UCI-style regression benchmarks

Generated by `scripts/uci.py` (the deep-ensembles UCI protocol, see its
`--help`) and `scripts/hetero.py`; each section below is replaced when its
script runs again with the same settings.

"""


def update_section(path, key, text, tool="uci.py"):
    """Writes text (BEGIN/END-delimited) into path, replacing the section KEY."""
    old = ""
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
    if not old:
        old = HEADER
    pat = re.compile(rf"<!-- BEGIN {re.escape(tool)}:{re.escape(key)} -->.*?"
                     rf"<!-- END {re.escape(tool)}:{re.escape(key)} -->\n?", re.S)
    if pat.search(old):
        new = pat.sub(lambda _: text, old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, path)


def main(argv=None):
    p = Parser(prog=PROG, description=__doc__.split("\n\n")[0],
               epilog="See the module docstring (head of scripts/uci.py) for the full protocol.",
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=["boston", "diabetes"], default="boston",
                   help="bundled data set (default boston)")
    p.add_argument("--csv", metavar="FILE", help="any numeric CSV with a header row instead")
    p.add_argument("--target", metavar="NAME", help="target column of --csv")
    p.add_argument("--name", help="data set name in the report (default: --dataset or the CSV's stem)")
    p.add_argument("--splits", type=int, help="random train/test splits (default 20; --quick: 3)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="default 0.1")
    p.add_argument("--epochs", type=int, help="default 40 (--quick: 10)")
    p.add_argument("--members", type=int, default=5, help="default 5")
    p.add_argument("--hidden", default="50", help="hidden layer widths (default 50)")
    p.add_argument("--batch", type=int, default=100, help="default 100")
    p.add_argument("--lr", type=float, default=DEFAULT_LR, help=f"Adam learning rate (default {DEFAULT_LR})")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay (default 0)")
    p.add_argument("--schedule", default="constant", help="ens lr schedule (default constant)")
    p.add_argument("--quick", action="store_true", help="3 splits, 10 epochs: a smoke test")
    p.add_argument("--ens", default=os.path.join(REPO, "build", "ens"),
                   help="ens binary (default <repo>/build/ens)")
    p.add_argument("--np", type=int, default=0, help="mpirun ranks for ens (default 0: no mpirun)")
    p.add_argument("--no-baselines", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help="keep split files and results here (default: a temporary "
                   "directory, removed at the end)")
    p.add_argument("-o", "--output", default=os.path.join(REPO, "docs", "UCI.md"),
                   help="markdown file to write the section into (default <repo>/docs/UCI.md)")
    p.add_argument("--section", help="section key in -o (default from data set and settings)")
    args = p.parse_args(argv)
    args.command = shlex.join([sys.argv[0]] + (sys.argv[1:] if argv is None else argv))
    if args.splits is None:
        args.splits = 3 if args.quick else 20
    if args.epochs is None:
        args.epochs = 10 if args.quick else 40
    if args.splits < 1 or args.epochs < 1 or args.members < 1 or not 0 < args.test_fraction < 1:
        p.error("--splits, --epochs, --members must be >= 1 and 0 < --test-fraction < 1")
    if not (os.path.isfile(args.ens) and os.access(args.ens, os.X_OK)):
        print(f"{PROG}: {args.ens}: no ens binary (build it, or give --ens)", file=sys.stderr)
        return 1
    try:
        name, desc, x, y = load_dataset(args)
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    key = args.section or name + ("-quick" if args.quick else "") + (
        "" if args.lr == DEFAULT_LR else f"-lr{args.lr:g}") + (
        "" if args.splits == (3 if args.quick else 20) else f"-{args.splits}splits")

    t0 = time.monotonic()
    tmp = None
    if args.workdir:
        workdir = args.workdir
        os.makedirs(workdir, exist_ok=True)
    else:
        workdir = tmp = tempfile.mkdtemp(prefix="uci-")
    rows, ens_secs = [], 0.0
    args.ens_version = "?"
    try:
        for i in range(args.splits):
            tr, te = split(len(y), i, args.test_fraction)
            r = run_ens(args, workdir, i, x, y, tr, te)
            ens_secs += r["seconds"]
            if r["rmse"] is not None and args.ens_version == "?":
                with h5py.File(os.path.join(workdir, f"result{i:02d}.h5"), "r") as f:
                    v = f.attrs.get("ens_version", b"?")
                    args.ens_version = v.decode() if isinstance(v, bytes) else str(v)
            r.update(baselines(x, y, tr, te, i))
            rows.append(r)
            ens = ("failed: " + str(r["note"])) if r["rmse"] is None else \
                f"rmse {r['rmse']:.3f} nll {r['nll']:.3f} failed members {r['failed']}"
            print(f"split {i:2d}: ens {ens} | ridge rmse {r['ridge_rmse']:.3f} | "
                  f"rf rmse {r['rf_rmse']:.3f}  ({r['seconds']:.1f} s)", flush=True)
    except RuntimeError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    wall = time.monotonic() - t0
    ntr, nte = (len(a) for a in split(len(y), 0, args.test_fraction))
    text = report(args, key, name, desc, len(y), x.shape[1], ntr, nte, rows, wall, ens_secs)
    print()
    print(text)
    update_section(args.output, key, text)
    print(f"written to {args.output} (section {key})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
