#!/usr/bin/python3
"""The PyTorch peer of the UCI protocol (scripts/uci.py), for scripts/bench-startup.

One process runs every split in a loop, the way a PyTorch user would: for
split i it reads DIR/splitNN.h5 (the ens input layout that bench-startup
writes: /train/x, /train/y, /test/x, /test/y), standardizes inputs and
targets with the train split's statistics, trains `--members` Gaussian-head
MLPs (1 hidden layer of `--hidden` ReLU units, outputs mean and softplus
variance + 1e-6, Gaussian NLL, Adam, batches shuffled each epoch; member k
seeded with i * 1000 + k), and scores the equally weighted mixture on the
test rows in the target's units. The settings default to uci.py's (5 x [50],
40 epochs, batch 100, lr 0.01) and it uses one thread, as ens's job does
([train] threads = 1). Prints one JSON object: the process's wall time
(interpreter start and `import torch` included, measured from the parent by
bench-startup as well), and per split RMSE and NLL.
"""
import argparse
import json
import math
import os
import sys
import time

T_START = time.monotonic()


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True, help="folder with split00.h5, split01.h5, ...")
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.01)
    args = ap.parse_args(argv)

    import h5py
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(1)
    out = {"splits": []}
    for i in range(args.splits):
        path = os.path.join(args.dir, f"split{i:02d}.h5")
        with h5py.File(path, "r") as f:
            xtr = f["train/x"][()].astype(np.float32)
            ytr = f["train/y"][()].astype(np.float64).reshape(-1)
            xte = f["test/x"][()].astype(np.float32)
            yte = f["test/y"][()].astype(np.float64).reshape(-1)
        mx, sx = xtr.mean(0), xtr.std(0)
        sx[sx < 1e-12] = 1.0
        my, sy = ytr.mean(), ytr.std()
        xt = torch.from_numpy(((xtr - mx) / sx).astype(np.float32))
        yt = torch.from_numpy(((ytr - my) / sy).astype(np.float32))
        xe = torch.from_numpy(((xte - mx) / sx).astype(np.float32))
        n, d = xt.shape
        mus, vars_ = [], []
        for k in range(args.members):
            torch.manual_seed(i * 1000 + k)
            net = nn.Sequential(nn.Linear(d, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 2))
            opt = torch.optim.Adam(net.parameters(), lr=args.lr)
            for _ in range(args.epochs):
                perm = torch.randperm(n)
                for s in range(0, n, args.batch):
                    idx = perm[s:s + args.batch]
                    o = net(xt[idx])
                    mu, var = o[:, 0], nn.functional.softplus(o[:, 1]) + 1e-6
                    loss = (0.5 * torch.log(var) + (yt[idx] - mu) ** 2 / (2 * var)).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            with torch.no_grad():
                o = net(xe)
                mus.append(o[:, 0].double().numpy() * sy + my)
                vars_.append((nn.functional.softplus(o[:, 1]) + 1e-6).double().numpy() * sy * sy)
        mus, vars_ = np.stack(mus), np.stack(vars_)
        mean = mus.mean(0)
        var = (vars_ + mus ** 2).mean(0) - mean ** 2
        rmse = float(np.sqrt(np.mean((yte - mean) ** 2)))
        nll = float(np.mean(0.5 * np.log(2 * math.pi * var) + (yte - mean) ** 2 / (2 * var)))
        out["splits"].append({"split": i, "rmse": rmse, "nll": nll})
    out["wall_in_process"] = time.monotonic() - T_START
    out["torch"] = torch.__version__
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main(sys.argv[1:])
