#!/usr/bin/python3
"""Trains the reference CNN of docs/RESULTS.md in PyTorch on Fashion-MNIST
(an ens data file with /train/x (n, 28, 28)), standardized like ens's
`standardize_by = global` (mean and std of all train pixels), and saves its
two conv blocks plus Flatten as a whole pickled module for
scripts/export_torch_trunk.py. Prints the network's test accuracy as JSON."""
import argparse
import json
import time

import h5py
import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import torch
    from torch import nn
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    with h5py.File(a.data, "r") as f:
        xtr = f["/train/x"][...].astype(np.float32)
        ytr = f["/train/y"][...].astype(np.int64)
        xte = f["/test/x"][...].astype(np.float32)
        yte = f["/test/y"][...].astype(np.int64)
    mu, sd = float(xtr.astype(np.float64).mean()), float(xtr.astype(np.float64).std())
    xtr = torch.from_numpy(((xtr - mu) / sd)[:, None])
    xte = torch.from_numpy(((xte - mu) / sd)[:, None])
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)
    trunk = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    head = nn.Sequential(nn.Linear(3136, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10))
    m = nn.Sequential(trunk, head)
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = a.epochs * ((len(ytr) + 127) // 128)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for _ in range(a.epochs):
        m.train()
        perm = torch.randperm(len(ytr))
        for i in range(0, len(ytr), 128):
            idx = perm[i:i + 128]
            opt.zero_grad(set_to_none=True)
            loss_fn(m(xtr[idx]), ytr[idx]).backward()
            opt.step()
            sched.step()
    m.eval()
    with torch.no_grad():
        pred = torch.cat([m(xte[i:i + 1000]).argmax(1) for i in range(0, len(yte), 1000)])
    torch.save(trunk, a.out)
    print(json.dumps({"epochs": a.epochs, "test_accuracy": float((pred == yte).float().mean()),
                      "train_seconds": time.perf_counter() - t0, "mean": mu, "std": sd}))


if __name__ == "__main__":
    main()
