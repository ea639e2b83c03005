#!/usr/bin/env bash
# Bad input: every malformed model directory gives a one-line error naming the file and
# the problem, and a non-zero exit — never a crash.
. "$(dirname "$0")/common.bash"
need_shared
W=$TMP/bad_input
rm -rf "$W" && mkdir -p "$W"
SRC=$SHARED/models/stories260K

# fresh copy of the tiny model into $W/$1
mk() { rm -rf "$W/$1"; mkdir -p "$W/$1"; cp "$SRC"/config.json "$SRC"/tokenizer.json "$SRC"/tokenizer_config.json "$SRC"/model.safetensors "$W/$1/"; }

# sanity: the clean copy works
mk clean
check "clean copy loads" "$BIN" inspect "$W/clean" >/dev/null

mk truncated
head -c 100000 "$SRC/model.safetensors" > "$W/truncated/model.safetensors"
expect_error "truncated safetensors" "model\.safetensors: .*(outside the data|truncated)" "$BIN" inspect "$W/truncated"

mk tiny
head -c 5 "$SRC/model.safetensors" > "$W/tiny/model.safetensors"
expect_error "file shorter than the header length field" "model\.safetensors: truncated" "$BIN" inspect "$W/tiny"

mk hlen
python3 - "$W/hlen/model.safetensors" <<'PY'
import struct, sys
p = sys.argv[1]; b = bytearray(open(p, 'rb').read())
b[0:8] = struct.pack('<Q', len(b) + 1000)
open(p, 'wb').write(b)
PY
expect_error "header length beyond the file" "model\.safetensors: header length .* past the end" "$BIN" inspect "$W/hlen"

# rewrite the JSON header with a python edit, keeping the data
edit_header() {
  python3 - "$1" "$2" <<'PY'
import json, struct, sys
p, code = sys.argv[1], sys.argv[2]
b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n]); data = b[8 + n:]
exec(code)
hb = json.dumps(h).encode()
open(p, 'wb').write(struct.pack('<Q', len(hb)) + hb + data)
PY
}

mk offsets
edit_header "$W/offsets/model.safetensors" "h['model.norm.weight']['data_offsets'][1] = len(data) + 4096"
expect_error "offsets outside the data" "model\.safetensors: tensor 'model\.norm\.weight' .*outside the data" "$BIN" inspect "$W/offsets"

mk badjson
python3 - "$W/badjson/model.safetensors" <<'PY'
import struct, sys
p = sys.argv[1]; b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
open(p, 'wb').write(b[:8] + b'{' + b' ' * (n - 1) + b[8 + n:])
PY
expect_error "header not JSON" "model\.safetensors: header is not valid JSON" "$BIN" inspect "$W/badjson"

mk nbytes
edit_header "$W/nbytes/model.safetensors" "h['model.norm.weight']['shape'] = [65]"
expect_error "shape disagrees with byte count" "model\.safetensors: tensor 'model\.norm\.weight' holds .* bytes" "$BIN" inspect "$W/nbytes"

mk dtype
edit_header "$W/dtype/model.safetensors" "h['model.layers.0.self_attn.q_proj.weight']['dtype'] = 'I32'"
expect_error "dtype not a float type" "model\.safetensors: tensor 'model\.layers\.0\.self_attn\.q_proj\.weight' has dtype I32" "$BIN" inspect "$W/dtype"

mk shape
python3 - "$W/shape/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); c['intermediate_size'] = 176; json.dump(c, open(p, 'w'))
PY
expect_error "shape mismatch with config" "model\.safetensors: tensor '.*mlp\..*' has shape \[.*\] but the config implies" "$BIN" inspect "$W/shape"

mk nokey
python3 - "$W/nokey/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); del c['hidden_size']; json.dump(c, open(p, 'w'))
PY
expect_error "missing config key" "config\.json: missing required key \"hidden_size\"" "$BIN" inspect "$W/nokey"

mk arch
python3 - "$W/arch/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); c['model_type'] = 'gpt2'; json.dump(c, open(p, 'w'))
PY
expect_error "unsupported architecture" "config\.json: model_type \"gpt2\" is not supported" "$BIN" inspect "$W/arch"

mk cfgjson
printf '{"model_type": "llama",' > "$W/cfgjson/config.json"
expect_error "config not JSON" "config\.json: not valid JSON" "$BIN" inspect "$W/cfgjson"

mk missing
rm "$W/missing/model.safetensors"
expect_error "no weights" "missing: no model\.safetensors" "$BIN" inspect "$W/missing"

mk tokjson
head -c 2000 "$SRC/tokenizer.json" > "$W/tokjson/tokenizer.json"
expect_error "malformed tokenizer.json" "tokenizer\.json: " "$BIN" generate --model "$W/tokjson" --prompt hi -n 1

mk tokmodel
python3 - "$W/tokmodel/tokenizer.json" <<'PY'
import json, sys
p = sys.argv[1]; t = json.load(open(p)); t['model']['type'] = 'WordPiece'; json.dump(t, open(p, 'w'))
PY
expect_error "unsupported tokenizer model" "tokenizer\.json: .*WordPiece" "$BIN" generate --model "$W/tokmodel" --prompt hi -n 1

mk sharded
python3 - "$W/sharded" <<'PY'
import json, os, sys
d = sys.argv[1]
json.dump({"metadata": {}, "weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}},
          open(os.path.join(d, "model.safetensors.index.json"), "w"))
PY
expect_error "index names a missing shard" "model-00002-of-00002\.safetensors: cannot open" "$BIN" inspect "$W/sharded"

expect_error "model dir does not exist" "nonexistent: not a model directory" "$BIN" inspect "$W/nonexistent"
expect_error "unknown option" "unknown option '--bogus'" "$BIN" perplexity --model "$W/clean" --bogus
expect_error "bad number" "--ctx expects an integer" "$BIN" perplexity --model "$W/clean" --data x --ctx abc
expect_error "data file missing" "nofile\.txt: cannot open" "$BIN" perplexity --model "$W/clean" --data "$W/nofile.txt"
finish
