#!/usr/bin/env bash
# Hostile paths and faults around the results file (issue 16): --out naming one of the run's
# inputs through any spelling is refused with the inputs intact; a full disk is a clear error
# (exit 1) leaving no file behind.
source "$(dirname "$0")/common.bash"
model=$WORK/model
mkdir -p "$model" "$WORK/sub"
cp "$FIXTURES/olmoe/config.json" "$FIXTURES/olmoe/model.safetensors" "$model/"
echo '{"prompt_tokens": [1, 2, 3], "max_new_tokens": 2}' >"$WORK/p.jsonl"
ln -s "$model/config.json" "$WORK/config-link"
ln "$WORK/p.jsonl" "$WORK/p-hardlink.jsonl"
checksums() { md5sum "$model/config.json" "$model/model.safetensors" "$WORK/p.jsonl"; }
before=$(checksums)

# refuse NAME OUT: the run fails naming the input, and no input changed.
refuse() {
  local name=$1 out=$2 rc=0
  (cd "$WORK/sub" && timeout 60 "$MOETRON" run --model "$model" --prompts "$WORK/p.jsonl" --backend cpu \
    --log-level warn --out "$out") >"$WORK/$name.log" 2>&1 || rc=$?
  [ "$rc" -eq 1 ] || { cat "$WORK/$name.log"; fail "$name: exit $rc, expected 1"; }
  grep -q "is the run's input" "$WORK/$name.log" || { cat "$WORK/$name.log"; fail "$name: no message"; }
  [ "$(checksums)" = "$before" ] || fail "$name: an input was changed"
  echo "$name: $(cat "$WORK/$name.log")"
}
refuse prompts "$WORK/p.jsonl"
refuse prompts-dotdot "../sub/../p.jsonl"
refuse prompts-hardlink "$WORK/p-hardlink.jsonl"
refuse config-dot "$model/./config.json"
refuse config-symlink "$WORK/config-link"
refuse weights-dotdot "../model/model.safetensors"

# Disk full: a tiny tmpfs (root only) that the results cannot fit in.
if [ "$(id -u)" != 0 ]; then
  echo "skip disk-full: needs root to mount a tmpfs"
elif ! mkdir -p "$WORK/full" || ! mount -t tmpfs -o size=16k tmpfs "$WORK/full" 2>/dev/null; then
  echo "skip disk-full: cannot mount a tmpfs here"
else
  trap 'umount "$WORK/full" 2>/dev/null; rm -rf "$WORK"' EXIT
  for i in $(seq 20); do echo '{"prompt_tokens": [1, 2, 3], "max_new_tokens": 8}'; done >"$WORK/many.jsonl"
  rc=0
  timeout 60 "$MOETRON" run --model "$model" --prompts "$WORK/many.jsonl" --backend cpu --log-level warn \
    --save-logits --out "$WORK/full/out.h5" >"$WORK/full.log" 2>&1 || rc=$?
  [ "$rc" -eq 1 ] || { cat "$WORK/full.log"; fail "disk-full: exit $rc, expected 1"; }
  grep -q "out.h5.*No space left on device" "$WORK/full.log" || { cat "$WORK/full.log"; fail "disk-full: no clear message"; }
  [ -z "$(ls -A "$WORK/full")" ] || { ls -la "$WORK/full"; fail "disk-full: left files behind"; }
  echo "disk-full: $(cat "$WORK/full.log")"
fi

run=("$MOETRON" run --model "$model" --prompts "$WORK/p.jsonl" --backend cpu --log-level warn)
expect_exit_1 seed-negative "\-\-seed must be an integer >= 0" "${run[@]}" --out "$WORK/o.h5" --seed -1
expect_exit_1 kv-below-block "\-\-kv-cache-tokens (8) is less than one KV-cache block" "${run[@]}" --out "$WORK/o.h5" \
  --kv-cache-tokens 8 --block-size 16
for spec in 2 x:1 1:x 1:2:3 -1:2 " 1:2"; do
  expect_exit_1 "fault-spec-$spec" "MOETRON_INJECT_FAULT='$spec': expected RANK:STEP" env MOETRON_INJECT_FAULT="$spec" \
    "${run[@]}" --out "$WORK/o.h5"
