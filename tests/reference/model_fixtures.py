#!/usr/bin/env python3
"""Reference fixtures for the C forward pass (logits, greedy decoding, WikiText-2 perplexity).

Run from the repository root:

    python3 tests/reference/model_fixtures.py [SHARED_DIR] [--models NAME ...] [--variants]

SHARED_DIR defaults to ../shared relative to the repository root. For every model in
SHARED_DIR/models that this script knows (stories260K, llama-bpe-26m) it writes
tests/fixtures/<model>.model.json. It needs torch and transformers; CI does not run it,
CI only reads the JSON files it produces.

--variants additionally evaluates WikiText-2 perplexity under alternative tokenization
conventions (BOS once at the start, "\\n\\n".join of lines) and records them under
"wikitext2_variants". They are informational only and take ~3x longer for the 26M model.
The default output always has "wikitext2" (file as-is, CRLF kept) and "wikitext2_lf"
(CRLF -> LF before tokenizing).
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import sys
import time

import torch

try:
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
except ImportError:  # pragma: no cover
    sys.exit("model_fixtures.py: transformers is required (pip install transformers)")

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FIXTURE_DIR = os.path.join(REPO_ROOT, "tests", "fixtures")

MODELS = ["stories260K", "llama-bpe-26m"]

PROMPTS = [
    "Zoo",
    "Once upon a time, there was a little",
    (
        "The old lighthouse stood at the edge of the cliff, its white paint peeling after many "
        "years of wind and salt. Every evening the keeper climbed the narrow stairs to light the "
        "lamp, and every morning he wrote a few lines in a worn leather book. Ships passed "
        "safely through the dark water because of him, although most sailors never knew his "
        "name. One winter a storm broke the great window at the top of the tower, and the keeper "
        "worked through the night to keep the flame burning until the sun came up."
    ),
    "On 12/03/2021 at 09:45, the price rose 3.5% (from $1,204.99 to $1,247.16) -- see item #42; total: 7+8=15!",
]

GREEDY_PROMPT = "Zoo"
GREEDY_NEW_TOKENS = 60

STORIES_EXPECTED = (
    "Zoo was a little girl named Lily. She loved to play outside in the park. One day, she saw a "
    "big, red ball. She wanted to play with it, but she didn't want to play with it."
)

WIKI_REL = os.path.join("data", "wikitext-2-raw", "wiki.test.raw")
CTX = 512
CTX_SMALL = 256
CTX_SMALL_WINDOWS = 8
BATCH = 8  # windows per forward; 32 for small vocabularies
N_PER_WINDOW_NLL = 16

METRIC = (
    "For a logits vector: err = max_i |ours[i] - ref[i]| / max_i |ref[i]|; pass if err <= 1e-3. "
    "Applied separately to logits_pos0 and logits_last of each prompt."
)

PROTOCOL = (
    "Model: AutoModelForCausalLM.from_pretrained(dir, dtype=float32, attn_implementation='eager'), "
    "eval(), torch.no_grad(), torch.set_num_threads(2), CPU, use_cache=False for scoring. "
    "Prompts: ids = tokenizer(prompt)['input_ids'] (the tokenizer's default special tokens, i.e. "
    "BOS prepended); one forward over the whole prompt; logits_pos0 = logits at position 0 (the BOS "
    "position), logits_last = logits at the last position; top5_last = ids of the 5 largest "
    "logits_last (descending). Greedy: model.generate(ids, do_sample=False, num_beams=1, "
    "max_new_tokens=60) on the BOS-prefixed prompt 'Zoo' (stops early at EOS, EOS included in the "
    "ids); text = tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=True). "
    "WikiText-2 (GPTQ protocol): text = wiki.test.raw read as UTF-8 exactly as-is (the bytes "
    "decoded; its CRLF line ends are kept, no newline translation, no re-joining of lines); ids = tokenizer(text, add_special_tokens=False)['input_ids'] tokenized once, no BOS; "
    "n_windows = n_tokens // ctx non-overlapping windows ids[w*ctx:(w+1)*ctx], remainder dropped; "
    "each window is an independent sequence (positions 0..ctx-1, no BOS inserted); window NLL = "
    "mean over t=0..ctx-2 of -log_softmax(logits[t])[ids[t+1]] (ctx-1 predictions, log_softmax in "
    "float64 of the float32 logits); ppl = exp(mean of window NLLs) accumulated in float64 (all "
    "windows have equal length, so this equals the token mean). ppl_first_N uses only the first N "
    "windows. The ctx=256 check uses the same token stream cut into 256-token windows, first 8 only. "
    "'wikitext2_lf' is the same protocol with CRLF -> LF applied to the text before tokenizing "
    "(the file has CRLF line ends; Python text-mode reads give LF). "
    "Floats are rounded to 7 significant digits."
)


# --------------------------------------------------------------------------------------------
# helpers


def log(msg):
    print(msg, flush=True)


def r7(x):
    """Round a float to 7 significant digits (keeps JSON small, well above 1e-3 checks)."""
    x = float(x)
    if x == 0.0 or not math.isfinite(x):
        return x
    return float("%.7g" % x)


def r7list(t):
    return [r7(v) for v in t.detach().to(torch.float64).reshape(-1).tolist()]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def to_json(obj, indent=0):
    """JSON with objects indented and lists of scalars kept on one line."""
    pad = " " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = []
        for k, v in obj.items():
            items.append(pad + "  " + json.dumps(str(k)) + ": " + to_json(v, indent + 2))
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in obj):
            return "[" + ",".join(json.dumps(v, ensure_ascii=False) for v in obj) + "]"
        items = [pad + "  " + to_json(v, indent + 2) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError("non-finite float in fixture")
        return repr(obj)
    return json.dumps(obj, ensure_ascii=False)


def version_tuple(v):
    out = []
    for part in v.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def load_model(model_dir):
    # transformers >= 4.56 (and 5.x) call the argument `dtype`; older ones `torch_dtype`.
    kw = dict(attn_implementation="eager")
    if version_tuple(transformers.__version__) >= (4, 56):
        dtype_kw = "dtype"
    else:
        dtype_kw = "torch_dtype"
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, **{dtype_kw: torch.float32}, **kw)
    except TypeError:
        other = "torch_dtype" if dtype_kw == "dtype" else "dtype"
        model = AutoModelForCausalLM.from_pretrained(model_dir, **{other: torch.float32}, **kw)
    model = model.float().eval()
    for p in model.parameters():
        assert p.dtype == torch.float32
    return model


def forward_logits(model, ids_2d):
    out = model(input_ids=ids_2d, use_cache=False)
    return out.logits.float()


# --------------------------------------------------------------------------------------------
# fixture parts


def prompt_fixtures(model, tok):
    res = []
    for p in PROMPTS:
        ids = list(tok(p)["input_ids"])
        logits = forward_logits(model, torch.tensor([ids], dtype=torch.long))[0]
        last = logits[-1]
        top5 = torch.topk(last, 5).indices.tolist()
        res.append(
            {
                "text": p,
                "n_tokens": len(ids),
                "input_ids": ids,
                "top5_last": top5,
                "top5_pos0": torch.topk(logits[0], 5).indices.tolist(),
                "max_abs_last": r7(last.abs().max()),
                "max_abs_pos0": r7(logits[0].abs().max()),
                "logits_pos0": r7list(logits[0]),
                "logits_last": r7list(last),
            }
        )
        log("    prompt %-40r n=%3d top5_last=%s" % (p[:40], len(ids), top5))
    return res


def greedy_fixture(model, tok, name):
    ids = list(tok(GREEDY_PROMPT)["input_ids"])
    x = torch.tensor([ids], dtype=torch.long)
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = model.config.eos_token_id
    eos_list = eos if isinstance(eos, list) else [eos]
    out = model.generate(
        input_ids=x,
        attention_mask=torch.ones_like(x),
        do_sample=False,
        num_beams=1,
        max_new_tokens=GREEDY_NEW_TOKENS,
        pad_token_id=eos_list[0],
    )
    all_ids = out[0].tolist()
    new_ids = all_ids[len(ids):]

    # Cross-check against a cache-free argmax loop (guards against KV-cache path differences).
    seq = list(ids)
    for _ in range(GREEDY_NEW_TOKENS):
        nxt = int(torch.argmax(forward_logits(model, torch.tensor([seq]))[0, -1]))
        seq.append(nxt)
        if nxt in eos_list:
            break
    if seq != all_ids:
        raise RuntimeError("%s: generate() and the no-cache argmax loop disagree" % name)

    text = tok.decode(all_ids, skip_special_tokens=True)
    res = {
        "prompt": GREEDY_PROMPT,
        "max_new_tokens": GREEDY_NEW_TOKENS,
        "eos_token_ids": eos_list,
        "prompt_ids": ids,
        "new_ids": new_ids,
        "n_new": len(new_ids),
        "stopped_at_eos": bool(new_ids) and new_ids[-1] in eos_list,
        "text": text,
    }
    if name == "stories260K":
        res["expected_text"] = STORIES_EXPECTED
        res["matches_expected"] = text.strip() == STORIES_EXPECTED
        log("    greedy matches shared/README expectation: %s" % res["matches_expected"])
    log("    greedy (%d new, eos=%s): %r" % (len(new_ids), res["stopped_at_eos"], text))
    return res


def window_nlls(model, ids, ctx, max_windows=None, label=""):
    n_windows = len(ids) // ctx
    if max_windows is not None:
        n_windows = min(n_windows, max_windows)
    data = torch.tensor(ids[: n_windows * ctx], dtype=torch.long).view(n_windows, ctx)
    nlls = []
    t0 = time.time()
    batch = BATCH if model.config.vocab_size > 4096 else 4 * BATCH
    for b in range(0, n_windows, batch):
        x = data[b : b + batch]
        logits = forward_logits(model, x)[:, :-1, :].to(torch.float64)
        logp = torch.log_softmax(logits, dim=-1)
        tgt = x[:, 1:].unsqueeze(-1)
        nll = -logp.gather(-1, tgt).squeeze(-1)  # [B, ctx-1], float64
        nlls.extend(nll.mean(dim=1).tolist())
        done = b + x.shape[0]
        if done == n_windows or (b // batch) % 10 == 9:
            el = time.time() - t0
            log(
                "    %s ctx %d: %d/%d windows, running ppl %.4f, %.1fs (eta %.0fs)"
                % (label, ctx, done, n_windows, math.exp(sum(nlls) / len(nlls)), el,
                   el / done * (n_windows - done))
            )
    return nlls


def ppl_of(nlls):
    acc = 0.0
    for v in nlls:  # python floats: float64
        acc += v
    return math.exp(acc / len(nlls))


def wikitext_block(model, ids, label):
    nlls = window_nlls(model, ids, CTX, label=label)
    n_windows = len(nlls)
    res = {
        "n_tokens": len(ids),
        "first_ids": ids[:32],
        "last_ids": ids[-32:],
        "ctx": CTX,
        "n_windows": n_windows,
        "n_tokens_used": n_windows * CTX,
        "ppl": r7(ppl_of(nlls)),
        "ppl_first_4": r7(ppl_of(nlls[:4])),
        "ppl_first_16": r7(ppl_of(nlls[:16])),
        "mean_nll": r7(sum(nlls) / n_windows),
        "window_nll_first_16": [r7(v) for v in nlls[:N_PER_WINDOW_NLL]],
    }
    small = window_nlls(model, ids, CTX_SMALL, max_windows=CTX_SMALL_WINDOWS, label=label)
    res["ctx256"] = {
        "ctx": CTX_SMALL,
        "n_windows": len(small),
        "ppl": r7(ppl_of(small)),
        "window_nll": [r7(v) for v in small],
    }
    log(
        "    %s: ppl %.4f (first 4: %.4f, first 16: %.4f); ctx256 x8: %.4f"
        % (label, res["ppl"], res["ppl_first_4"], res["ppl_first_16"], res["ctx256"]["ppl"])
    )
    return res


def wikitext_fixture(model, tok, wiki_path, name):
    with open(wiki_path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")  # exactly as-is: CRLF kept
    head = {
        "file": "data/wikitext-2-raw/wiki.test.raw",
        "file_sha256": hashlib.sha256(raw).hexdigest(),
        "n_bytes": len(raw),
        "n_chars": len(text),
    }
    ids = list(tok(text, add_special_tokens=False)["input_ids"])
    log("    wikitext2 (as-is): %d chars -> %d tokens" % (len(text), len(ids)))
    main = dict(head)
    main["text_transform"] = "none (file bytes decoded as UTF-8; CRLF kept)"
    main.update(wikitext_block(model, ids, name + " as-is"))

    # The shared wiki.test.raw has CRLF line ends. Reading it in Python text mode
    # (open(path).read(), universal newlines) turns them into LF, which changes the token
    # stream; record that too so either convention can be checked.
    lf_text = text.replace("\r\n", "\n")
    lf_ids = list(tok(lf_text, add_special_tokens=False)["input_ids"])
    log("    wikitext2 (CRLF->LF): %d chars -> %d tokens" % (len(lf_text), len(lf_ids)))
    lf = dict(head)
    lf["text_transform"] = "CRLF -> LF before tokenizing (what Python text-mode open().read() gives)"
    lf.update(wikitext_block(model, lf_ids, name + " CRLF->LF"))
    return main, lf, text


def wikitext_variants(model, tok, text, label):
    """Alternative conventions seen in GPTQ-style evaluations, for comparison only."""
    bos = tok.bos_token_id
    if bos is None or bos >= model.config.vocab_size:
        bos = model.config.bos_token_id
    lf = text.replace("\r\n", "\n")  # what open(path).read() (universal newlines) gives
    joined = "\n\n".join(text.splitlines())  # '\n\n'.join(lines), line ends stripped
    enc = lambda s: list(tok(s, add_special_tokens=False)["input_ids"])
    base, lf_ids, j_ids = enc(text), enc(lf), enc(joined)
    out = {}
    for key, ids, desc in [
        ("bos_once", [bos] + base, "raw text, one BOS prepended to the whole token stream"),
        ("lf_bos_once", [bos] + lf_ids, "CRLF -> LF, one BOS prepended"),
        ("join_lines", j_ids, "'\\n\\n'.join(text.splitlines()), no BOS"),
        ("join_lines_bos_once", [bos] + j_ids, "'\\n\\n'.join(text.splitlines()), one BOS prepended"),
    ]:
        log("    variant %s: %d tokens" % (key, len(ids)))
        nlls = window_nlls(model, ids, CTX, label=label + "/" + key)
        out[key] = {
            "description": desc,
            "n_tokens": len(ids),
            "n_windows": len(nlls),
            "ppl": r7(ppl_of(nlls)),
            "ppl_first_16": r7(ppl_of(nlls[:16])),
        }
        log("    variant %s: ppl %.4f" % (key, out[key]["ppl"]))
    return out


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("shared", nargs="?", default=os.path.join(REPO_ROOT, "..", "shared"),
                    help="shared dir with models/ and data/ (default: ../shared from the repo root)")
    ap.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    ap.add_argument("--variants", action="store_true",
                    help="also record WikiText-2 ppl under alternative conventions (slow)")
    ap.add_argument("--out", default=FIXTURE_DIR, help="output dir (default tests/fixtures)")
    args = ap.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    try:
        torch.use_deterministic_algorithms(True)
    except Exception:
        pass
    try:
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:
        pass

    shared = os.path.abspath(args.shared)
    wiki_path = os.path.join(shared, WIKI_REL)
    if not os.path.isdir(os.path.join(shared, "models")):
        sys.exit("model_fixtures.py: %s/models not found" % shared)
    if not os.path.isfile(wiki_path):
        sys.exit("model_fixtures.py: %s not found" % wiki_path)
    os.makedirs(args.out, exist_ok=True)

    try:
        import tokenizers
        tokenizers_version = tokenizers.__version__
    except Exception:
        tokenizers_version = None

    for name in args.models:
        mdir = os.path.join(shared, "models", name)
        if not os.path.isdir(mdir):
            log("skip %s: %s not found" % (name, mdir))
            continue
        t_model = time.time()
        log("== %s" % name)
        model = load_model(mdir)
        tok = AutoTokenizer.from_pretrained(mdir)
        cfg = model.config
        fixture = {
            "model": name,
            "metric": METRIC,
            "tolerance": 1e-3,
            "config": {
                "vocab_size": cfg.vocab_size,
                "hidden_size": cfg.hidden_size,
                "num_hidden_layers": cfg.num_hidden_layers,
                "num_attention_heads": cfg.num_attention_heads,
                "num_key_value_heads": cfg.num_key_value_heads,
                "bos_token_id": cfg.bos_token_id,
                "eos_token_id": cfg.eos_token_id,
                "tie_word_embeddings": bool(getattr(cfg, "tie_word_embeddings", False)),
            },
        }
        with torch.no_grad():
            log("  prompts")
            fixture["prompts"] = prompt_fixtures(model, tok)
            log("  greedy")
            fixture["greedy"] = greedy_fixture(model, tok, name)
            log("  wikitext2")
            fixture["wikitext2"], fixture["wikitext2_lf"], text = wikitext_fixture(
                model, tok, wiki_path, name)
            if args.variants:
                log("  wikitext2 variants")
                fixture["wikitext2_variants"] = wikitext_variants(model, tok, text, name)
        fixture["meta"] = {
            "generator": "tests/reference/model_fixtures.py",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers_version,
            "torch_threads": torch.get_num_threads(),
            "device": "cpu",
            "model_dir": "models/" + name,
            "config_json_sha256": sha256_file(os.path.join(mdir, "config.json")),
            "tokenizer_json_sha256": sha256_file(os.path.join(mdir, "tokenizer.json"))
            if os.path.isfile(os.path.join(mdir, "tokenizer.json")) else None,
            "protocol": PROTOCOL,
        }
        path = os.path.join(args.out, name + ".model.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(to_json(fixture) + "\n")
        log("  wrote %s (%d bytes) in %.0fs" % (os.path.relpath(path, REPO_ROOT),
                                               os.path.getsize(path), time.time() - t_model))
        del model


if __name__ == "__main__":
    main()
