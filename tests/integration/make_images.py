#!/usr/bin/python3
"""Writes a small synthetic image data set in the ens input layout: 3 classes
(a horizontal bar, a vertical bar, a diagonal) at random places on noise,
uint8 pixels. Usage: make_images.py out.h5 [n] [size] [channels] [seed]
[--regress]. channels = 0 writes (n, H, W); otherwise (n, C, H, W).
--regress writes float targets (n, 2) instead of labels: the bar's row and
column centre, in pixels."""
import sys

import h5py
import numpy as np


def draw(rng, m, size, channels, regress):
    x = rng.normal(40.0, 20.0, size=(m, max(channels, 1), size, size))
    y = rng.integers(0, 3, size=m)
    t = np.zeros((m, 2))
    L = size // 2
    for i in range(m):
        r, c = rng.integers(1, size - L, size=2)
        ch = rng.integers(0, max(channels, 1))
        if y[i] == 0:
            x[i, ch, r, c:c + L] += 180
            t[i] = (r, c + L / 2)
        elif y[i] == 1:
            x[i, ch, r:r + L, c] += 180
            t[i] = (r + L / 2, c)
        else:
            for k in range(L):
                x[i, ch, r + k, c + k] += 180
            t[i] = (r + L / 2, c + L / 2)
    x = np.clip(x, 0, 255).astype(np.uint8)
    if channels == 0:
        x = x[:, 0]
    return x, (t.astype(np.float32) if regress else y.astype(np.uint8))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    regress = "--regress" in sys.argv
    out = args[0]
    n = int(args[1]) if len(args) > 1 else 300
    size = int(args[2]) if len(args) > 2 else 8
    channels = int(args[3]) if len(args) > 3 else 0
    seed = int(args[4]) if len(args) > 4 else 1
    rng = np.random.default_rng(seed)
    xtr, ytr = draw(rng, n, size, channels, regress)
    xte, yte = draw(rng, max(n // 3, 30), size, channels, regress)
    with h5py.File(out, "w") as f:
        f["train/x"] = xtr
        f["train/y"] = ytr
        f["test/x"] = xte
        f["test/y"] = yte
        if not regress:
            f.attrs["classes"] = 3


if __name__ == "__main__":
    main()
