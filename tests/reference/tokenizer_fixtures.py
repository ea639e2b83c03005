#!/usr/bin/env python3
"""Writes tests/fixtures/<model>.tokens.json: what Hugging Face produces for the test models'
tokenizers, for tests/unit/test_tokenizer.c to compare against.

For each model directory it records
  - "cases": hard-case strings with their ids from transformers' AutoTokenizer
    (encode with add_special_tokens False / True, and decode of both), plus the same from the
    `tokenizers` library reading tokenizer.json directly ("raw_*", only where it differs:
    transformers 5 rebuilds LlamaTokenizer-class tokenizers); strings are stored as UTF-8
    hex ("<key>_hex");
  - "wikitext": for the whole WikiText-2 test file (raw bytes decoded as UTF-8), the number
    of ids (add_special_tokens=False), the sha256 of the ids as little-endian int32 and the
    first 1000 ids, again for transformers and for raw `tokenizers`;
  - "variants": tokenizer.json edits (GPT-2 ByteLevel regex, ignore_merges, "a b" merges,
    Metaspace pre-tokenizers, other normalizers/decoders, added-token flags) applied by the C
    test the same way, with the raw `tokenizers` results for some strings;
  - "config_variants": tokenizer_config.json edits, with transformers' results.

Usage (from the repo root):  python3 tests/reference/tokenizer_fixtures.py [SHARED_DIR]
SHARED_DIR defaults to ../shared relative to the repo root.
"""
import copy
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = ["llama-bpe-26m", "stories260K"]
WIKI = "data/wikitext-2-raw/wiki.test.raw"

try:
    import tokenizers  # noqa: F401
    import transformers  # noqa: F401
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "transformers", "tokenizers"])
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

CASES = [
    "", " ", "  ", "hello world", "Hello, World!", "The quick brown fox jumps over the lazy dog.",
    "é", "café crème brûlée", "中文", "中文字符测试", "Ünïcödé", "日本語のテキスト", "한국어", "Ελληνικά",
    "русский текст", "naïve façade", "ǅ ß ẞ ﬁ Ω", "e\u0301 combining",
    "emoji 😀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦 family", "🏳️\u200d🌈", "❤️", "🇫🇷",
    "\n", "\n\n\n", "   x", "x   ", "trailing spaces   ", "\ttab\tseparated", "\t\t", " \t ",
    "line1\r\nline2\r\n", "\r\n\r\n", " \n \n", "a\n\n b", "a \nb", "\n  indented\n    more",
    "12345678", "3.14159", "1,000,000", "2024-01-01", "-42", "x1y22z333w4444",
    "I'LL", "don't", "we've", "She'S", "they're", "O'Neil's", "'s", "I'M 'D",
    "!!!???...", "--->", "((a+b)*c)", "$100.00", "@-@", " , . ; :", "a  b   c    d",
    "\u00a0nbsp\u00a0", "zero\u200bwidth", "x\u3000y", "\u0085next", "a\u180eb", "\u2028\u2029",
    "mixed 中文 and English 123", "\x00", "\x7f", "\x01\x02\x1f",
    "hello<|end_of_text|>world", "<|begin_of_text|>start", "<|end_of_text|>", " <|end_of_text|> ",
    "<s>", "</s>", "<s>x", "x</s>y", "\n<s>\n", "\n<s>\n hi", "a\n</s>\nb", "<unk>", "hi<unk>there",
    " <s> x", "€100", "Ꭰ ᏣᎳᎩ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\U0010FFFF", "a" * 300, " " * 200, "\n" * 50, "ab" * 100,
    " = Robert Boulter = \n Robert Boulter is an English film , television and theatre actor .",
]

