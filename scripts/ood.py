#!/usr/bin/python3
"""Out-of-distribution inputs and how well ensemble uncertainty detects them.

    scripts/ood.py make DATA.h5 -o OOD.h5 --kind invert|shuffle [--seed S]
        Builds OOD inputs from /test/x of an ens input file and writes them to
        /x of OOD.h5 (same dtype and shape), which `ens predict -i` reads.
        invert:  max - x per value; max is the dtype's maximum for uint8
                 (255) and the largest value of /test/x otherwise.
        shuffle: the values of each row (image) permuted, an independent
                 permutation per row from a generator seeded with --seed.

    scripts/ood.py auroc IN_PRED.h5 OOD_PRED.h5 [--score SCORE]
        Prints the AUROC of telling the OOD rows (positives) from the
        in-distribution rows of two `ens predict` outputs by a score, higher
        = more OOD. AUROC is the Mann-Whitney statistic, ties counted 1/2:
        0.5 is chance, 1.0 perfect separation.
        Classification (/uncertainty [n, 3]: predictive entropy, expected
        member entropy, mutual information): mi (column 2, the default),
        entropy (column 0), maxprob (1 - max of /probs).
        Regression (/var, /var_epistemic [n, T]): epistemic (the members'
        disagreement, /var_epistemic, the default) or var (the predictive
        variance, /var); with several targets, the mean over targets of the
        variance divided by its mean over the in-distribution rows (so that
        no target's units dominate).
        Both files must come from the same model and settings: the same
        result (its configuration and data checksums, members and slice),
        combine rule, MC-dropout passes and calibration; a difference is an
        error naming it.

Output of auroc, one line: "AUROC 0.912345 score=mi in=N ood=N".
Exit codes: 0 done, 1 a missing or malformed file or argument.
"""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import uci  # noqa: E402  (Parser, UsageError)

PROG = "ood.py"
SCORES = {"entropy": 0, "mi": 2}
REGRESS_SCORES = {"epistemic": "/var_epistemic", "var": "/var"}
# Root attributes of an `ens predict` output that say which model and
# settings made it; two files compared must agree on each one they hold.
SETTINGS = [
    ("model_config_adler32", "the model's configuration"),
    ("model_data_checksum", "the model's training data"),
    ("members", "members used"),
    ("members_total", "members of the ensemble"),
    ("combine", "combine rule"),
    ("mc_samples", "MC-dropout passes (--mc-samples)"),
    ("temperature", "calibration temperature"),
    ("variance_scale", "calibration variance scale"),
]


# Usage errors exit 1 like every ens command (uci.Parser); UsageError ends
# the script with exit code 1.
Parser, UsageError = uci.Parser, uci.UsageError


