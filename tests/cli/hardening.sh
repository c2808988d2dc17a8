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
echo "outputs never destroy inputs; a full disk is a clear error"
