#!/usr/bin/env bash
# generate: the known greedy continuation of stories260K, seeded sampling is reproducible,
# perplexity --json prints the summary as the last line, bench --membw probes per rep.
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

# bench with the bandwidth probe around each rep: per-rep probe lines, a fraction in the
# JSON, and a peak RSS that does not count the (freed) 256 MiB probe buffer
base=$("$BIN" bench --model "$M" --prompt-len 4 --gen 4 --reps 2 --json 2>/dev/null | tail -1)
last=$("$BIN" bench --model "$M" --prompt-len 4 --gen 4 --reps 2 --membw --membw-mib 256 --json 2>/dev/null)
check "bench --membw prints a probe line per rep" test "$(grep -c '^rep [12]: *probe' <<<"$last")" = 2
check "bench --membw --json summary, peak RSS without the probe buffer" python3 -c "
import json,sys; d=json.loads(sys.argv[1].splitlines()[-1]); b=json.loads(sys.argv[2])
assert d['membw_gb_s'] > 0 and d['membw_fraction'] > 0 and d['decode_tok_s'] > 0, d
assert d['peak_rss_mb'] < b['peak_rss_mb'] + 64, (d['peak_rss_mb'], b['peak_rss_mb'])" "$last" "$base"

out=$("$BIN" inspect "$M")
check "inspect names the architecture" grep -q "architecture: llama, 5 layers, hidden 64" <<<"$out"
check "inspect counts parameters" grep -q "parameters:   260" <<<"$out"
check "inspect names the tokenizer" grep -q "tokenizer:    SentencePiece BPE, 512 tokens" <<<"$out"
finish
