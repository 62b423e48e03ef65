#!/usr/bin/python3
"""Does an ens Gaussian ensemble recover a known, input-dependent noise level?

    scripts/hetero.py [--n 4000] [--schedule auto|constant|cosine] [-o docs/UCI.md] ...

Generates tests/integration/make_regression.py's heteroscedastic data
(y = 10 (2 sin(1.5 x0) + 0.3 x1 + sigma(x0) eps) + 100, x ~ U(-3, 3)^4,
sigma(x0) = 0.05 + (x0 + 3) / 6, so the noise std in y's units is 0.5 .. 10.5;
n train rows, n / 2 test rows, one target, --data-seed), trains a 5-member
ensemble with the Gaussian loss (hidden 64,64, no batch norm, Adam lr 0.01,
60 epochs, batch 64, no weight decay, standardized inputs and targets) and
reports the figures below.

The one tuned choice, the learning-rate schedule (--schedule auto, the
default), is made without the test rows: both schedules (constant, cosine)
train on the first 80% of the train rows with the last 20% as an explicit
/val group, and the one whose ensemble NLL on those validation rows is lower
(computed here from /members/val_mean and /members/val_var as the Gaussian
with the mixture's mean and variance) then trains on all train rows.

Reported:
  * coverage_90: the fraction of test points inside the ensemble's central
    90% interval (attribute of /metrics/ensemble; the interval is that of the
    moment-matched Gaussian with /ensemble/var = aleatoric + epistemic);
  * the Pearson correlation between sqrt(/ensemble/var_aleatoric) and the
    true /test/sigma (and, for context, of sqrt(/ensemble/var), the median
    ratio predicted/true noise std, the RMSE against the noise floor
    sqrt(mean sigma^2), and the NLL of the ensemble mean with the true sigma).

The markdown section ("Heteroscedastic synthetic data") is printed and written
into -o between <!-- BEGIN hetero.py:KEY --> and <!-- END hetero.py:KEY -->,
replacing an earlier one with the same KEY (default "hetero", plus the
non-default settings). Exit codes: 0 done, 1 bad arguments, 2 ens failed.
"""
import argparse
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import uci  # noqa: E402  (update_section, machine, git_rev, Parser, job_ini)

PROG = "hetero.py"
REPO = uci.REPO
MAKE = os.path.join(REPO, "tests", "integration", "make_regression.py")
DEFAULTS = dict(n=4000, data_seed=1, seed=42, hidden="64,64", members=5, epochs=60, batch=64,
                lr=0.01, weight_decay=0.0, schedule="auto")
Z90 = 1.6448536269514722


