#!/usr/bin/env python3
"""PyTorch GPU peer for bench_cuda: a torchvision model's training step and inference on cuda:0.

Usage: peer_torch_cuda.py MODEL BATCH SIZE REPS TF32 [BENCHMARK [PROFILE]]
Prints JSON {"torch": version, "train_s", "infer_s": median seconds, "peak_mb": max_memory_allocated}.
Eager mode, float32; TF32 for matmuls and cuDNN as asked (0: off, as Orbit's default);
torch.backends.cudnn.benchmark as asked (0, the default: off; 1: timed search of the convolution
algorithms, the equivalent of Orbit's conv algorithm policy "search"). Training step:
train mode, forward, cross-entropy, backward, SGD (lr 0.01, momentum 0.9), gradients set to None first.
One warm-up of each, then the median of REPS timed runs, each ended by torch.cuda.synchronize().
PROFILE 1: one more training step under torch.profiler, whose GPU time per kernel goes to stderr
(the 40 largest), to set beside Orbit's from ncu (orbit_bench_cuda --profile 1).
"""
import json
import sys
import time

import torch
import torch.nn.functional as F
import torchvision


def median_time(fn, reps):
    fn()
    torch.cuda.synchronize()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        t.append(time.perf_counter() - t0)
    t.sort()
    return t[len(t) // 2]


def main():
    name, batch, size, reps, tf32 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = len(sys.argv) > 6 and sys.argv[6] == "1"
    torch.manual_seed(0)
    dev = torch.device("cuda:0")
    m = getattr(torchvision.models, name)().to(dev)
    x = torch.randn(batch, 3, size, size, device=dev)
    y = torch.arange(batch, device=dev) % 1000
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
    torch.cuda.reset_peak_memory_stats()
    train_s = median_time(train, reps)
    peak = torch.cuda.max_memory_allocated() / 2**20
    if len(sys.argv) > 7 and sys.argv[7] == "1":
        from torch.profiler import ProfilerActivity, profile
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            train()
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=40, max_name_column_width=110)
        print(table, file=sys.stderr)
    print(json.dumps({"torch": torch.__version__, "train_s": train_s, "infer_s": infer_s, "peak_mb": peak}))


if __name__ == "__main__":
    main()
