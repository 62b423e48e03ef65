#!/usr/bin/python3
"""The PyTorch peer of ens's reference workload, for scripts/bench.

Trains `--members` independent members of the reference MLP (784-512-256-10,
batch norm, ReLU, He init; SGD Nesterov 0.9, peak lr 0.05 with a per-step
cosine schedule, weight decay 5e-4, batch 128) on the same Fashion-MNIST
file ens reads (standardized with the train split's statistics, as ens
does), and prints one JSON object: seconds per epoch (training only), wall
time of the whole process, samples/s, and each member's test accuracy and
NLL. With `--procs P` it starts P processes, each with `--threads` threads,
and gives process p the members p, p+P, ... (as ens places member k on rank
k mod P).

PyTorch comes from Debian's python3-torch; scripts/bench installs it, the
test suite never needs it.
"""
import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="data/fashion.h5", help="ens input file (default %(default)s)")
    ap.add_argument("--members", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--procs", type=int, default=1, help="processes (members split over them)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=42)
    return ap.parse_args(argv)


def load(path):
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        xtr = f["train/x"][:].reshape(f["train/x"].shape[0], -1).astype(np.float32)
        ytr = f["train/y"][:].astype(np.int64)
        xte = f["test/x"][:].reshape(f["test/x"].shape[0], -1).astype(np.float32)
        yte = f["test/y"][:].astype(np.int64)
    mean = xtr.mean(axis=0, dtype=np.float64)
    std = xtr.std(axis=0, dtype=np.float64)
    std[std < 1e-6] = 1.0
    xtr = ((xtr - mean) / std).astype(np.float32)
    xte = ((xte - mean) / std).astype(np.float32)
    return xtr, ytr, xte, yte


def worker(args, rank, queue):
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    xtr, ytr, xte, yte = load(args.data)
    xtr, ytr = torch.from_numpy(xtr), torch.from_numpy(ytr)
    xte, yte = torch.from_numpy(xte), torch.from_numpy(yte)
    n = xtr.shape[0]
    steps_per_epoch = n // args.batch + (1 if n % args.batch >= 2 else 0)
    total = steps_per_epoch * args.epochs
    out = {"members": [], "epoch_seconds": []}
    for k in range(rank, args.members, args.procs):
        torch.manual_seed(args.seed * 1000 + k)
        net = nn.Sequential(
            nn.Linear(784, 512), nn.BatchNorm1d(512), nn.ReLU(),
            nn.Linear(512, 256), nn.BatchNorm1d(256), nn.ReLU(),
            nn.Linear(256, 10))
        for m in net:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                              weight_decay=5e-4)
        lossf = nn.CrossEntropyLoss()
        g = torch.Generator().manual_seed(args.seed * 1000 + k)
        step = 0
        for epoch in range(args.epochs):
            net.train()
            perm = torch.randperm(n, generator=g)
            t0 = time.perf_counter()
            for s in range(steps_per_epoch):
                idx = perm[s * args.batch:(s + 1) * args.batch]
                for group in opt.param_groups:
                    group["lr"] = 0.5 * args.lr * (1 + math.cos(math.pi * step / total))
                opt.zero_grad(set_to_none=True)
                loss = lossf(net(xtr[idx]), ytr[idx])
                loss.backward()
                opt.step()
                step += 1
            out["epoch_seconds"].append(time.perf_counter() - t0)
        net.eval()
        with torch.no_grad():
            logp = torch.log_softmax(net(xte), dim=1)
            acc = float((logp.argmax(1) == yte).float().mean())
            nll = float(-logp[torch.arange(len(yte)), yte].mean())
        out["members"].append({"k": k, "accuracy": acc, "nll": nll})
    out["wall"] = time.perf_counter() - t_start
    out["train_rows"] = int(n)
    queue.put(out)


def main(argv):
    args = parse_args(argv)
    if not os.path.exists(args.data):
        print(f"torch_peer.py: {args.data}: no such file (run scripts/demo or ens import idx)",
              file=sys.stderr)
        return 1
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch_peer.py: PyTorch is missing (apt-get install python3-torch)", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(args, r, q)) for r in range(args.procs)]
    for p in procs:
        p.start()
    outs = [q.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    members = sorted((m for o in outs for m in o["members"]), key=lambda m: m["k"])
    # Seconds per epoch of one member on one process: the fastest epoch after
    # the first (which pays for first-touch page faults).
    per_epoch = min(min(o["epoch_seconds"][1:] or o["epoch_seconds"]) for o in outs if o["epoch_seconds"])
    rows = outs[0]["train_rows"]
    print(json.dumps({"threads": args.threads, "procs": args.procs, "members": args.members,
                      "epochs": args.epochs, "wall": wall, "epoch_seconds": per_epoch,
                      "samples_per_second": rows / per_epoch, "member_results": members,
                      "torch": __import__("torch").__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
