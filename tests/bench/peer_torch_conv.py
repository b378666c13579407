#!/usr/bin/env python3
"""PyTorch CPU peer for bench_conv: times conv2d forward+backward on the shapes given as JSON.

Usage: peer_torch_conv.py SHAPES.json THREADS REPS  -> prints JSON {"torch": "...", "times": [seconds...]}
Each shape: {"n", "cin", "cout", "h", "w", "k", "stride", "pad"}.
"""
import json
import sys
import time

import torch
import torch.nn.functional as F


def main():
    shapes = json.load(open(sys.argv[1]))
    threads, reps = int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    times = []
    for s in shapes:
        x = torch.randn(s["n"], s["cin"], s["h"], s["w"], requires_grad=True)
        w = torch.randn(s["cout"], s["cin"], s["k"], s["k"], requires_grad=True)
        y = F.conv2d(x, w, stride=s["stride"], padding=s["pad"])
        gy = torch.randn_like(y)

        def step():
            x.grad = None
            w.grad = None
            y = F.conv2d(x, w, stride=s["stride"], padding=s["pad"])
            y.backward(gy)

        step()
        samples = []
        for _ in range(reps):
            t0 = time.perf_counter()
            step()
            samples.append(time.perf_counter() - t0)
        samples.sort()
        times.append(samples[len(samples) // 2])
    print(json.dumps({"torch": torch.__version__, "times": times}))


if __name__ == "__main__":
    main()