def main(argv=None):
    p = uci.Parser(prog=PROG, description=__doc__.split("\n\n")[0],
                   epilog="See the head of scripts/hetero.py for what is measured.",
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    d = DEFAULTS
    p.add_argument("--n", type=int, default=d["n"], help=f"train rows (default {d['n']}; test n/2)")
    p.add_argument("--data-seed", type=int, default=d["data_seed"], help="make_regression.py seed (default 1)")
    p.add_argument("--seed", type=int, default=d["seed"], help="[ensemble] seed (default 42)")
    p.add_argument("--hidden", default=d["hidden"], help="default 64,64")
    p.add_argument("--members", type=int, default=d["members"], help="default 5")
    p.add_argument("--epochs", type=int, default=d["epochs"], help="default 60")
    p.add_argument("--batch", type=int, default=d["batch"], help="default 64")
    p.add_argument("--lr", type=float, default=d["lr"], help="Adam learning rate (default 0.01)")
    p.add_argument("--weight-decay", type=float, default=d["weight_decay"], help="default 0")
    p.add_argument("--schedule", choices=["auto", "constant", "cosine"], default=d["schedule"],
                   help="learning-rate schedule; auto (default): the lower validation NLL "
                   "of the two on a train/val split of the train rows")
    p.add_argument("--ens", default=os.path.join(REPO, "build", "ens"), help="ens binary")
    p.add_argument("--workdir", help="keep the data and result here (default: a temporary directory)")
    p.add_argument("-o", "--output", default=os.path.join(REPO, "docs", "UCI.md"),
                   help="markdown file (default <repo>/docs/UCI.md)")
    p.add_argument("--section", help="section key in -o (default: hetero + non-default settings)")
    a = p.parse_args(argv)
    command = shlex.join([sys.argv[0]] + (sys.argv[1:] if argv is None else argv))
    if not (os.path.isfile(a.ens) and os.access(a.ens, os.X_OK)):
        print(f"{PROG}: {a.ens}: no ens binary (build it, or give --ens)", file=sys.stderr)
        return 1
    if a.n < 100 or a.epochs < 1 or a.members < 1:
        p.error("--n must be >= 100, --epochs and --members >= 1")
    key = a.section or "hetero" + "".join(
        f"-{k.replace('_', '')}{getattr(a, k)}" for k in DEFAULTS if getattr(a, k) != DEFAULTS[k])

    t0 = time.monotonic()
    tmp = None
    if a.workdir:
        wd = a.workdir
        os.makedirs(wd, exist_ok=True)
    else:
        wd = tmp = tempfile.mkdtemp(prefix="hetero-")
    try:
        data, result = os.path.join(wd, "data.h5"), os.path.join(wd, "result.h5")
        subprocess.run([sys.executable, MAKE, data, str(a.n), "1", str(a.data_seed)], check=True)
        env = dict(os.environ)
        if os.geteuid() == 0:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        ens_secs = 0.0

        def train(data_path, result_path, schedule):
            nonlocal ens_secs
            ini = os.path.splitext(result_path)[0] + ".ini"
            with open(ini, "w") as f:
                f.write(uci.job_ini(a, data_path, result_path, a.seed, schedule))
            t1 = time.monotonic()
            r = subprocess.run([a.ens, "train", "-c", ini], capture_output=True, text=True, env=env)
            ens_secs += time.monotonic() - t1
            if r.returncode != 0:
                sys.stderr.write(r.stdout + r.stderr)
                raise RuntimeError(f"ens train -c {ini} exited {r.returncode}")

        choice = {}
        schedule = a.schedule
        if schedule == "auto":
            # Validation rows: the last 20% of the train rows (i.i.d. draws).
            vdata = os.path.join(wd, "data_val.h5")
            with h5py.File(data, "r") as f, h5py.File(vdata, "w") as g:
                n_fit = int(round(0.8 * a.n))
                for k in ("x", "y"):
                    g[f"train/{k}"] = f[f"train/{k}"][:n_fit]
                    g[f"val/{k}"] = f[f"train/{k}"][n_fit:]
                    g[f"test/{k}"] = f[f"test/{k}"][()]
                yv = f["train/y"][n_fit:].astype(np.float64).reshape(-1)
            for sch in ("constant", "cosine"):
                vres = os.path.join(wd, f"val_{sch}.h5")
                train(vdata, vres, sch)
                with h5py.File(vres, "r") as f:
                    vm = f["members/val_mean"][()].astype(np.float64)[:, :, 0]
                    vv = f["members/val_var"][()].astype(np.float64)[:, :, 0]
                # Not the val_nll attribute of /metrics/ensemble: for regression
                # ens 0.1.0 stores the validation MAE under that name.
                mu = vm.mean(0)
                var = (vv + vm ** 2).mean(0) - mu ** 2
                choice[sch] = (float(np.mean(0.5 * np.log(2 * np.pi * var) + (yv - mu) ** 2 / (2 * var))),
                               float(np.mean(np.abs(yv - mu) <= Z90 * np.sqrt(var))))
            schedule = min(choice, key=lambda k: choice[k][0])
        train(data, result, schedule)
        with h5py.File(data, "r") as f:
            y = f["test/y"][()].astype(np.float64).reshape(-1)
            sigma = f["test/sigma"][()].astype(np.float64).reshape(-1)
        with h5py.File(result, "r") as f:
            at = dict(f["metrics/ensemble"].attrs)
            mu = f["ensemble/mean"][()].astype(np.float64).reshape(-1)
            var = f["ensemble/var"][()].astype(np.float64).reshape(-1)
            alea = f["ensemble/var_aleatoric"][()].astype(np.float64).reshape(-1)
            epi = f["ensemble/var_epistemic"][()].astype(np.float64).reshape(-1)
            mvar = f["members/var"][()].astype(np.float64)[:, :, 0]
            version = f.attrs.get("ens_version", b"?")
            version = version.decode() if isinstance(version, bytes) else str(version)
    except RuntimeError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    wall = time.monotonic() - t0

    s_alea, s_tot = np.sqrt(alea), np.sqrt(var)
    corr = float(np.corrcoef(s_alea, sigma)[0, 1])
    corr_tot = float(np.corrcoef(s_tot, sigma)[0, 1])
    corr_members = [float(np.corrcoef(np.sqrt(v), sigma)[0, 1]) for v in mvar]
    ratio = float(np.median(s_alea / sigma))
    z = (y - mu) / s_tot
    cov90_re = float(np.mean(np.abs(z) <= Z90))
    # Coverage per third of the noise range: is the interval right where the
    # noise is small as well as where it is large?
    lo, hi = np.quantile(sigma, [1 / 3, 2 / 3])
    thirds = [sigma <= lo, (sigma > lo) & (sigma <= hi), sigma > hi]
    cov_thirds = [float(np.mean(np.abs(z[m]) <= Z90)) for m in thirds]
    ratio_thirds = [float(np.median(s_alea[m] / sigma[m])) for m in thirds]
    floor = float(np.sqrt(np.mean(sigma ** 2)))
    nll_true_sigma = float(np.mean(0.5 * np.log(2 * np.pi * sigma ** 2) + (y - mu) ** 2 / (2 * sigma ** 2)))
    cov90 = float(at["coverage_90"])
    ok_cov = 0.85 <= cov90 <= 0.95
    lines = [
        f"<!-- BEGIN hetero.py:{key} -->",
        "## Heteroscedastic synthetic data" + ("" if key == "hetero" else f" ({key})"),
        "",
        f"`tests/integration/make_regression.py` data: {a.n} train / {len(y)} test rows, 4 "
        f"features, one target whose noise std sigma(x) grows linearly from 0.5 to 10.5 "
        f"(y's units) across x0; the true sigma of each test row is in /test/sigma. "
        f"ens: {a.members} members, hidden {a.hidden} ReLU, no batch norm, Gaussian loss, "
        f"Adam lr {a.lr:g} ({schedule} schedule{', chosen on validation rows, see below' if choice else ''}), {a.epochs} epochs, batch {a.batch}, "
        f"weight decay {a.weight_decay:g}, standardized inputs and targets, seed {a.seed}.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| test coverage of the central 90% interval (`coverage_90`) | {100 * cov90:.1f}% "
        f"({'within' if ok_cov else 'outside'} 85–95%) |",
        f"| Pearson r, sqrt(var_aleatoric) vs true sigma | {corr:.3f} |",
        f"| Pearson r, sqrt(var) (aleatoric + epistemic) vs true sigma | {corr_tot:.3f} |",
        f"| Pearson r per member, sqrt(member var) vs true sigma | "
        f"{', '.join(f'{c:.3f}' for c in corr_members)} |",
        f"| median sqrt(var_aleatoric) / sigma (1 = right scale) | {ratio:.3f} |",
        f"| median sqrt(var_aleatoric) / sigma, low / middle / high third of sigma | "
        f"{' / '.join(f'{v:.2f}' for v in ratio_thirds)} |",
        f"| coverage_90, low / middle / high third of sigma | "
        f"{' / '.join(f'{100 * v:.1f}%' for v in cov_thirds)} |",
        f"| mean var_epistemic / mean var_aleatoric | {epi.mean() / alea.mean():.4f} |",
        f"| RMSE (noise floor sqrt(mean sigma^2) = {floor:.3f}) | {float(at['rmse']):.3f} |",
        f"| NLL (with the true sigma around the ensemble mean: {nll_true_sigma:.3f}) "
        f"| {float(at['nll']):.3f} |",
        "",
        f"- coverage_90 recomputed from /ensemble/mean and /ensemble/var: {100 * cov90_re:.1f}%.",
    ] + ([
        f"- Schedule choice (auto): trained on the first {int(round(0.8 * a.n))} train rows, "
        f"scored on the last {a.n - int(round(0.8 * a.n))}: "
        + "; ".join(f"{k}: validation NLL {v[0]:.4f}, coverage_90 {100 * v[1]:.1f}%"
                    for k, v in choice.items()) + f" -> {schedule}."] if choice else []) + [
        f"- Machine: {uci.machine()}; ens {version}, git {uci.git_rev()}; 1 rank (no mpirun).",
        f"- Command: `{command}`",
        f"- Wall time: {wall:.1f} s ({ens_secs:.1f} s in `ens train`).",
        f"<!-- END hetero.py:{key} -->",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    uci.update_section(a.output, key, text, tool="hetero.py")
    print(f"written to {a.output} (section {key})")
    if not math.isclose(cov90, cov90_re, abs_tol=1e-9):
        print(f"{PROG}: warning: coverage_90 attribute {cov90} but the stored mean/var give "
              f"{cov90_re}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
