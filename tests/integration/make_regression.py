#!/usr/bin/python3
"""Writes a heteroscedastic synthetic regression data set in the ens input
layout: y = f(x) + sigma(x) * eps with a known noise level sigma(x) that
varies 20-fold across the input range, stored as /test/sigma so the
predicted aleatoric variance can be compared with it.
Usage: make_regression.py out.h5 [n] [targets] [seed]."""
import sys

import h5py
import numpy as np


def sigma(x0):
    # 0.05 at the left edge, 1.05 at the right: strongly input-dependent.
    return 0.05 + (x0 + 3.0) / 6.0


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    T = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    rng = np.random.default_rng(seed)
    d = 4  # x0 drives mean and noise; the others are weak or irrelevant

    def draw(m):
        x = rng.uniform(-3.0, 3.0, size=(m, d))
        s = sigma(x[:, 0])
        ys = []
        for t in range(T):
            f = np.sin(1.5 * x[:, 0] + t) * 2.0 + 0.3 * x[:, 1]
            ys.append(f + s * rng.normal(size=m))
        y = np.stack(ys, axis=1) if T > 1 else ys[0]
        return x.astype(np.float32), (y * 10.0 + 100.0).astype(np.float64), s * 10.0

    xtr, ytr, _ = draw(n)
    xte, yte, ste = draw(max(n // 2, 50))
    with h5py.File(out, "w") as f:
        f["train/x"] = xtr
        f["train/y"] = ytr
        f["test/x"] = xte
        f["test/y"] = yte
        f["test/sigma"] = ste.astype(np.float32)


if __name__ == "__main__":
    main()
