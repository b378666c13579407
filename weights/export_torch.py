#!/usr/bin/env python3
"""Writes a PyTorch state_dict as a safetensors file that orbit loads (weights/safetensors.h).

  export_torch.py MODEL.pth OUT.safetensors [--dtype f32|f16|bf16] [--key state_dict] [--strip-prefix module.]
      A file saved with torch.save: a state_dict, a dict holding one under --key (for example
      "state_dict" or "model"; tried automatically when the file is not a state_dict itself), or a
      whole nn.Module.
  export_torch.py --torchvision resnet50 OUT.safetensors [--pretrained] [--seed N] [--dtype ...]
      A torchvision model: its pretrained weights (--pretrained; from torchvision's download cache,
      so they must have been downloaded before on a machine with internet), or its random
      initialization after torch.manual_seed(N).

The layout: 8 bytes of little-endian header length, a JSON header with, per tensor, "dtype" (F32,
F16, BF16, F64 or I64), "shape" and "data_offsets" (begin and end in the data section), plus
"__metadata__" (strings: "format": "pt", "source", and with --torchvision "model", and "classes" for
pretrained weights that name their categories), then the raw
little-endian data. Floating tensors are written in --dtype (default f32; orbit converts F16 and
BF16 to float32 on load); integer tensors (num_batches_tracked) as I64. Needs only torch (and
torchvision for --torchvision).
"""
import argparse
import json
import struct
import sys

import torch

DTYPES = {"f32": (torch.float32, "F32"), "f16": (torch.float16, "F16"), "bf16": (torch.bfloat16, "BF16")}


def load_state_dict(path, key):
    obj = torch.load(path, map_location="cpu")
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if not isinstance(obj, dict):
        sys.exit(f"{path}: expected a state_dict, a dict holding one or an nn.Module, got {type(obj).__name__}")
    if key is not None:
        if key not in obj:
            sys.exit(f"{path}: no key '{key}' (keys: {', '.join(map(str, obj.keys()))})")
        return obj[key]
    if all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    for k in ("state_dict", "model", "model_state_dict", "net"):
        if k in obj and isinstance(obj[k], dict):
            return obj[k]
    sys.exit(f"{path}: not a state_dict; name the entry that holds it with --key (keys: {', '.join(map(str, obj.keys()))})")


def tensor_bytes(t, float_dtype):
    t = t.detach().cpu().contiguous()
    if t.is_floating_point():
        if t.dtype == torch.float64 and float_dtype == torch.float32:
            t = t.to(torch.float32)
        elif t.dtype != torch.float64:
            t = t.to(float_dtype)
        name = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}[t.dtype]
    elif t.dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool):
        t, name = t.to(torch.int64), "I64"
    else:
        raise ValueError(f"unsupported dtype {t.dtype}")
    # A view as bytes (bfloat16 has no numpy equivalent), in the machine's (little-endian) order.
    raw = t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    if sys.byteorder != "little":
        raise SystemExit("export_torch.py: big-endian machines are not supported")
    return name, list(t.shape), raw


def write_safetensors(path, state_dict, float_dtype, metadata):
    header, chunks, offset = {}, [], 0
    for name, t in state_dict.items():
        if not isinstance(t, torch.Tensor):
            continue
        dtype, shape, raw = tensor_bytes(t, float_dtype)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # keep the data 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)
    return len(header) - 1, offset


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("input", nargs="?", help="a file saved with torch.save")
    p.add_argument("output", help="the .safetensors file to write")
    p.add_argument("--torchvision", metavar="NAME", help="export torchvision.models.NAME instead of a file")
    p.add_argument("--pretrained", action="store_true", help="with --torchvision: its default pretrained weights")
    p.add_argument("--seed", type=int, default=0, help="with --torchvision and no --pretrained: the initialization seed")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="f32", help="dtype of floating tensors (default f32)")
    p.add_argument("--key", help="the entry of the saved dict that holds the state_dict")
    p.add_argument("--strip-prefix", default="", help="removed from the start of every key (e.g. 'module.')")
    a = p.parse_args()
    meta = {"format": "pt"}
    if a.torchvision:
        import torchvision
        if a.input is not None:
            p.error("give either an input file or --torchvision, not both")
        if not hasattr(torchvision.models, a.torchvision):
            p.error(f"torchvision has no model '{a.torchvision}'")
        torch.manual_seed(a.seed)
        weights = torchvision.models.get_model_weights(a.torchvision).DEFAULT if a.pretrained else None
        try:
            model = getattr(torchvision.models, a.torchvision)(weights=weights)
        except Exception as e:  # not in the download cache, and no network
            sys.exit(f"export_torch.py: cannot get the pretrained weights of {a.torchvision} ({e}); they come from "
                     f"torchvision's download cache ({torch.hub.get_dir()}), filled on a machine with internet")
        sd = model.state_dict()
        if weights is not None and "categories" in weights.meta:
            meta["classes"] = json.dumps(weights.meta["categories"])  # `orbit predict` names the classes
        meta.update({"source": f"torchvision {torchvision.__version__}", "model": a.torchvision,
                     "weights": "DEFAULT" if a.pretrained else f"random, seed {a.seed}"})
    else:
        if a.input is None:
            p.error("give an input file or --torchvision NAME")
        sd = load_state_dict(a.input, a.key)
        meta["source"] = a.input
    if a.strip_prefix:
        sd = {(k[len(a.strip_prefix):] if k.startswith(a.strip_prefix) else k): v for k, v in sd.items()}
    n, nbytes = write_safetensors(a.output, sd, DTYPES[a.dtype][0], meta)
    print(f"wrote {a.output}: {n} tensors, {nbytes} bytes of data")


if __name__ == "__main__":
    main()
