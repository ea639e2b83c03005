#!/usr/bin/env bash
# generate: the known greedy continuation of stories260K, seeded sampling is reproducible,
# and perplexity --json prints the summary as the last line.
. "$(dirname "$0")/common.bash"
need_shared
M=$SHARED/models/stories260K
want="Zoo was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but she didn't want to play with it."
got=$("$BIN" generate --model "$M" --prompt Zoo -n 60 --temp 0 2>/dev/null)
# the model's 60th token is a newline; compare the text without trailing whitespace
check "greedy stories260K text" test "$(printf '%s' "$got" | sed -e ':a' -e '/^\n*$/{$d;N;ba' -e '}')" = "$want"

a=$("$BIN" generate --model "$M" --prompt "Once upon a time" -n 30 --temp 0.9 --top-k 40 --top-p 0.9 --seed 7 2>/dev/null)
b=$("$BIN" generate --model "$M" --prompt "Once upon a time" -n 30 --temp 0.9 --top-k 40 --top-p 0.9 --seed 7 --threads 1 2>/dev/null)
check "same seed, same text (any thread count)" test "$a" = "$b"
case "$a" in "Once upon a time"*) ok ;; *) bad "sampled output does not start with the prompt: $a" ;; esac

last=$("$BIN" generate --model "$M" --prompt Zoo -n 5 --temp 0 --json 2>/dev/null | tail -1)
check "generate --json last line" python3 -c "import json,sys; d=json.loads(sys.argv[1]); assert d['new_tokens']==5" "$last"

last=$("$BIN" perplexity --model "$M" --data "$SHARED/data/wikitext-2-raw/wiki.test.raw" --ctx 128 --max-windows 3 --json 2>/dev/null | tail -1)
check "perplexity --json last line" python3 -c "
import json,sys; d=json.loads(sys.argv[1])
assert d['windows']==3 and d['ctx']==128 and d['tokens']>100000 and 1 < d['ppl'] < 10000, d" "$last"

out=$("$BIN" inspect "$M")
check "inspect names the architecture" grep -q "architecture: llama, 5 layers, hidden 64" <<<"$out"
check "inspect counts parameters" grep -q "parameters:   260" <<<"$out"
check "inspect names the tokenizer" grep -q "tokenizer:    SentencePiece BPE, 512 tokens" <<<"$out"
finish