# tokenizer.json edits; the C test applies them the same way (see apply_variant)
VARIANTS = [
    {"name": "gpt2-bytelevel", "base": "llama-bpe-26m", "whole_file": True,
     "patch": {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                 "use_regex": True}}},
    {"name": "gpt2-prefix-space", "base": "llama-bpe-26m",
     "patch": {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                                 "use_regex": True}}},
    {"name": "split-then-prefix", "base": "llama-bpe-26m",
     "patch": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
         {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False},
         {"type": "Digits", "individual_digits": True},
         {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": False}]}}},
    {"name": "split-behaviors", "base": "llama-bpe-26m",
     "patch": {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
         {"type": "Split", "pattern": {"Regex": "[,.]"}, "behavior": "MergedWithPrevious", "invert": False},
         {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Removed", "invert": False},
         {"type": "Split", "pattern": {"Regex": "\\p{L}+"}, "behavior": "Contiguous", "invert": True},
         {"type": "Digits", "individual_digits": False},
         {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}}},
    {"name": "ignore-merges", "base": "llama-bpe-26m", "whole_file": True,
     "model_patch": {"ignore_merges": True}},
    {"name": "string-merges", "base": "llama-bpe-26m", "merges_as_strings": True},
    {"name": "added-flags", "base": "llama-bpe-26m", "added_tokens": [
        {"id": 0, "content": "<mask>", "single_word": False, "lstrip": True, "rstrip": True,
         "normalized": False, "special": True},
        {"id": 0, "content": "wor", "single_word": True, "lstrip": False, "rstrip": False,
         "normalized": True, "special": False},
        {"id": 0, "content": "ĠSTOP", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": True, "special": False},
        {"id": 0, "content": "xyzzy", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": False}]},
    {"name": "metaspace-always", "base": "stories260K", "whole_file": True,
     "patch": {"normalizer": None,
               "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                                 "split": False}}},
    {"name": "metaspace-first-split", "base": "stories260K",
     "patch": {"normalizer": None,
               "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
                                 "split": True},
               "decoder": {"type": "Sequence", "decoders": [
                   {"type": "ByteFallback"},
                   {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True}]}}},
    {"name": "metaspace-never-unk", "base": "stories260K",
     "patch": {"normalizer": None,
               "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never",
                                 "split": True}},
     "model_patch": {"byte_fallback": False, "fuse_unk": True}},
    {"name": "nfkc-lowercase", "base": "stories260K",
     "patch": {"normalizer": {"type": "Sequence", "normalizers": [
         {"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": False, "strip_right": True},
         {"type": "Prepend", "prepend": "\u2581"},
         {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}}},
    {"name": "unk-no-fuse", "base": "stories260K", "model_patch": {"byte_fallback": False, "fuse_unk": False}},
]

# tokenizer_config.json edits (null deletes a key), compared with transformers' AutoTokenizer;
# "json_patch" edits tokenizer.json as in VARIANTS
CONFIG_VARIANTS = [
    {"name": "cfg-legacy", "base": "stories260K", "config_patch": {"legacy": True}},
    {"name": "cfg-no-prefix-space", "base": "stories260K", "config_patch": {"add_prefix_space": False}},
    {"name": "cfg-no-class", "base": "stories260K", "config_patch": {"tokenizer_class": None}},
    {"name": "cfg-no-specials", "base": "stories260K",
     "config_patch": {"bos_token": None, "eos_token": None, "unk_token": None}},
    {"name": "cfg-llama-class", "base": "llama-bpe-26m", "config_patch": {"tokenizer_class": "LlamaTokenizerFast"}},
    {"name": "cfg-extra-specials", "base": "llama-bpe-26m",
     "config_patch": {"pad_token": "<pad>", "additional_special_tokens": ["<|eot_id|>", "wor"],
                      "mask_token": {"__type": "AddedToken", "content": "<mask>", "lstrip": True,
                                     "normalized": False, "rstrip": False, "single_word": False,
                                     "special": True}}},
]

VARIANT_CASES = [
    "", " ", "hello world", "Hello, World! 123 4567", "  two  spaces  ", "don't STOP the world",
    "a<mask>b <mask> c", "xyzzyxyzzy", "sword word wor wor. _wor", "中文 😀 café", "\n\n x\t\ty",
    "ＡＢＣ ﬁ Ünïcödé", "1,000,000.5", "hello<|end_of_text|>world", " <s> \n<s>\n x", "Ω ẞ İstanbul  ",
]


def ids_sha(ids):
    return hashlib.sha256(struct.pack("<%di" % len(ids), *ids)).hexdigest()


def apply_variant(base_json, v):
    d = copy.deepcopy(base_json)
    for k, val in v.get("patch", {}).items():
        d[k] = val
    for k, val in v.get("model_patch", {}).items():
        d["model"][k] = val
    if v.get("merges_as_strings"):
        d["model"]["merges"] = [m if isinstance(m, str) else " ".join(m) for m in d["model"]["merges"]]
    d["added_tokens"] = d["added_tokens"] + v.get("added_tokens", [])
    return d


def write_config_variant(mdir, v, out):
    """The model directory's tokenizer files with v's edits, in directory `out`."""
    os.makedirs(out, exist_ok=True)
    for f in ("tokenizer.json", "config.json", "generation_config.json"):
        if os.path.exists(os.path.join(mdir, f)):
            with open(os.path.join(mdir, f), "rb") as src, open(os.path.join(out, f), "wb") as dst:
                dst.write(src.read())
    with open(os.path.join(mdir, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    for k, val in v["config_patch"].items():
        if val is None:
            cfg.pop(k, None)
        else:
            cfg[k] = val
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f)


def add_hex(rec):
    """Stores every string field as <key>_hex (UTF-8 bytes in hex), which the C side reads so
    that strings holding NUL survive; only "text" is also kept readable."""
    for k in [k for k, v in rec.items() if isinstance(v, str)]:
        rec[k + "_hex"] = rec[k].encode("utf-8").hex()
        if k != "text":
            del rec[k]
    return rec


def case_record(s, tok, raw):
    ids = tok.encode(s, add_special_tokens=False)
    ids_bos = tok.encode(s, add_special_tokens=True)
    r_ids = raw.encode(s, add_special_tokens=False).ids
    r_bos = raw.encode(s, add_special_tokens=True).ids
    rec = {"text": s, "ids": ids, "ids_bos": ids_bos, "decode": tok.decode(ids), "decode_bos": tok.decode(ids_bos),
           "raw_ids": r_ids, "raw_ids_bos": r_bos, "raw_decode": raw.decode(r_ids, skip_special_tokens=False),
           "raw_decode_bos": raw.decode(r_bos, skip_special_tokens=False)}
    for k in ("ids", "ids_bos", "decode", "decode_bos"):  # raw_* only where it differs
        if rec["raw_" + k] == rec[k]:
            del rec["raw_" + k]
    return add_hex(rec)


def whole_file(ids):
    return {"count": len(ids), "sha256": ids_sha(ids), "first": ids[:1000]}


def main():
    shared = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "..", "shared")
    shared = os.path.abspath(shared)
    with open(os.path.join(shared, WIKI), "rb") as f:
        wiki = f.read().decode("utf-8")
    out_dir = os.path.join(REPO, "tests", "fixtures")
    os.makedirs(out_dir, exist_ok=True)
    for name in MODELS:
        mdir = os.path.join(shared, "models", name)
        tok = AutoTokenizer.from_pretrained(mdir)
        raw = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
        with open(os.path.join(mdir, "tokenizer.json"), encoding="utf-8") as f:
            base_json = json.load(f)
        rec = {
            "model": name,
            "transformers_version": transformers.__version__,
            "tokenizers_version": tokenizers.__version__,
            "bos_id": tok.encode("", add_special_tokens=True)[:1],
            "vocab_size": len(tok),
            "raw_vocab_size": raw.get_vocab_size(with_added_tokens=True),
            "cases": [case_record(s, tok, raw) for s in CASES],
            "wikitext": whole_file(tok.encode(wiki, add_special_tokens=False)),
            "raw_wikitext": whole_file(raw.encode(wiki, add_special_tokens=False).ids),
            "variants": [],
        }
        for v in VARIANTS:
            if v["base"] != name:
                continue
            vt = Tokenizer.from_str(json.dumps(apply_variant(base_json, v)))
            vrec = {k: v[k] for k in v if k not in ("base",)}
            vrec["cases"] = []
            for s in VARIANT_CASES + CASES[:40]:
                ids = vt.encode(s, add_special_tokens=False).ids
                vrec["cases"].append(add_hex({"text": s, "ids": ids,
                                              "ids_bos": vt.encode(s, add_special_tokens=True).ids,
                                              "decode": vt.decode(ids, skip_special_tokens=False)}))
            if v.get("whole_file"):
                ids = vt.encode(wiki, add_special_tokens=False).ids
                vrec["wikitext"] = {"count": len(ids), "sha256": ids_sha(ids)}
            rec["variants"].append(vrec)
        rec["config_variants"] = []
        for v in CONFIG_VARIANTS:
            if v["base"] != name:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                write_config_variant(mdir, v, tmp)
                vt = AutoTokenizer.from_pretrained(tmp)
                vrec = {k: v[k] for k in v if k not in ("base",)}
                vrec["vocab_size"] = len(vt)
                vrec["cases"] = []
                for s in VARIANT_CASES + CASES[:40]:
                    ids = vt.encode(s, add_special_tokens=False)
                    ids_bos = vt.encode(s, add_special_tokens=True)
                    vrec["cases"].append(add_hex({"text": s, "ids": ids, "ids_bos": ids_bos,
                                                  "decode": vt.decode(ids), "decode_bos": vt.decode(ids_bos)}))
            rec["config_variants"].append(vrec)
        path = os.path.join(out_dir, name + ".tokens.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(rec, f, ensure_ascii=True, separators=(",", ":"))
        print("%s: %d cases, %d+%d variants, wikitext %d ids (raw %d), %d bytes" % (
            path, len(rec["cases"]), len(rec["variants"]), len(rec["config_variants"]), rec["wikitext"]["count"], rec["raw_wikitext"]["count"],
            os.path.getsize(path)))


if __name__ == "__main__":
    main()