def open_h5(path, what):
    if not os.path.isfile(path):
        raise UsageError(f"{path} ({what}): no such file")
    if not h5py.is_hdf5(path):
        raise UsageError(f"{path} ({what}): not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise UsageError(f"{path} ({what}): cannot open: {e}")


def dataset(f, path, name, what):
    d = f.get(name)
    if not isinstance(d, h5py.Dataset):
        raise UsageError(f"{path} ({what}): no dataset {name}")
    return d


def make_ood(x, kind, seed):
    """OOD version of the rows of x (first axis = rows), same dtype."""
    if kind == "invert":
        if x.dtype == np.uint8:
            top = np.iinfo(np.uint8).max
        else:
            top = x.max() if x.size else 0
        out = (np.asarray(top, dtype=np.float64) - x.astype(np.float64))
        if np.issubdtype(x.dtype, np.integer):
            info = np.iinfo(x.dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        return out.astype(x.dtype)
    if kind == "shuffle":
        rng = np.random.default_rng(seed)
        flat = x.reshape(x.shape[0], -1)
        return rng.permuted(flat, axis=1).reshape(x.shape).astype(x.dtype, copy=False)
    raise ValueError(kind)


def cmd_make(args):
    with open_h5(args.data, "input data") as f:
        d = dataset(f, args.data, "/test/x", "input data")
        if d.ndim < 2 or d.shape[0] == 0:
            raise UsageError(f"{args.data}: /test/x has shape {list(d.shape)}, expected [m, d] with m > 0")
        x = d[()]
    out = make_ood(x, args.kind, args.seed)
    tmp = args.output + ".tmp"
    try:
        with h5py.File(tmp, "w") as g:
            g["x"] = out
            g.attrs["kind"] = np.bytes_(args.kind)
            g.attrs["seed"] = np.int64(args.seed)
            g.attrs["source"] = np.bytes_(os.path.abspath(args.data))
        os.replace(tmp, args.output)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UsageError(f"{args.output}: cannot write: {e}")
    print(f"{args.output}: /x {list(out.shape)} {out.dtype} ({args.kind} of {args.data} /test/x)")
    return 0


def auroc(neg, pos):
    """P(score_pos > score_neg) + 1/2 P(equal): Mann-Whitney U / (n0 n1),
    from average ranks (ties share their mean rank)."""
    s = np.concatenate([neg, pos]).astype(np.float64)
    n0, n1 = len(neg), len(pos)
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # Average rank (1-based) over each run of equal values.
    starts = np.r_[0, np.nonzero(np.diff(sorted_s))[0] + 1]
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + 1 + b) / 2.0
    u = ranks[n0:].sum() - n1 * (n1 + 1) / 2.0
    return u / (n0 * n1)


def is_regress(f):
    return isinstance(f.get("mean"), h5py.Dataset) and not isinstance(f.get("probs"), h5py.Dataset)


def attr_value(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(-1)[0]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def check_same(inside, ood):
    """Both prediction files from the same model and settings: the task,
    the model (path and, when recorded, its configuration and data
    checksums) and every setting in SETTINGS either file records."""
    with open_h5(inside, "in-distribution predictions") as a, open_h5(ood, "OOD predictions") as b:
        ra, rb = is_regress(a), is_regress(b)
        if ra != rb:
            raise UsageError(f"{inside} holds {'regression' if ra else 'class'} predictions and {ood} "
                             f"{'regression' if rb else 'class'} predictions: not the same model")
        first = "mean" if ra else "probs"
        have = all(isinstance(f.get(first), h5py.Dataset) for f in (a, b))
        wa, wb = (a[first].shape[1:], b[first].shape[1:]) if have else (None, None)
        if wa != wb:
            raise UsageError(f"{inside} and {ood}: /{first} has {list(wa)} vs {list(wb)} columns per row: "
                             "not the same model")
        ma, mb = attr_value(a.attrs.get("model")), attr_value(b.attrs.get("model"))
        have_id = all(k in f.attrs for f in (a, b) for k in ("model_config_adler32", "model_data_checksum"))
        if not have_id and ma is not None and mb is not None and \
                os.path.realpath(str(ma)) != os.path.realpath(str(mb)):
            raise UsageError(f"{inside} was predicted by {ma} and {ood} by {mb}: not the same model")
        for key, words in SETTINGS:
            va, vb = attr_value(a.attrs.get(key)), attr_value(b.attrs.get(key))
            if va is None and vb is None:
                continue
            if va != vb:
                show = lambda v: "none" if v is None else v  # noqa: E731
                raise UsageError(f"{inside} and {ood} differ in {words} (attribute {key}: {show(va)} vs "
                                 f"{show(vb)}): run ens predict with the same model and options for both")
        return ra


def read_regress(path, what, score):
    with open_h5(path, what) as f:
        if not is_regress(f):
            raise UsageError(f"{path} ({what}): --score {score} is for regression predictions (/mean, "
                             f"/var, /var_epistemic), and this file holds class probabilities")
        d = dataset(f, path, REGRESS_SCORES[score], what)
        v = np.asarray(d[()], dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2 or len(v) == 0:
        raise UsageError(f"{path} ({what}): {REGRESS_SCORES[score]} has shape {list(v.shape)}, expected [n, T]")
    bad = int((~np.isfinite(v)).sum())
    if bad:
        raise UsageError(f"{path} ({what}): {bad} values of {REGRESS_SCORES[score]} are not finite")
    return v


def read_score(path, what, score):
    with open_h5(path, what) as f:
        if is_regress(f):
            raise UsageError(f"{path} ({what}): regression predictions have no {score} score: use "
                             "--score epistemic (default) or var")
        if score == "maxprob":
            d = dataset(f, path, "/probs", what)
            if d.ndim != 2:
                raise UsageError(f"{path} ({what}): /probs has shape {list(d.shape)}, expected [n, C]")
            v = 1.0 - np.asarray(d[()], dtype=np.float64).max(axis=1)
        else:
            d = dataset(f, path, "/uncertainty", what)
            if d.ndim != 2 or d.shape[1] != 3:
                raise UsageError(f"{path} ({what}): /uncertainty has shape {list(d.shape)}, expected [n, 3]")
            v = np.asarray(d[()], dtype=np.float64)[:, SCORES[score]]
    if len(v) == 0:
        raise UsageError(f"{path} ({what}): no rows")
    bad = int((~np.isfinite(v)).sum())
    if bad:
        raise UsageError(f"{path} ({what}): {bad} of {len(v)} rows have a non-finite {score} score")
    return v


def cmd_auroc(args):
    regress = check_same(args.inside, args.ood)
    score = args.score or ("epistemic" if regress else "mi")
    if regress and score in REGRESS_SCORES:
        a = read_regress(args.inside, "in-distribution predictions", score)
        b = read_regress(args.ood, "OOD predictions", score)
        if a.shape[1] != b.shape[1]:
            raise UsageError(f"{args.inside} and {args.ood}: {a.shape[1]} vs {b.shape[1]} targets")
        # Each target's variance in units of its in-distribution mean.
        scale = a.mean(axis=0)
        scale[scale <= 0] = 1.0
        neg, pos = (a / scale).mean(axis=1), (b / scale).mean(axis=1)
    elif score in REGRESS_SCORES:
        raise UsageError(f"{args.inside}: --score {score} is for regression predictions; class "
                         "predictions take mi (default), entropy or maxprob")
    else:
        neg = read_score(args.inside, "in-distribution predictions", score)
        pos = read_score(args.ood, "OOD predictions", score)
    args.score = score
    print(f"AUROC {auroc(neg, pos):.6f} score={args.score} in={len(neg)} ood={len(pos)}")
    return 0


def main(argv=None):
    ap = Parser(
        prog=PROG,
        description="Builds out-of-distribution inputs and scores OOD detection by ensemble uncertainty.",
        epilog="Typical use: ood.py make data.h5 -o ood.h5 --kind invert; ens predict -m result.h5 "
        "-i data.h5 -o in.h5; ens predict -m result.h5 -i ood.h5 -o out.h5; ood.py auroc in.h5 out.h5",
    )
    sub = ap.add_subparsers(dest="command", metavar="{make,auroc}")
    sub.required = True
    mk = sub.add_parser("make", help="write OOD inputs /x built from /test/x of an input file",
                        description="Writes /x of OOD.h5 (same dtype and shape as /test/x of DATA.h5). "
                        "invert: max - x (max = 255 for uint8, else the largest value of /test/x); "
                        "shuffle: each row's values permuted with a seeded generator.")
    mk.add_argument("data", metavar="DATA.h5", help="ens input file with /test/x")
    mk.add_argument("-o", "--output", metavar="OOD.h5", required=True, help="output file (written atomically)")
    mk.add_argument("--kind", required=True, choices=["invert", "shuffle"], help="how to build the OOD inputs")
    mk.add_argument("--seed", type=int, default=0, help="generator seed for shuffle (default 0)")
    au = sub.add_parser("auroc", help="AUROC of OOD rows against in-distribution rows",
                        description="Prints 'AUROC A score=S in=N ood=N': the Mann-Whitney AUROC "
                        "(ties 1/2) of OOD rows (positives) against in-distribution rows, "
                        "higher score = more OOD. Both files must come from the same model and "
                        "ens predict options.")
    au.add_argument("inside", metavar="IN_PRED.h5", help="ens predict output for in-distribution inputs")
    au.add_argument("ood", metavar="OOD_PRED.h5", help="ens predict output for OOD inputs")
    au.add_argument("--score", default=None, choices=["mi", "entropy", "maxprob", "epistemic", "var"],
                    help="classification: mi: mutual information (/uncertainty col 2, default); "
                    "entropy: predictive entropy (col 0); maxprob: 1 - max of /probs. regression: "
                    "epistemic: /var_epistemic (default); var: predictive variance /var")
    args = ap.parse_args(argv)
    try:
        return cmd_make(args) if args.command == "make" else cmd_auroc(args)
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
