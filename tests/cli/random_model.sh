#!/bin/bash
# gptq random-model: a tiny checkpoint from a config.json written here; files, inspect,
# determinism (same seed: identical bytes; other seed: different), refusal to overwrite,
# --force, and one-line errors that leave no output behind.
set -u
BIN=${GPTQ_BIN:?GPTQ_BIN not set}
T=${GPTQ_TMP:-/tmp/gptq-test}/cli_random_model
rm -rf "$T" && mkdir -p "$T" || exit 1
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
sha() { sha256sum "$@" | awk '{print $1}' | tr '\n' ' '; }

cat > "$T/tiny.json" <<'EOF'
{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": 96,
  "intermediate_size": 256,
  "num_hidden_layers": 2,
  "num_attention_heads": 6,
  "num_key_value_heads": 2,
  "vocab_size": 2048,
  "max_position_embeddings": 512,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "tie_word_embeddings": false,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "torch_dtype": "bfloat16"
}
EOF

# 1. write (sharded: ~1.5 MB of weights in 0.4 MB shards)
if "$BIN" random-model --shape "$T/tiny.json" --out "$T/m1" --seed 7 --shard-mb 0.4 > "$T/out1" 2> "$T/err1"; then
  ok "random-model writes ($(cat "$T/out1"))"
else
  bad "random-model failed: $(cat "$T/err1")"
fi
for f in config.json generation_config.json tokenizer.json tokenizer_config.json model.safetensors.index.json; do
  [ -s "$T/m1/$f" ] && ok "$f exists" || bad "$f missing"
done
n_shards=$(ls "$T/m1"/model-*-of-*.safetensors 2>/dev/null | wc -l)
[ "$n_shards" -ge 2 ] && ok "$n_shards shards" || bad "expected several shards, got $n_shards"
grep -q '"torch_dtype":[[:space:]]*"bfloat16"' "$T/m1/config.json" && ok "dtype from the config (bf16)" || bad "config dtype"
grep -q '"total_size"' "$T/m1/model.safetensors.index.json" && ok "index has total_size" || bad "index lacks total_size"
ls -d "$T"/m1.tmp.* >/dev/null 2>&1 && bad "temporary directory left" || ok "no temporary directory left"

# 2. inspect reads it (model and tokenizer)
if "$BIN" inspect "$T/m1" --json > "$T/inspect" 2> "$T/inspect.err"; then
  tail -1 "$T/inspect" | grep -q '"vocab": 2048' && ok "inspect: vocab 2048" || bad "inspect output: $(tail -1 "$T/inspect")"
  tail -1 "$T/inspect" | grep -q '"layers": 2' && ok "inspect: 2 layers" || bad "inspect layers"
  grep -qi 'byte-level' "$T/inspect" && ok "inspect: byte-level BPE tokenizer" || bad "inspect tokenizer: $(grep tokenizer "$T/inspect")"
else
  bad "inspect failed: $(cat "$T/inspect.err")"
fi

# 3. determinism: same seed, same bytes (with a different thread count); other seed differs
"$BIN" random-model --shape "$T/tiny.json" --out "$T/m2" --seed 7 --shard-mb 0.4 --threads 1 > /dev/null 2>&1 || bad "second write failed"
"$BIN" random-model --shape "$T/tiny.json" --out "$T/m3" --seed 8 --shard-mb 0.4 > /dev/null 2>&1 || bad "third write failed"
s1=$(cd "$T/m1" && sha *.safetensors *.json)
s2=$(cd "$T/m2" && sha *.safetensors *.json)
s3=$(cd "$T/m3" && sha *.safetensors)
s1w=$(cd "$T/m1" && sha *.safetensors)
[ "$s1" = "$s2" ] && ok "same seed: identical files" || bad "same seed gave different files"
[ "$s1w" != "$s3" ] && ok "different seed: different weights" || bad "different seed gave identical weights"
t1=$(sha "$T/m1/tokenizer.json"); t3=$(sha "$T/m3/tokenizer.json")
[ "$t1" = "$t3" ] && ok "tokenizer does not depend on the seed" || bad "tokenizer depends on the seed"

# 4. refusal to overwrite, then --force
before=$(cd "$T/m1" && sha *.safetensors)
if "$BIN" random-model --shape "$T/tiny.json" --out "$T/m1" --seed 9 > /dev/null 2> "$T/err4"; then
  bad "overwrote an existing directory"
else
  [ "$(wc -l < "$T/err4")" -eq 1 ] && grep -q "already exists" "$T/err4" && ok "refuses to overwrite: $(cat "$T/err4")" \
    || bad "overwrite error: $(cat "$T/err4")"
fi
after=$(cd "$T/m1" && sha *.safetensors)
[ "$before" = "$after" ] && ok "existing directory untouched" || bad "existing directory changed"
if "$BIN" random-model --shape "$T/tiny.json" --out "$T/m1" --seed 9 --dtype f16 --force > /dev/null 2> "$T/err5"; then
  [ -s "$T/m1/model.safetensors" ] && [ ! -e "$T/m1/model.safetensors.index.json" ] && ok "--force replaces (single file now)" \
    || bad "--force result"
  grep -q '"torch_dtype":[[:space:]]*"float16"' "$T/m1/config.json" && ok "--dtype f16" || bad "--dtype f16 not applied"
else
  bad "--force failed: $(cat "$T/err5")"
fi

mkdir -p "$T/notmodel" && echo keep > "$T/notmodel/precious.txt"
if "$BIN" random-model --shape "$T/tiny.json" --out "$T/notmodel" --force > /dev/null 2> "$T/err5b"; then
  bad "--force replaced a directory that is not a model"
else
  [ -f "$T/notmodel/precious.txt" ] && grep -q "not a model directory" "$T/err5b" && ok "--force spares non-model directories" \
    || bad "non-model directory: $(cat "$T/err5b")"
fi

# 5. errors: one line, non-zero exit, nothing left behind
check_error() { # name, expected text, args...
  local name=$1 want=$2; shift 2
  if "$BIN" random-model "$@" > /dev/null 2> "$T/err"; then
    bad "$name: succeeded"
  else
    [ "$(wc -l < "$T/err")" -eq 1 ] && grep -q "$want" "$T/err" && ok "$name: $(cat "$T/err")" || bad "$name: '$(cat "$T/err")'"
  fi
}
check_error "bad shape" "unknown shape" --shape llama9-1t --out "$T/bad1"
echo '{"model_type": "llama", "intermediate_size": 256}' > "$T/bad.json"
check_error "bad config" "hidden_size" --shape "$T/bad.json" --out "$T/bad2"
check_error "bad dtype" "dtype" --shape "$T/tiny.json" --dtype int4 --out "$T/bad3"
check_error "tiny vocab" "too small" --shape "$T/tiny.json" --vocab 100 --out "$T/bad4"
check_error "no --out" "out" --shape "$T/tiny.json"
for d in bad1 bad2 bad3 bad4; do [ -e "$T/$d" ] && bad "$d left behind"; done
ls -d "$T"/*.tmp.* >/dev/null 2>&1 && bad "temporary directory left after errors" || ok "nothing left after errors"

rm -rf "$T"
exit $fail
