"""Builds a mixed-precision GPTQ checkpoint from two uniform ones of the same model, as
GPTQModel writes them: the Linear layers of the blocks matching LAYER_REGEX come from
SECOND (with its bits / group_size declared by a "dynamic" override rule), the rest from
FIRST.  Used to test that per-module settings load.

usage: mix_checkpoint.py FIRST SECOND OUT LAYER_REGEX"""
import json
import os
import shutil
import struct
import sys


def read(path):
    """name -> (header entry, raw bytes) of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return {k: (v, data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items() if k != "__metadata__"}


def write(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        meta, blob = tensors[name]
        header[name] = {"dtype": meta["dtype"], "shape": meta["shape"], "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


first, second, out, regex = sys.argv[1:5]
import re

a = read(os.path.join(first, "model.safetensors"))
b = read(os.path.join(second, "model.safetensors"))
pat = re.compile(regex)
mixed = {}
for name, t in a.items():
    module = name.rsplit(".", 1)[0]
    mixed[name] = b[name] if pat.match(module) and name in b else t
shutil.copytree(first, out)
write(os.path.join(out, "model.safetensors"), mixed)
cfg = json.load(open(os.path.join(first, "config.json")))
q2 = json.load(open(os.path.join(second, "config.json")))["quantization_config"]
dyn = {"+:" + regex: {"bits": q2["bits"], "group_size": q2["group_size"], "desc_act": q2["desc_act"], "sym": q2["sym"]}}
dyn.update(cfg["quantization_config"].get("dynamic") or {})
cfg["quantization_config"]["dynamic"] = dyn
json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
qc = os.path.join(out, "quantize_config.json")
if os.path.exists(qc):
    os.remove(qc)
