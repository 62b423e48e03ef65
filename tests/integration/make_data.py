#!/usr/bin/python3
"""Writes a small synthetic tabular data set in the ens input layout:
3 classes, float64 features, int8 labels. Usage: make_data.py out.h5 [n] [d] [seed]."""
import sys

import h5py
import numpy as np


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 600
    d = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    rng = np.random.default_rng(seed)
    classes = 3
    centers = rng.normal(0.0, 1.0, size=(classes, d))
    # Two informative directions per class plus noise, on different scales
    # so that standardization matters.
    scale = np.exp(rng.uniform(-2, 3, size=d))
    def draw(m):
        y = rng.integers(0, classes, size=m)
        x = (centers[y] + rng.normal(0.0, 1.2, size=(m, d))) * scale + 5.0
        return x.astype(np.float64), y.astype(np.int8)
    xtr, ytr = draw(n)
    xte, yte = draw(max(n // 3, 30))
    with h5py.File(out, "w") as f:
        f["train/x"] = xtr
        f["train/y"] = ytr
        f["test/x"] = xte
        f["test/y"] = yte
        f.attrs["classes"] = np.int32(classes)


if __name__ == "__main__":
    main()
