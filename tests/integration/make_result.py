#!/usr/bin/python3
"""Writes a synthetic ens result in the full layout (search mode, greedy
selection weights, a failed member, learning curves, uncertainty; or a
regression result) together with its data file, so that scripts/plot.py can
be exercised on datasets `ens train` may not write yet.

Usage: make_result.py RESULT.h5 DATA.h5 [--task classify|regress]
                      [--members M] [--failed K,K..] [--seed S]
The data file holds only /test/x and /test/y; the result's config names it.
"""
import argparse

import h5py
import numpy as np


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(p, y):
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())


def acc(p, y):
    return float((p.argmax(axis=1) == y).mean())


def brier(p, y):
    return float(((p - np.eye(p.shape[1])[y]) ** 2).sum(axis=1).mean())


def ece(p, y, bins=15):
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    b = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    out = 0.0
    for i in range(bins):
        m = b == i
        if m.any():
            out += abs(correct[m].sum() - conf[m].sum())
    return out / len(y)


def entropy(p):
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=-1)


def hyper(rng, k, M):
    return {
        "lr": float(10 ** rng.uniform(-3.5, 0)),
        "weight_decay": float(0.0 if k % 5 == 4 else 10 ** rng.uniform(-6, -2)),
        "momentum": float(rng.uniform(0.5, 0.99)),
        "dropout": float(rng.choice([0.0, 0.1, 0.3, 0.5])),
        "batch": int(rng.choice([32, 64, 128, 256])),
        "hidden": str(rng.choice(["128", "256,128", "512,256", "1024,512,256"])),
        "init": str(rng.choice(["he", "xavier", "orthogonal", "normal"])),
        "batchnorm": int(rng.integers(0, 2)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("result")
    ap.add_argument("data")
    ap.add_argument("--task", default="classify", choices=["classify", "regress"])
    ap.add_argument("--members", type=int, default=12)
    ap.add_argument("--failed", default="3")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    M = a.members
    failed = {int(s) for s in a.failed.split(",") if s != ""}
    n, n_val, d, epochs = 400, 150, 8, 12
    hp = [hyper(rng, k, M) for k in range(M)]
    # Member quality: best near lr = 0.03, worse far from it.
    quality = np.array([1.0 / (1.0 + (np.log10(h["lr"]) + 1.5) ** 2) for h in hp])

    with h5py.File(a.result, "w") as f:
        f.attrs["ens_version"] = np.bytes_("0.1.0")
        f.attrs["config"] = np.bytes_(f"[data]\npath = {a.data}\nval_fraction = 0.2\n\n[ensemble]\nmode = search\n")
        f.attrs["task"] = np.bytes_(a.task)
        f.attrs["mode"] = np.bytes_("search")
        f.attrs["combine"] = np.bytes_("select" if a.task == "classify" else "average")
        f.attrs["members"] = np.int64(M)
        f.attrs["first_member"] = np.int64(0)
        for k in range(M):
            g = f.create_group(f"members/{k}")
            for key, v in hp[k].items():
                g.attrs[key] = np.bytes_(v) if isinstance(v, str) else v
            run = epochs
            if k in failed:
                run = 4 + k % 5
                g.attrs["status"] = np.bytes_("failed")
                g.attrs["fail_epoch"] = np.int64(run)
                g.attrs["fail_reason"] = np.bytes_("non-finite training loss")
            else:
                g.attrs["status"] = np.bytes_("done")
                g.attrs["fail_epoch"] = np.int64(-1)
                g.attrs["fail_reason"] = np.bytes_("")
                g["params"] = rng.normal(size=50).astype(np.float32)
            ep = np.arange(1, run + 1)
            base = 0.3 + 1.5 * np.exp(-ep * (0.2 + quality[k])) + rng.normal(0, 0.02, run)
            if k in failed:
                base[-2] = 40.0
                base[-1] = np.nan
            g["curve_train_loss"] = base.astype(np.float32)
            if a.task == "classify":
                ev = 0.5 + 0.4 * quality[k] * (1 - np.exp(-ep / 3)) + rng.normal(0, 0.01, run)
                metric = "accuracy"
            else:
                ev = 0.4 + 1.5 * np.exp(-ep * (0.2 + quality[k])) + rng.normal(0, 0.01, run)
                metric = "rmse"
            if k in failed:
                ev[-1] = np.nan
            g["curve_eval"] = ev.astype(np.float32)
            g["curve_eval"].attrs["metric"] = np.bytes_(metric)
            g["curve_eval"].attrs["split"] = np.bytes_("val")

        if a.task == "classify":
            C = 10
            y = rng.integers(0, C, n)
            yv = rng.integers(0, C, n_val)
            signal = 4.0 * np.eye(C)

            def member_probs(yy, k):
                z = signal[yy] * (0.3 + quality[k]) + rng.normal(0, 1.0, (len(yy), C)) * 1.6
                return softmax(z * (1.3 + 0.5 * quality[k]))

            P = np.stack([member_probs(y, k) for k in range(M)]).astype(np.float32)
            PV = np.stack([member_probs(yv, k) for k in range(M)]).astype(np.float32)
            for k in failed:
                P[k] = np.nan
                PV[k] = np.nan
            ok = [k for k in range(M) if k not in failed]
            # Greedy selection with replacement on validation NLL.
            counts = np.zeros(M)
            s = np.zeros_like(PV[0], dtype=np.float64)
            for step in range(M):
                best = min(ok, key=lambda k: nll((s + PV[k]) / (step + 1), yv))
                counts[best] += 1
                s += PV[best]
            w = counts / counts.sum()
            ens = np.tensordot(w[ok], P[ok].astype(np.float64), axes=1)
            f["members/probs"] = P
            f["members/val_probs"] = PV
            f["ensemble/probs"] = ens.astype(np.float32)
            f["ensemble/pred"] = ens.argmax(axis=1).astype(np.int32)
            f["ensemble/weights"] = w.astype(np.float32)
            unc = np.stack(
                [entropy(ens), np.mean([entropy(P[k]) for k in ok], axis=0), np.zeros(n)], axis=1
            )
            unc[:, 2] = unc[:, 0] - unc[:, 1]
            f["ensemble/uncertainty"] = unc.astype(np.float32)
            nan = float("nan")
            mm = lambda fn, PP, yy: np.array([fn(PP[k], yy) if k not in failed else nan for k in range(M)])  # noqa: E731
            f["metrics/member_accuracy"] = mm(acc, P, y)
            f["metrics/member_nll"] = mm(nll, P, y)
            f["metrics/member_brier"] = mm(brier, P, y)
            f["metrics/member_ece"] = mm(ece, P, y)
            f["metrics/member_val_accuracy"] = mm(acc, PV, yv)
            f["metrics/member_val_nll"] = mm(nll, PV, yv)
            ca, cn = [], []
            for k in range(M):
                use = [j for j in ok if j <= k]
                if not use:
                    ca.append(nan)
                    cn.append(nan)
                    continue
                pk = P[use].mean(axis=0)
                ca.append(acc(pk, y))
                cn.append(nll(pk, y))
            f["metrics/curve_accuracy"] = np.array(ca)
            f["metrics/curve_nll"] = np.array(cn)
            pred = P.argmax(axis=2)
            dis = np.array([[float((pred[i] != pred[j]).mean()) for j in range(M)] for i in range(M)])
            for k in failed:
                dis[k, :] = nan
                dis[:, k] = nan
            f["metrics/disagreement"] = dis
            e = f.create_group("metrics/ensemble")
            e.attrs["accuracy"] = acc(ens, y)
            e.attrs["nll"] = nll(ens, y)
            e.attrs["brier"] = brier(ens, y)
            e.attrs["ece"] = ece(ens, y)
            bm = int(np.nanargmin(f["metrics/member_val_nll"][()]))
            e.attrs["best_member"] = np.int64(bm)
            e.attrs["best_member_nll"] = float(f["metrics/member_nll"][bm])
            e.attrs["best_member_accuracy"] = float(f["metrics/member_accuracy"][bm])
            avg = P[ok].mean(axis=0)
            e.attrs["average_nll"] = nll(avg, y)
            e.attrs["average_accuracy"] = acc(avg, y)
            e.attrs["temperature"] = 1.0
            e.attrs["nll_uncalibrated"] = nll(ens, y)
            e.attrs["ece_uncalibrated"] = ece(ens, y)
            yt = y.astype(np.int8)
        else:
            T = 2
            truth = rng.normal(0, 2.0, (n, T))
            yt = truth + rng.normal(0, 0.5, (n, T))
            means, vars_ = [], []
            for k in range(M):
                bias = rng.normal(0, 0.4, (n, T)) * (1.2 - quality[k])
                means.append(truth + bias)
                vars_.append(np.full((n, T), (0.35 + 0.3 * (k % 3)) ** 2))
            means, vars_ = np.array(means), np.array(vars_)
            for k in failed:
                means[k] = np.nan
                vars_[k] = np.nan
            ok = [k for k in range(M) if k not in failed]
            em = means[ok].mean(axis=0)
            ale = vars_[ok].mean(axis=0)
            epi = means[ok].var(axis=0)
            f["members/mean"] = means.astype(np.float32)
            f["members/var"] = vars_.astype(np.float32)
            f["ensemble/mean"] = em.astype(np.float32)
            f["ensemble/var"] = (ale + epi).astype(np.float32)
            f["ensemble/var_aleatoric"] = ale.astype(np.float32)
            f["ensemble/var_epistemic"] = epi.astype(np.float32)

            def gnll(m, v):
                return float((0.5 * np.log(2 * np.pi * v) + 0.5 * (yt - m) ** 2 / v).mean())

            def rmse(m):
                return float(np.sqrt(((yt - m) ** 2).mean()))

            nan = float("nan")
            f["metrics/member_rmse"] = np.array([rmse(means[k]) if k not in failed else nan for k in range(M)])
            f["metrics/member_nll"] = np.array([gnll(means[k], vars_[k]) if k not in failed else nan for k in range(M)])
            cr, cn = [], []
            for k in range(M):
                use = [j for j in ok if j <= k]
                if not use:
                    cr.append(nan)
                    cn.append(nan)
                    continue
                m = means[use].mean(axis=0)
                v = vars_[use].mean(axis=0) + means[use].var(axis=0)
                cr.append(rmse(m))
                cn.append(gnll(m, v))
            f["metrics/curve_rmse"] = np.array(cr)
            f["metrics/curve_nll"] = np.array(cn)
            e = f.create_group("metrics/ensemble")
            e.attrs["rmse"] = rmse(em)
            e.attrs["nll"] = gnll(em, ale + epi)
            yt = yt.astype(np.float32)
    with h5py.File(a.data, "w") as f:
        f["test/x"] = rng.normal(size=(n, d)).astype(np.float32)
        f["test/y"] = yt


if __name__ == "__main__":
    main()