done
[ ! -e "$WORK/o.h5" ] || fail "a refused run wrote results"

# A valid 254-byte output name works despite the temporary suffix.
long=$WORK/$(printf 'r%.0s' $(seq 251)).h5
"${run[@]}" --out "$long" || fail "254-byte output name: run failed"
[ -f "$long" ] || fail "254-byte output name: no results file"
echo "254-byte output name: written"

# Checkpoints rewritten tensor by tensor: one expert tensor stored as F32 (converted on load:
# the same tokens as the bf16 original), and one weight NaN (refused, naming the tensor).
rewrite() {
  python3 - "$FIXTURES/olmoe/model.safetensors" "$1" "$2" <<'PY'
import json, struct, sys
src, dst, mode = sys.argv[1:]
raw = open(src, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
target = "model.layers.0.mlp.experts.1.up_proj.weight"
out, blobs, offset = {}, [], 0
for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0] if kv[0] != "__metadata__" else -1):
    if name == "__metadata__":
        out[name] = e
        continue
    b = data[e["data_offsets"][0]:e["data_offsets"][1]]
    if name == target and mode == "f32":
        halves = struct.unpack("<%dH" % (len(b) // 2), b)
        b = struct.pack("<%dI" % len(halves), *[h << 16 for h in halves])
        e = dict(e, dtype="F32")
    if name == target and mode == "nan":
        b = b[:6] + struct.pack("<H", 0x7FC0) + b[8:]
    out[name] = dict(e, data_offsets=[offset, offset + len(b)])
    blobs.append(b)
    offset += len(b)
text = json.dumps(out).encode()
text += b" " * (-len(text) % 8)
with open(dst, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
PY
}
for mode in f32 nan; do
  mkdir -p "$WORK/$mode"
  cp "$model/config.json" "$WORK/$mode/"
  rewrite "$WORK/$mode/model.safetensors" "$mode"
done
prompts=$WORK/cmp.jsonl
printf '%s\n' '{"prompt_tokens": [5, 9, 200, 31], "max_new_tokens": 6}' '{"prompt_tokens": [77, 3], "max_new_tokens": 6}' >"$prompts"
"$MOETRON" run --model "$model" --prompts "$prompts" --backend cpu --log-level warn --out "$WORK/bf16.h5" --ignore-eos
"$MOETRON" run --model "$WORK/f32" --prompts "$prompts" --backend cpu --log-level warn --out "$WORK/mixed.h5" --ignore-eos ||
  fail "mixed dtypes: the run failed"
tokens() { h5dump -d /requests/output_tokens "$1" | sed -n '/DATA/,$p'; }
[ -n "$(tokens "$WORK/bf16.h5")" ] || fail "mixed dtypes: no tokens read"
[ "$(tokens "$WORK/bf16.h5")" = "$(tokens "$WORK/mixed.h5")" ] || fail "mixed dtypes: tokens differ from the bf16 original"
"$MOETRON" model info --model "$WORK/f32" >/dev/null || fail "mixed dtypes: model info failed"
echo "mixed dtypes: an F32 expert tensor is converted on load, same tokens"
expect_exit_1 non-finite-weight "tensor 'model.layers.0.mlp.experts.1.up_proj.weight' holds a non-finite value" \
  "$MOETRON" run --model "$WORK/nan" --prompts "$WORK/p.jsonl" --backend cpu --log-level warn --out "$WORK/o.h5"

# model make: a 4 TiB request is refused before anything is written (no partial shard).
expect_exit_1 make-too-big "the checkpoint needs [0-9]* bytes but its file system has" \
  "$MOETRON" model make --family olmoe --preset tiny --set vocab_size=16000000 --set hidden_size=65536 --out "$WORK/huge"
[ -z "$(ls -A "$WORK/huge" 2>/dev/null)" ] || { ls -la "$WORK/huge"; fail "make-too-big: left files behind"; }
echo "outputs never destroy inputs; a full disk is a clear error; hostile options and weights are refused clearly"
