"""Independent check of a written GPTQ checkpoint: unpack qweight/qzeros/scales/g_idx with
numpy, following the format (v1: zero points stored minus one; values packed as a
little-endian bit stream along the packed axis, which for 3 bits is AutoGPTQ's
32-values-in-3-words layout), dequantize, and compare with the weights the quantizer
held in memory (gptq quantize --dump-dequantized) exactly.

Per-module settings (mixed precision) come from GPTQModel's "dynamic" map: the first
pattern, in file order, that matches the whole module name wins; "-:" means kept in
float, "+:" (or no prefix) overrides bits / group_size.

usage: gptq_format.py CHECKPOINT_DIR DUMP.safetensors"""
import json
import os
import re
import struct
import sys

import numpy as np

DT = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=DT[t["dtype"]]).reshape(t["shape"])
    return out


def unpack(words, bits, axis):
    """Words (int32) -> values: the words along `axis` form one little-endian bit stream."""
    w = np.ascontiguousarray(np.moveaxis(words, axis, 0)).astype("<u4")
    bitarr = np.unpackbits(w.view(np.uint8).reshape(w.shape[0], *w.shape[1:], 4), axis=-1, bitorder="little")
    bitarr = bitarr.reshape(w.shape[0], -1, 32)          # (words, other, 32)
    bitarr = np.moveaxis(bitarr, 1, -1)                   # (words, 32, other)
    stream = bitarr.reshape(w.shape[0] * 32, -1)          # (words*32, other)
    vals = stream.reshape(-1, bits, stream.shape[1])      # (values, bits, other)
    v = (vals.astype(np.int64) << np.arange(bits)[None, :, None]).sum(axis=1)
    return np.moveaxis(v.reshape(-1, *w.shape[1:]), 0, axis)


def module_setting(cfg, mod):
    """(bits, group_size) of a module, or None if "dynamic" keeps it in float."""
    for pat, over in cfg.get("dynamic", {}).items():
        neg = pat.startswith("-:")
        if pat[:2] in ("+:", "-:"):
            pat = pat[2:]
        if re.fullmatch(pat, mod):
            if neg:
                return None
            return over.get("bits", cfg["bits"]), over.get("group_size", cfg["group_size"])
    return cfg["bits"], cfg["group_size"]


def main():
    ckpt, dump = sys.argv[1], sys.argv[2]
    cfg = json.load(open(os.path.join(ckpt, "config.json")))["quantization_config"]
    qcfg = json.load(open(os.path.join(ckpt, "quantize_config.json")))
    assert cfg["quant_method"] == "gptq" and cfg["checkpoint_format"] == "gptq", cfg
    assert qcfg["bits"] == cfg["bits"] and qcfg["group_size"] == cfg["group_size"]
    t = read_safetensors(os.path.join(ckpt, "model.safetensors"))
    ref = read_safetensors(dump)
    checked = 0
    for name, want in ref.items():
        mod = name[: -len(".weight")]
        out, inp = want.shape
        setting = module_setting(cfg, mod)
        assert setting is not None, f"{mod}: quantized but excluded by a '-:' dynamic pattern"
        bits, gs = setting
        qweight, qzeros = t[mod + ".qweight"], t[mod + ".qzeros"]
        scales, g_idx = t[mod + ".scales"].astype(np.float32), t[mod + ".g_idx"]
        assert mod + ".weight" not in t, f"{mod}: float weight left next to qweight"
        assert qweight.dtype == np.int32 and qweight.shape == (inp * bits // 32, out), (mod, qweight.shape)
        groups = scales.shape[0]
        assert groups == (-(-inp // gs) if gs > 0 else 1), (mod, groups)
        assert qzeros.shape == (groups, out * bits // 32), (mod, qzeros.shape)
        assert g_idx.shape == (inp,) and g_idx.min() >= 0 and g_idx.max() < groups
        codes = unpack(qweight, bits, 0)                 # (in, out)
        zeros = (unpack(qzeros, bits, 1) + 1)            # (groups, out); v1: stored + 1
        w = (scales[g_idx, :] * (codes - zeros[g_idx, :]).astype(np.float32)).T  # (out, in)
        if not np.array_equal(w.astype(np.float32), want):
            bad = np.argwhere(w != want)[0]
            sys.exit(f"{mod}: mismatch at {tuple(bad)}: {w[tuple(bad)]} vs {want[tuple(bad)]}")
        checked += 1
    # every quantized module of the checkpoint was in the dump
    qmods = {k[: -len(".qweight")] for k in t if k.endswith(".qweight")}
    assert qmods == {k[: -len(".weight")] for k in ref}, (sorted(qmods)[:3], sorted(ref)[:3])
    widths = sorted({module_setting(cfg, m)[0] for m in qmods})
    print(f"{checked} layers unpacked independently and equal to the in-memory weights (bits {widths})")


main()
