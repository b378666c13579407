#!/usr/bin/env python3
"""The fine-tuning step of a study, written again in PyTorch: an independent check of Orbit's numbers.

Starting from the pretrained model.safetensors that `orbit study` wrote (or any resnet_small weight file
of an orbit run), this fine-tunes the same architecture on the same images with the same protocol as the
study's fine-tuning config, for a few of its methods, and evaluates upright and on the C4 and C8 orbits
of the test set. If both engines implement the methods alike, their numbers agree within the spread
over seeds (the subsets, initial heads and batch orders differ: the two engines draw their own random
numbers).

Usage (Debian's python3-torch; not part of the tests):
  /usr/bin/python3 train/torch_crosscheck.py --config train/configs/study_fashion_reversed.json \
      [--regime 10%] [--methods plain,aug_c4,aug_c8,ours_c8] [--seeds 0,1,2] [--threads 2] [--out FILE]

Methods:
  plain      plain fine-tuning
  aug_c4     a random element of C4 (identity included) applied to every training image
  aug_c8     the same over C8
  ours_c4    the regularizer over C4 at lambda 3 (one sampled non-identity element per image, KL from the
             detached upright prediction, the original and transformed images in one forward pass)
  ours_c8    the same over C8
  equi_c4    equi-tuning over C4 (logits averaged over the group in training and at test)

What is the same as Orbit: the model (models/resnet_small.h; torchvision's BasicBlock), the input
normalization from the weight file's metadata (group actions apply to raw pixels, background 0), a new
5-class head with PyTorch's default Linear initialization, no dropout, Adam, cosine schedule per epoch,
batch size, epochs, a stratified share of the training images, quarter turns as exact pixel permutations
and 45-degree turns by bilinear sampling with zeros outside (affine_grid / grid_sample, align_corners
false), and the metrics (accuracy, orbit accuracy = mean accuracy over the group's transforms, orbit
consistency = share of test images predicted alike on the whole orbit).
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock


class ResNetSmall(nn.Module):
    """models/resnet_small.h: dropout (0 in fine-tuning runs, 0.25 the model's own default) before fc."""

    def __init__(self, width=16, num_classes=5, in_channels=1, dropout=0.0):
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(in_channels, w, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._layer(w, w, 1)
        self.layer2 = self._layer(w, 2 * w, 2)
        self.layer3 = self._layer(2 * w, 4 * w, 2)
        self.layer4 = self._layer(4 * w, 8 * w, 2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
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


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file, F32 and I64 entries."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    dtypes = {"F32": torch.float32, "I64": torch.int64}
    out = {}
    for name, e in header.items():
        if e["dtype"] not in dtypes:
            raise ValueError(f"{path}: tensor {name} has dtype {e['dtype']}; expected F32 or I64")
        a, b = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=dtypes[e["dtype"]]) if b > a else torch.empty(0, dtype=dtypes[e["dtype"]])
        out[name] = t.reshape(e["shape"]).clone()
    return out, meta


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    magic, = struct.unpack(">I", raw[:4])
    dims = magic & 0xFF
    shape = struct.unpack(">" + "I" * dims, raw[4:4 + 4 * dims])
    return torch.frombuffer(bytearray(raw[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


def load_split(data_dir, prefix, classes):
    x = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte")).float().div(255.0)
    y = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte")).long()
    keep = torch.zeros_like(y, dtype=torch.bool)
    relabel = torch.full((256,), -1, dtype=torch.long)
    for i, c in enumerate(classes):
        keep |= y == c
        relabel[c] = i
    return x[keep].unsqueeze(1), relabel[y[keep]]


def stratified(y, fraction, gen):
    idx = []
    for c in y.unique():
        members = (y == c).nonzero().flatten()
        k = max(1, round(fraction * len(members)))
        idx.append(members[torch.randperm(len(members), generator=gen)[:k]])
    return torch.cat(idx).sort().values


def rotate(x, k, order):
    """x [M, C, H, W] rotated by k[i] * 360 / order degrees per image (k a tensor [M])."""
    if order == 4:
        out = x.clone()
        for q in range(1, 4):
            idx = (k == q).nonzero(as_tuple=True)[0]
            if idx.numel():
                out[idx] = torch.rot90(x[idx], q, (2, 3))
        return out
    a = k.to(x.dtype) * (2 * math.pi / order)
    c, s = torch.cos(a), torch.sin(a)
    z = torch.zeros_like(c)
    theta = torch.stack([torch.stack([c, -s, z], 1), torch.stack([s, c, z], 1)], 1)
    # Quarter turns of C8 exactly, as Orbit's rotate does.
    quarter = (k % 2 == 0)
    out = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    if quarter.any():
        out[quarter] = rotate(x[quarter], k[quarter] // 2, 4)
    return out


def regularized_loss(net, x, y, k, order, lam, items=None):
    """Cross-entropy on x plus lam times the one-sided regularizer: the items of x (all by default)
    rotated by k (non-identity elements) go through net in the same forward pass as x, and the penalty
    is the mean KL from the detached prediction of each item to that of its rotated copy."""
    xr = x if items is None else x[items]
    out = net(torch.cat([x, rotate(xr, k, order)]))
    logits, logits_g = out[:len(x)], out[len(x):]
    log_ref = F.log_softmax((logits if items is None else logits[items]).detach(), 1)
    kl = (log_ref.exp() * (log_ref - F.log_softmax(logits_g, 1))).sum(1).mean()
    return F.cross_entropy(logits, y) + lam * kl


def c4_average(net, x):
    """Equi-tuning over C4: the logits of net averaged over the 4 quarter turns of x, in one pass."""
    xs = torch.cat([torch.rot90(x, q, (2, 3)) for q in range(4)])
    return net(xs).view(4, len(x), -1).mean(0)


def evaluate(net, x, y, batch=500):
    """Accuracy, and per order (4, 8) orbit accuracy and consistency of the function net (eval mode)."""
    res = {}
    with torch.no_grad():
        for order in (4, 8):
            preds = []
            for k in range(order):
                p = []
                for i in range(0, len(x), batch):
                    xb = x[i:i + batch]
                    p.append(net(rotate(xb, torch.full((len(xb),), k), order)).argmax(1))
                preds.append(torch.cat(p))
            P = torch.stack(preds)  # [order, N]
            res[f"C{order}"] = {"orbit_accuracy": (P == y).float().mean().item(),
                                "consistency": (P == P[0]).all(0).float().mean().item()}
            res["accuracy"] = (P[0] == y).float().mean().item()
    return res


def finetune(method, seed, cfg, fraction, weights, data_dir):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    ft = cfg["finetune"]
    classes = ft["classes"]
    sd, meta = read_safetensors(weights)
    norm = json.loads(meta["normalization"])
    mean, std = norm["mean"][0], norm["std"][0]
    model = ResNetSmall(num_classes=5)
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected or any(not k.startswith("fc.") for k in missing):
        raise ValueError(f"{weights}: unexpected {unexpected}, missing {missing}")
    model.fc = nn.Linear(model.fc.in_features, len(classes))

    def net(x):
        return model((x - mean) / std)

    x_all, y_all = load_split(data_dir, "train", classes)
    keep = stratified(y_all, fraction, gen)
    x_tr, y_tr = x_all[keep], y_all[keep]
    x_te, y_te = load_split(data_dir, "t10k", classes)
    opt = torch.optim.Adam(model.parameters(), lr=ft["lr"])
    epochs, bs = ft["epochs"], ft["batch_size"]
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    lam = 3.0
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(perm), bs):
            b = perm[i:i + bs]
            xb, yb = x_tr[b], y_tr[b]
            if method in ("aug_c4", "aug_c8"):
                order = 4 if method == "aug_c4" else 8
                xb = rotate(xb, torch.randint(0, order, (len(xb),), generator=gen), order)
            if method in ("ours_c4", "ours_c8"):
                order = 4 if method == "ours_c4" else 8
                k = torch.randint(1, order, (len(xb),), generator=gen)
                loss = regularized_loss(net, xb, yb, k, order, lam)
            elif method == "equi_c4":
                loss = F.cross_entropy(c4_average(net, xb), yb)
            else:
                loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    train_s = time.time() - t0
    model.eval()
    res = evaluate((lambda x: c4_average(net, x)) if method == "equi_c4" else net, x_te, y_te)
    res.update({"method": method, "seed": seed, "train_images": len(x_tr), "train_seconds": train_s})
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--regime", default=None, help="the study's regime name (default: its first)")
    ap.add_argument("--methods", default="plain,aug_c4,aug_c8,ours_c8")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default=None, help="default: OUT_DIR/pretrain/model.safetensors of the study")
    ap.add_argument("--out", default=None, help="JSON results (default: OUT_DIR/torch_crosscheck.json)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(a.config))
    regimes = cfg["regimes"]
    regime = regimes[0] if a.regime is None else next((r for r in regimes if r["name"] == a.regime), None)
    if regime is None:
        sys.exit(f"--regime {a.regime}: not among {[r['name'] for r in regimes]}")
    known = {"plain", "aug_c4", "aug_c8", "ours_c4", "ours_c8", "equi_c4"}
    methods = a.methods.split(",")
    for m in methods:
        if m not in known:
            sys.exit(f"--methods: unknown method {m!r}; expected some of {sorted(known)}")
    if cfg["finetune"]["model"] != "resnet_small" or cfg["finetune"]["dataset"] != "fashion-mnist":
        sys.exit("this check builds resnet_small on fashion-mnist only")
    weights = a.weights or os.path.join(cfg["out_dir"], "pretrain", "model.safetensors")
    if not os.path.isfile(weights):
        sys.exit(f"{weights}: no such weight file (run the study's pretraining first, or pass --weights)")
    data_dir = cfg["finetune"].get("data_dir", "data") + "/fashion-mnist"
    runs = []
    for m in methods:
        for s in [int(v) for v in a.seeds.split(",")]:
            r = finetune(m, s, cfg, regime["fraction"], weights, data_dir)
            runs.append(r)
            print(f"{m:8s} seed {s}: upright {100 * r['accuracy']:.1f}  C4 orbit {100 * r['C4']['orbit_accuracy']:.1f}  "
                  f"C8 orbit {100 * r['C8']['orbit_accuracy']:.1f}  C4 consistency {100 * r['C4']['consistency']:.1f}  "
                  f"({r['train_seconds']:.0f} s)", flush=True)
    print(f"\nPyTorch {torch.__version__}, {regime['name']} of the training images, mean ± std over seeds {a.seeds}:")
    print("| method | upright | C4 orbit | C8 orbit | C4 consistency |\n|---|---|---|---|---|")
    summary = {}
    for m in methods:
        rs = [r for r in runs if r["method"] == m]

        def ms(f):
            v = torch.tensor([100 * f(r) for r in rs])
            return v.mean().item(), (v.std().item() if len(v) > 1 else 0.0)
        cols = [ms(lambda r: r["accuracy"]), ms(lambda r: r["C4"]["orbit_accuracy"]),
                ms(lambda r: r["C8"]["orbit_accuracy"]), ms(lambda r: r["C4"]["consistency"])]
        summary[m] = cols
        print(f"| {m} | " + " | ".join(f"{mu:.1f} ± {sd:.1f}" for mu, sd in cols) + " |")
    out = a.out or os.path.join(cfg["out_dir"], "torch_crosscheck.json")
    with open(out, "w") as f:
        json.dump({"torch": torch.__version__, "config": a.config, "regime": regime, "weights": weights,
                   "runs": runs}, f, indent=1)
    print(f"(runs in {out})")


if __name__ == "__main__":
    main()
