"""Writes an f16 GGUF of a (random-weight) Llama checkpoint for llama.cpp's llama-bench,
so that our decode speed and llama.cpp's can be measured on the same shape and weights.
Only speed is measured with it: the tokenizer is a placeholder SentencePiece vocabulary
of the right size, and q/k rows are not permuted.  (`gptq convert` is the real GGUF
export.)  Needs the `gguf` package from PyPI (bench/llamacpp_decode.sh installs it).

usage: gguf_f16_for_llamacpp.py MODEL_DIR OUT.gguf"""
import json
import os
import struct
import sys

import numpy as np
import gguf


def tensors(model_dir):
    files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    for fn in files:
        with open(os.path.join(model_dir, fn), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
            base = 8 + n
            for name, t in hdr.items():
                if name == "__metadata__":
                    continue
                b, e = t["data_offsets"]
                f.seek(base + b)
                raw = f.read(e - b)
                if t["dtype"] == "BF16":
                    a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
                elif t["dtype"] == "F16":
                    a = np.frombuffer(raw, dtype="<f2")
                else:
                    a = np.frombuffer(raw, dtype="<f4")
                yield name, a.reshape(t["shape"])


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    c = json.load(open(os.path.join(model_dir, "config.json")))
    w = gguf.GGUFWriter(out + ".tmp", "llama")
    head_dim = c.get("head_dim", c["hidden_size"] // c["num_attention_heads"])
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(c["hidden_size"])
    w.add_block_count(c["num_hidden_layers"])
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_rope_dimension_count(head_dim)
    w.add_head_count(c["num_attention_heads"])
    w.add_head_count_kv(c.get("num_key_value_heads", c["num_attention_heads"]))
    w.add_layer_norm_rms_eps(c["rms_norm_eps"])
    w.add_rope_freq_base(c.get("rope_theta", 10000.0))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    V = c["vocab_size"]
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % i for i in range(256)]
    toks += ["tok%d" % i for i in range(V - len(toks))]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    types += [gguf.TokenType.NORMAL] * (V - len(types))
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([0.0] * V)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for name, a in tensors(model_dir):
        if name == "model.embed_tokens.weight":
            g = "token_embd.weight"
        elif name == "model.norm.weight":
            g = "output_norm.weight"
        elif name == "lm_head.weight":
            g = "output.weight"
        else:
            parts = name.split(".")  # model.layers.N.<module...>.weight
            g = "blk.%s.%s.weight" % (parts[2], names[".".join(parts[3:-1])])
        w.add_tensor(g, a.astype(np.float32 if a.ndim == 1 else np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(out + ".tmp", out)


main()
