#!/usr/bin/env python3
"""PyTorch CPU peer for bench_regularizer: the same training steps of the same model in PyTorch.

Usage: peer_torch_regularizer.py BATCH THREADS REPS
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
               p(x) detached (the one-sided form); C4 by exact quarter turns (rot90), C8 by rotating
               about the image center with bilinear interpolation and zeros outside (grid_sample);
  equitune_c4  the logits averaged over the 4 quarter turns of the batch (4B images per pass).
The kinds are interleaved, one warm-up each, so that machine noise hits them alike.
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock


class ResNetSmall(nn.Module):
    def __init__(self, width=16, num_classes=5):
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(1, w, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._layer(w, w, 1)
        self.layer2 = self._layer(w, 2 * w, 2)
        self.layer3 = self._layer(2 * w, 4 * w, 2)
        self.layer4 = self._layer(4 * w, 8 * w, 2)
        self.dropout = nn.Dropout(0.25)
        self.fc = nn.Linear(8 * w, num_classes)

    @staticmethod
    def _layer(cin, cout, stride):
        down = None
        if stride != 1 or cin != cout:
            down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        return nn.Sequential(BasicBlock(cin, cout, stride, down), BasicBlock(cout, cout))

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


def rotate_c8(x, k):
    """x [M, C, H, W] rotated by k[i] * 45 degrees about the center, bilinear, zeros outside."""
    a = k.to(x.dtype) * (math.pi / 4)
    c, s = torch.cos(a), torch.sin(a)
    z = torch.zeros_like(c)
    theta = torch.stack([torch.stack([c, -s, z], 1), torch.stack([s, c, z], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotate_c4(x, k):
    """x [M, C, H, W] rotated by k[i] quarter turns (exact)."""
    out = torch.empty_like(x)
    for q in range(1, 4):
        idx = (k == q).nonzero(as_tuple=True)[0]
        if idx.numel():
            out[idx] = torch.rot90(x[idx], q, (2, 3))
    return out


def main():
    batch, threads, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    m = ResNetSmall()
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, 28, 28)
    y = torch.arange(batch) % 5

    def step(kind):
        opt.zero_grad(set_to_none=True)
        if kind == "plain":
            loss = F.cross_entropy(m(x), y)
        elif kind == "equitune_c4":
            xs = torch.cat([torch.rot90(x, q, (2, 3)) for q in range(4)])
            logits = m(xs).view(4, batch, -1).mean(0)
            loss = F.cross_entropy(logits, y)
        else:
            order = 8 if "c8" in kind else 4
            n = batch // 2 if kind.endswith("half") else batch
            items = torch.randperm(batch)[:n].sort().values if n < batch else torch.arange(batch)
            k = torch.randint(1, order, (n,))
            xg = (rotate_c8 if order == 8 else rotate_c4)(x[items], k)
            out = m(torch.cat([x, xg]))
            logits, logits_g = out[:batch], out[batch:]
            log_ref = F.log_softmax(logits[items].detach(), 1)
            kl = (log_ref.exp() * (log_ref - F.log_softmax(logits_g, 1))).sum(1).mean()
            loss = F.cross_entropy(logits, y) + 3.0 * kl
        loss.backward()
        opt.step()

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
    print(json.dumps({"torch": torch.__version__, "ms": med}))


if __name__ == "__main__":
    main()
