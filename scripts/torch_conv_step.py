#!/usr/bin/python3
"""PyTorch peer of ens-bench-conv: times training steps of the reference CNN
(conv3x3 1->32 pad 1 + BN + ReLU, maxpool 2, conv3x3 32->64 pad 1 + BN + ReLU,
maxpool 2, flatten, dense 3136->128 + BN + ReLU, dense 128->10; SGD Nesterov
0.9, weight decay 5e-4) on random batches, and prints one JSON object with
the seconds per step (the fastest of --rounds rounds of --steps steps).
Used by scripts/bench-conv; Debian's python3-torch (1.13, oneDNN convs)."""
import argparse
import json
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    import torch
    from torch import nn
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(3136, 128), nn.BatchNorm1d(128), nn.ReLU(),
                      nn.Linear(128, 10))
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(a.batch, 1, 28, 28)
    y = torch.randint(0, 10, (a.batch,))
    loss_fn = nn.CrossEntropyLoss()
    m.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(m(x), y)
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up (oneDNN primitive creation)
        step()
    best = None
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        dt = (time.perf_counter() - t0) / a.steps
        best = dt if best is None else min(best, dt)
    print(json.dumps({"torch": torch.__version__, "threads": a.threads, "batch": a.batch,
                      "step_seconds": best}))


if __name__ == "__main__":
    main()
