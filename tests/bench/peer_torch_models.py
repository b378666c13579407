#!/usr/bin/env python3
"""PyTorch CPU peer for bench_models: one torchvision model's inference and training step.

Usage: peer_torch_models.py MODEL BATCH SIZE THREADS REPS
Prints JSON {"torch": version, "infer_s": median seconds, "train_s": median seconds, "peak_rss_mb": MB}.
Inference: eval mode under no_grad. Training step: train mode, forward, cross-entropy, backward, SGD
(lr 0.01, momentum 0.9) with the gradients set to None before each step. One warm-up of each first.
"""
import json
import resource
import sys
import time

import torch
import torch.nn.functional as F
import torchvision


def median_time(fn, reps):
    fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    t.sort()
    return t[len(t) // 2]


def main():
    name, batch, size, threads, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)()
    x = torch.randn(batch, 3, size, size)
    y = torch.arange(batch) % 1000
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

    def infer():
        with torch.no_grad():
            m(x)

    def train():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(m(x), y).backward()
        opt.step()

    m.eval()
    infer_s = median_time(infer, reps)
    m.train()
    train_s = median_time(train, reps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"torch": torch.__version__, "infer_s": infer_s, "train_s": train_s, "peak_rss_mb": peak}))


if __name__ == "__main__":
    main()
