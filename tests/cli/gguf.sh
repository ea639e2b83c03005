#!/usr/bin/env bash
# GGUF: convert writes files our engine runs with the same results as the Hugging Face
# directory (greedy text, perplexity, tokens), inspect describes them, and damaged GGUF
# files give a one-line error naming the file.
. "$(dirname "$0")/common.bash"
need_shared
W=$TMP/gguf_cli
rm -rf "$W" && mkdir -p "$W"
S=$SHARED/models/stories260K
B=$SHARED/models/llama-bpe-26m

check "convert stories260K f32" "$BIN" convert --model "$S" --out "$W/s32.gguf" --to gguf-f32
check "convert stories260K f16" "$BIN" convert --model "$S" --out "$W/s16.gguf" --to gguf-f16
want=$("$BIN" generate --model "$S" --prompt Zoo -n 60 --temp 0 2>/dev/null)
got=$("$BIN" generate --model "$W/s32.gguf" --prompt Zoo -n 60 --temp 0 2>/dev/null)
check "greedy text from the f32 GGUF equals the HF directory's" test "$want" = "$got"
got16=$("$BIN" generate --model "$W/s16.gguf" --prompt Zoo -n 60 --temp 0 2>/dev/null)
check "f16 GGUF generates text" test -n "$got16"
p_hf=$("$BIN" perplexity --model "$S" --data "$SHARED/data/wikitext-2-raw/wiki.test.raw" --ctx 128 --max-windows 4 --json | tail -1)
p_gg=$("$BIN" perplexity --model "$W/s32.gguf" --data "$SHARED/data/wikitext-2-raw/wiki.test.raw" --ctx 128 --max-windows 4 --json | tail -1)
check "perplexity of the f32 GGUF equals the HF directory's" test "$(echo "$p_hf" | grep -o '"ppl": [0-9.]*')" = "$(echo "$p_gg" | grep -o '"ppl": [0-9.]*')"
t_hf=$("$BIN" tokenize --model "$B" --file "$SHARED/data/calib/calib_mix.txt" --count 2>/dev/null)
check "convert llama-bpe-26m f16" "$BIN" convert --model "$B" --out "$W/b16.gguf" --to gguf-f16
t_gg=$("$BIN" tokenize --model "$W/b16.gguf" --file "$SHARED/data/calib/calib_mix.txt" --count 2>/dev/null)
check "byte-level BPE token count from the GGUF equals the HF tokenizer's ($t_hf vs $t_gg)" test "$t_hf" = "$t_gg"
out=$("$BIN" inspect "$W/b16.gguf")
check "inspect shows the tokenizer" grep -q 'tokenizer.ggml.pre .*"llama-bpe"' <<<"$out"
check "inspect shows tensor types" grep -q 'f32 ×13 .* f16 ×44' <<<"$out"
check "inspect runs the model" grep -q 'tokenizer:    byte-level BPE, 8192 tokens, BOS 0' <<<"$out"
check "q4_0 conversion" "$BIN" convert --model "$B" --out "$W/b-q4_0.gguf" --to gguf-q4_0
check "q4_0 file runs" "$BIN" generate --model "$W/b-q4_0.gguf" --prompt "The" -n 8 --temp 0

# GPTQ into GGUF blocks (stories260K: the 172-wide down_proj falls back to f16, with a warning)
C=$SHARED/data/calib/calib_mix.txt
check "quantize --format gguf q4_0" "$BIN" quantize --model "$S" --format gguf --type q4_0 --out "$W/g.gguf" --calib "$C" --nsamples 8 --seqlen 128
check "GPTQ q4_0 file runs" "$BIN" generate --model "$W/g.gguf" --prompt Zoo -n 16 --temp 0
out=$("$BIN" inspect "$W/g.gguf")
check "q4_0 everywhere but the 172-wide layers" grep -q 'q4_0 ×31' <<<"$out"
check "act-order with static groups" "$BIN" quantize --model "$S" --format gguf --type q8_0 --act-order --static-groups --out "$W/g8.gguf" --calib "$C" --nsamples 8 --seqlen 128
check "types from another file" "$BIN" quantize --model "$S" --format gguf --types-from "$W/g8.gguf" --out "$W/g8b.gguf" --calib "$C" --nsamples 8 --seqlen 128
check "same types as that file" test "$("$BIN" inspect "$W/g8.gguf" | grep 'tensor types')" = "$("$BIN" inspect "$W/g8b.gguf" | grep 'tensor types')"
expect_error "act-order needs static groups" "needs --static-groups" "$BIN" quantize --model "$S" --format gguf --act-order --out "$W/x.gguf"
expect_error "bad type" "--type must be" "$BIN" quantize --model "$S" --format gguf --type q7_k --out "$W/x.gguf"
expect_error "bad protocol" "--protocol must be" "$BIN" perplexity --model "$S" --data "$C" --protocol hf
p=$("$BIN" perplexity --model "$W/s32.gguf" --data "$SHARED/data/wikitext-2-raw/wiki.test.raw" --protocol llama.cpp --ctx 128 --max-windows 4 --json | tail -1)
check "llama.cpp protocol runs" grep -q '"windows": 4' <<<"$p"

# errors
expect_error "existing output" "already exists" "$BIN" convert --model "$S" --out "$W/s32.gguf" --to gguf-f32
expect_error "unknown type" "--to must be" "$BIN" convert --model "$S" --out "$W/x.gguf" --to gguf-q7
expect_error "missing model" "nothing/config\.json" "$BIN" convert --model "$W/nothing" --out "$W/x.gguf" --to gguf-f16
check "no output left behind" test ! -e "$W/x.gguf"
check "no temporary left behind" test -z "$(ls "$W" | grep tmp || true)"

head -c 3000 "$W/s32.gguf" > "$W/trunc.gguf"
expect_error "truncated header" "trunc\.gguf: .*(truncated|cannot fit|past the end)" "$BIN" inspect "$W/trunc.gguf"
size=$(stat -c %s "$W/s32.gguf")
head -c $((size - 1000)) "$W/s32.gguf" > "$W/short.gguf"
expect_error "truncated data" "short\.gguf: tensor '.*' data .* runs past the end" "$BIN" generate --model "$W/short.gguf" --prompt a
cp "$W/s32.gguf" "$W/ver.gguf"
printf '\x07' | dd of="$W/ver.gguf" bs=1 seek=4 conv=notrunc status=none
expect_error "bad version" "ver\.gguf: unsupported GGUF version 7" "$BIN" perplexity --model "$W/ver.gguf" --data "$SHARED/data/calib/calib_mix.txt"
cp "$W/s32.gguf" "$W/cnt.gguf"
printf '\xff\xff\xff' | dd of="$W/cnt.gguf" bs=1 seek=13 conv=notrunc status=none
expect_error "impossible counts" "cnt\.gguf: header claims" "$BIN" inspect "$W/cnt.gguf"
# a tensor of the wrong shape: the MLP width in the metadata no longer matches
python3 - "$W/s32.gguf" "$W/dim.gguf" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
k = b.find(b'llama.feed_forward_length') + len('llama.feed_forward_length') + 4
b[k:k + 4] = (100).to_bytes(4, 'little')
open(sys.argv[2], 'wb').write(b)
PY
expect_error "shape mismatch" "dim\.gguf: tensor 'blk\.0\.ffn_gate\.weight' has shape" "$BIN" generate --model "$W/dim.gguf" --prompt a
finish
