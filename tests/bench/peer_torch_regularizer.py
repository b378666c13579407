#!/usr/bin/env python3
"""PyTorch peer for bench_regularizer: the same training steps of the same model in PyTorch.

Usage: peer_torch_regularizer.py BATCH THREADS REPS [DEVICE]
DEVICE is cpu (the default) or cuda; on the GPU every step ends with torch.cuda.synchronize().
Prints JSON {"torch": version, "ms": {kind: median milliseconds}} for the kinds
plain, reg_c4, reg_c4_half, reg_c8, reg_c8_half, equitune_c4.

The model is resnet_small (models/resnet_small.h) built from torchvision's BasicBlock: a 3x3 stride-1
stem conv (16 channels) with batch norm and ReLU and no max pool, layer1..layer4 of two BasicBlocks
each (16, 32, 64, 128 channels, first-block strides 1, 2, 2, 2), global average pooling, dropout 0.25
and a 5-class Linear head. A step is forward, cross-entropy, backward and Adam (lr 1e-3), with the
gradients set to None first, on a batch of 1x28x28 images in train mode; the kinds are as in
bench_regularizer.cpp:
  plain        the model on the batch;
  reg_*        the batch and one transformed copy of every item (or of half of the items, drawn at
               random) in one forward and one backward pass; penalty 3 * mean KL(p(x) || p(g x)) with
               p(x) detached (the one-sided form); quarter turns exact (rot90), the odd multiples of 45
               degrees of C8 by rotating about the image center with bilinear interpolation and zeros
               outside (grid_sample), as Orbit's C8 action does;
  equitune_c4  the logits averaged over the 4 quarter turns of the batch (4B images per pass).
The kinds are interleaved, one warm-up each, so that machine noise hits them alike.
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

# The model, the group actions and the regularized loss are those of the PyTorch check of the study
# (train/torch_crosscheck.py), so that the two stay one implementation.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "train"))
from torch_crosscheck import ResNetSmall, c4_average, regularized_loss  # noqa: E402


def main():
    batch, threads, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    dev = torch.device(sys.argv[4] if len(sys.argv) > 4 else "cpu")
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    m = ResNetSmall(dropout=0.25).to(dev)
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, 28, 28).to(dev)
    y = (torch.arange(batch) % 5).to(dev)

    def step(kind):
        opt.zero_grad(set_to_none=True)
        if kind == "plain":
            loss = F.cross_entropy(m(x), y)
        elif kind == "equitune_c4":
            loss = F.cross_entropy(c4_average(m, x), y)
        else:
            order = 8 if "c8" in kind else 4
            n = batch // 2 if kind.endswith("half") else batch
            items = torch.randperm(batch, device=dev)[:n].sort().values if n < batch else None
            loss = regularized_loss(m, x, y, torch.randint(1, order, (n,), device=dev), order, 3.0, items)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    kinds = ["plain", "reg_c4", "reg_c4_half", "reg_c8", "reg_c8_half", "equitune_c4"]
    for k in kinds:
        step(k)
    times = {k: [] for k in kinds}
    for _ in range(reps):
        for k in kinds:
            t0 = time.perf_counter()
            step(k)
            times[k].append((time.perf_counter() - t0) * 1e3)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print(json.dumps({"torch": torch.__version__, "device": str(dev), "ms": med}))


if __name__ == "__main__":
    main()
