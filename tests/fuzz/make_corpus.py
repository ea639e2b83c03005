#!/usr/bin/env python3
"""Regenerates the seed corpora tests/fuzz/corpus/<target>/ (small files only).

Usage: python3 tests/fuzz/make_corpus.py [SHARED_DIR] [GPTQ_BIN]
SHARED_DIR defaults to ../shared; GPTQ_BIN (default build/gptq) writes a tiny random
model and quantizes it (RTN, every bit width) for the GPTQ checkpoint loader's seeds.
The seeds are derived from the shared models' own files (trimmed), the tokenizer test
fixtures' variants, and hand-written edge cases."""
import copy, json, os, shutil, struct, subprocess, sys, tempfile

import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(ROOT))
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "..", "shared")
GPTQ = sys.argv[2] if len(sys.argv) > 2 else os.path.join(REPO, "build", "gptq")
CORPUS = os.path.join(ROOT, "corpus")


def out(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, meta=None, pad=True):
    """tensors: list of (name, dtype, shape, bytes)."""
    hdr, off, blob = {}, 0, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dt, shape, data in tensors:
        hdr[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
        blob += data
    h = json.dumps(hdr, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def model_json(name):
    with open(os.path.join(SHARED, "models", name, "tokenizer.json"), "rb") as f:
        return json.load(f)


def tok_seed(tj, tcfg=None, text="Hello, World! 123 don't  stop\n\tthe <mask> world \u00e9\u4e2d"):
    s = json.dumps(tj, ensure_ascii=False, separators=(",", ":")).encode()
    s += b"\0" + (json.dumps(tcfg).encode() if tcfg is not None else b"") + b"\0" + text.encode()
    return s


def trim_bytelevel(tj, keep=400):
    """The first `keep` ids of a byte-level BPE vocabulary and the merges among them."""
    tj = copy.deepcopy(tj)
    vocab = {k: v for k, v in tj["model"]["vocab"].items() if v < keep}
    merges = []
    for m in tj["model"]["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    tj["model"]["vocab"], tj["model"]["merges"] = vocab, merges
    return tj


def patched(base, v):
    tj = copy.deepcopy(base)
    for k, val in (v.get("patch") or {}).items():
        tj[k] = val
    for k, val in (v.get("model_patch") or {}).items():
        tj["model"][k] = val
    if v.get("merges_as_strings"):
        tj["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    tj["added_tokens"] = tj.get("added_tokens", []) + (v.get("added_tokens") or [])
    return tj


def tokenizer_seeds():
    for model, trim in (("stories260K", False), ("llama-bpe-26m", True)):
        base = model_json(model)
        if trim:
            base = trim_bytelevel(base)
        with open(os.path.join(SHARED, "models", model, "tokenizer_config.json")) as f:
            tcfg = json.load(f)
        out("tokenizer", f"{model}.bin", tok_seed(base, tcfg))
        out("tokenizer", f"{model}-raw.bin", tok_seed(base))
        fx = json.load(open(os.path.join(REPO, "tests", "fixtures", f"{model}.tokens.json")))
        for v in fx["variants"]:
            out("tokenizer", f"{model}-{v['name']}.bin", tok_seed(patched(base, v), tcfg))
        for v in fx["config_variants"]:
            c = dict(tcfg)
            for k, val in v["config_patch"].items():
                if val is None:
                    c.pop(k, None)
                else:
                    c[k] = val
            out("tokenizer", f"{model}-{v['name']}.bin", tok_seed(base, c))


def safetensors_seeds():
    f32 = np.arange(6, dtype=np.float32).tobytes()
    out("safetensors", "f32.safetensors", safetensors([("w", "F32", [2, 3], f32)]))
    out("safetensors", "mixed.safetensors", safetensors([
        ("a.weight", "F16", [2, 2], np.ones(4, np.float16).tobytes()),
        ("b.weight", "BF16", [3], b"\x80\x3f" * 3),
        ("c.qweight", "I32", [1, 2], np.array([1, -1], np.int32).tobytes()),
        ("d", "F32", [], np.float32(3).tobytes()),
        ("e", "F32", [0, 4], b""),
        ("f", "I64", [1], np.int64(7).tobytes()),
        ("g", "U8", [2], b"\x01\x02"), ("h", "I8", [1], b"\xff"), ("i", "BOOL", [1], b"\x01"),
        ("j", "F64", [1], np.float64(1).tobytes()), ("k", "I16", [1], b"\x01\x00"),
    ], meta={"format": "pt"}))
    out("safetensors", "unpadded.safetensors", safetensors([("x", "F32", [1], f32[:4])], pad=False))
    out("safetensors", "empty.safetensors", safetensors([]))
    # the real header of stories260K (its data cut off: the offsets point past the end)
    with open(os.path.join(SHARED, "models", "stories260K", "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        f.seek(0)
        out("safetensors", "stories260K-header.safetensors", f.read(8 + n) + b"\0" * 64)


def index_seeds():
    wm = {"model.embed_tokens.weight": "a.safetensors", "model.norm.weight": "a.safetensors",
          "lm_head.weight": "b.safetensors"}
    out("st_index", "index.json", json.dumps({"metadata": {"total_size": 56}, "weight_map": wm}, indent=2))
    out("st_index", "one-shard.json", json.dumps({"weight_map": {"model.norm.weight": "a.safetensors"}}))
    with open(os.path.join(SHARED, "models", "llama-bpe-26m", "model.safetensors.index.json")) as f:
        real = json.load(f)
    names = sorted(real["weight_map"])[:6]
    out("st_index", "real-names.json", json.dumps({"metadata": real.get("metadata", {}),
                                                   "weight_map": {n: "a.safetensors" for n in names}}))


def config_seeds():
    for model in ("stories260K", "llama-bpe-26m"):
        out("config", f"{model}.json", open(os.path.join(SHARED, "models", model, "config.json")).read())
    base = json.load(open(os.path.join(SHARED, "models", "stories260K", "config.json")))
    variants = {
        "llama3-rope": {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}},
        "linear-rope": {"rope_scaling": {"type": "linear", "factor": 2.0}, "head_dim": 16},
        "qwen2": {"model_type": "qwen2", "eos_token_id": [2, 3, 4], "tie_word_embeddings": False},
        "mistral": {"model_type": "mistral", "attention_bias": True, "mlp_bias": True, "torch_dtype": "bfloat16"},
        "gptq": {"quantization_config": {"bits": 4, "group_size": 128, "desc_act": True, "sym": True,
                                         "static_groups": False, "damp_percent": 0.01, "true_sequential": True,
                                         "lm_head": False, "quant_method": "gptq", "checkpoint_format": "gptq",
                                         "dynamic": {"-:model\\.layers\\.0\\.mlp\\.down_proj": {}}}},
        "gptq-v2": {"quantization_config": {"bits": 3, "group_size": -1, "sym": False, "quant_method": "gptq",
                                            "checkpoint_format": "gptq_v2"}},
    }
    for name, patch in variants.items():
        c = dict(base)
        c.update(patch)
        out("config", f"{name}.json", json.dumps(c, indent=1))


def gptq_ckpt_seeds():
    """Layers of a tiny random model quantized by our own writer (RTN), renamed to "l"."""
    if not os.path.exists(GPTQ):
        print(f"{GPTQ} not built: no gptq_ckpt seeds", file=sys.stderr)
        return
    tmp = tempfile.mkdtemp()
    try:
        cfg = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
               "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300, "tie_word_embeddings": False}
        json.dump(cfg, open(os.path.join(tmp, "c.json"), "w"))
        subprocess.run([GPTQ, "random-model", "--shape", os.path.join(tmp, "c.json"), "--out", os.path.join(tmp, "m"),
                        "--dtype", "f16"], check=True, stdout=subprocess.DEVNULL)
        bits_idx = {2: 0, 3: 1, 4: 2, 8: 3}
        for bits, group, gidx, extra in ((4, 32, 1, []), (2, 64, 2, []), (3, 32, 1, ["--asym"]), (8, -1, 0, []),
                                         (4, 32, 1, ["--asym"])):
            q = os.path.join(tmp, f"q{bits}{group}{len(extra)}")
            subprocess.run([GPTQ, "quantize", "--model", os.path.join(tmp, "m"), "--out", q, "--method", "rtn",
                            "--bits", str(bits), "--group", str(group)] + extra, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with open(os.path.join(q, "model.safetensors"), "rb") as f:
                raw = f.read()
            n = struct.unpack("<Q", raw[:8])[0]
            hdr = json.loads(raw[8:8 + n])
            data = raw[8 + n:]
            pre = "model.layers.0.mlp.up_proj"  # (out 128, in 64)
            ts = []
            for suf in ("qweight", "qzeros", "scales", "g_idx"):
                e = hdr[f"{pre}.{suf}"]
                b, en = e["data_offsets"]
                ts.append((f"l.{suf}", e["dtype"], e["shape"], data[b:en]))
            # settings: bits, group (index into -1,32,64,128,...), out 128 = (7%8+1)*16, in 64 = (1%4+1)*32, sym
            head = bytes([bits_idx[bits], gidx, 7, 1, 0 if extra else 4])
            name = f"w{bits}g{group}{'-asym' if extra else ''}"
            out("gptq_ckpt", name + ".bin", head + safetensors(ts))
            if bits == 4 and not extra:
                out("gptq_ckpt", name + "-no-gidx.bin", head + safetensors(ts[:3]))
                out("gptq_ckpt", name + "-v2.bin", bytes(head[:4]) + bytes([head[4] | 1]) + safetensors(ts))
    finally:
        shutil.rmtree(tmp)


def calib_seeds():
    text = open(os.path.join(SHARED, "data", "calib", "calib_mix.txt"), encoding="utf-8").read()
    paras = [p for p in text.split("\n\n") if p.strip()][:6]
    lines = [json.dumps({"text": p[:300]}) for p in paras]
    out("calib_jsonl", "mix.jsonl", bytes([2, 16]) + ("\n".join(lines[:3]) + "\n").encode())
    out("calib_jsonl", "blank-lines.jsonl", bytes([0, 8]) + ("\n\n  \r\n".join(lines[3:]) + "\r\n").encode())
    out("calib_jsonl", "extra-fields.jsonl",
        bytes([1, 5]) + (json.dumps({"id": 1, "text": "Once upon a time \u00e9\u4e2d", "meta": [1, 2]}) + "\n").encode())
    out("calib_jsonl", "short.jsonl", bytes([3, 39]) + b'{"text": "hi"}\n')


if __name__ == "__main__":
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    tokenizer_seeds()
    safetensors_seeds()
    index_seeds()
    config_seeds()
    gptq_ckpt_seeds()
    calib_seeds()
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        size = sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)
        print(f"{t}: {len(files)} seeds, {size} bytes")
