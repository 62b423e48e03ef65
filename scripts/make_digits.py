#!/usr/bin/python3
"""Writes scikit-learn's digits (sklearn.datasets.load_digits: 1797 8x8 images,
10 classes) in the ens input layout: a seeded split of 360 test rows and 1437
train rows. Usage: scripts/make_digits.py -o data/digits.h5 [--seed 0]."""
import argparse

import h5py
import numpy as np
from sklearn.datasets import load_digits


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--out", required=True, help="output HDF5 file")
    ap.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    ap.add_argument("--test", type=int, default=360, help="test rows")
    a = ap.parse_args()
    d = load_digits()
    x, y = d.data.astype(np.float32), d.target.astype(np.int32)
    p = np.random.default_rng(a.seed).permutation(len(y))
    te, tr = p[: a.test], p[a.test:]
    with h5py.File(a.out, "w") as f:
        f["/train/x"], f["/train/y"] = x[tr], y[tr]
        f["/test/x"], f["/test/y"] = x[te], y[te]
    print(f"{a.out}: {len(tr)} train, {len(te)} test rows")


if __name__ == "__main__":
    main()
