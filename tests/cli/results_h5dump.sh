#!/usr/bin/env bash
# `moetron run` writes a results file with every dataset and attribute that
# docs/results-schema.md promises (with the documented types), readable by h5dump, whose
# offsets agree with the prompts file. Skips (77) without the binary or h5dump.
set -euo pipefail

: "${MOETRON:=}" "${MOETRON_SOURCE_DIR:?MOETRON_SOURCE_DIR must name the source tree}"
if [[ -z "$MOETRON" || ! -x "$MOETRON" ]]; then
  echo "skip: moetron binary not found ('$MOETRON')"
  exit 77
fi
if ! command -v h5dump >/dev/null; then
  echo "skip: h5dump not found"
  exit 77
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

max_new=4
cat >"$work/prompts.jsonl" <<EOF
{"id": "greedy", "prompt_tokens": [1, 15, 27], "max_new_tokens": $max_new, "temperature": 0}
{"prompt_tokens": [3], "max_new_tokens": $max_new, "temperature": 0}

{"prompt_tokens": [9, 8], "max_new_tokens": $max_new, "temperature": 0, "ignore_eos": true}
EOF
out="$work/results.h5"
"$MOETRON" run --model "$MOETRON_SOURCE_DIR/tests/fixtures/olmoe" --prompts "$work/prompts.jsonl" \
  --out "$out" >"$work/run.log" 2>&1 || { cat "$work/run.log"; fail "moetron run failed"; }
[[ -f "$out" ]] || fail "no results file at $out"
ls "$work" | grep -q '\.tmp\.' && fail "a temporary file was left in $work"
grep -q "startup: ready in .* s; weights .* GB read in" "$work/run.log" || fail "no startup line in the log"
# The fixture's weights were read: a positive byte count in /startup.
read_bytes=$(h5dump -a /startup/weights_bytes_read "$out" | grep -o '(0): [0-9]*' | grep -o '[0-9]*$')
[[ "${read_bytes:-0}" -gt 0 ]] || fail "/startup@weights_bytes_read is '${read_bytes:-}', not positive"

# ---- every documented, always-present name, with its type ---------------------------------------
h5type() {
  case "$1" in
    int8) echo H5T_STD_I8LE ;; int32) echo H5T_STD_I32LE ;; int64) echo H5T_STD_I64LE ;;
    float32) echo H5T_IEEE_F32LE ;; float64) echo H5T_IEEE_F64LE ;; string) echo H5T_STRING ;;
    *) fail "docs/results-schema.md: unknown type '$1'" ;;
  esac
}
checked=0
# Doc rows look like: | `/requests/ids` | string | [n] | always | meaning |
while IFS='|' read -r _ name type _ present _; do
  name=$(echo "$name" | tr -d ' `'); type=$(echo "$type" | tr -d ' '); present=$(echo "$present" | xargs)
  [[ "$present" == always ]] || continue
  if [[ "$name" == *@* ]]; then  # attribute: h5dump names it OBJECT/ATTRIBUTE
    object=${name%@*}; [[ "$object" == / ]] && object=""
    header=$(h5dump -H -a "$object/${name#*@}" "$out" 2>&1) || fail "attribute $name missing: $header"
  else
    header=$(h5dump -H -d "$name" "$out" 2>&1) || fail "dataset $name missing: $header"
  fi
  grep -q "DATATYPE  *$(h5type "$type")" <<<"$header" || fail "$name is not $type: $header"
  checked=$((checked + 1))
done < <(grep '^| `/' "$MOETRON_SOURCE_DIR/docs/results-schema.md")
(( checked >= 25 )) || fail "only $checked documented names found in docs/results-schema.md"

# ---- offsets agree with the prompts file ---------------------------------------------------------
values() {  # the numbers of a 1-D dataset, one a line
  h5dump -y -w 0 -d "$1" "$out" | sed -n '/^ *DATA {/,/^ *}/p' | sed '1d;$d' | tr ',' '\n' | tr -d ' "' |
    sed '/^$/d'
}
mapfile -t prompt_offsets < <(values /requests/prompt_offsets)
[[ "${prompt_offsets[*]}" == "0 3 4 6" ]] || fail "prompt_offsets are '${prompt_offsets[*]}', want '0 3 4 6'"
mapfile -t ids < <(values /requests/ids)
[[ "${ids[*]}" == "greedy 1 2" ]] || fail "ids are '${ids[*]}', want 'greedy 1 2'"

mapfile -t output_offsets < <(values /requests/output_offsets)
(( ${#output_offsets[@]} == 4 )) || fail "output_offsets has ${#output_offsets[@]} entries, want 4"
(( output_offsets[0] == 0 )) || fail "output_offsets[0] is ${output_offsets[0]}, want 0"
for i in 1 2 3; do
  n=$(( output_offsets[i] - output_offsets[i - 1] ))
  (( n >= 1 && n <= max_new )) || fail "request $((i - 1)) has $n output tokens, want 1..$max_new"
done
(( output_offsets[3] - output_offsets[2] == max_new )) || fail "ignore_eos request stopped early"
total=$(h5dump -H -d /requests/output_tokens "$out" | sed -n 's/.*SIMPLE { ( \([0-9]*\) ).*/\1/p')
(( total == output_offsets[3] )) || fail "output_tokens holds $total tokens, offsets end at ${output_offsets[3]}"
times=$(h5dump -H -d /requests/token_times_s "$out" | sed -n 's/.*SIMPLE { ( \([0-9]*\) ).*/\1/p')
(( times == total )) || fail "token_times_s holds $times entries for $total tokens"
mapfile -t reasons < <(values /requests/finish_reason)
for r in "${reasons[@]}"; do [[ "$r" == length || "$r" == eos ]] || fail "finish_reason '$r'"; done

host=$(hostname)
root_attr() { h5dump -a "/$1" "$2" | sed -n 's/^ *(0): "\(.*\)"$/\1/p'; }
[[ "$(root_attr host "$out")" == "$host" ]] || fail "/@host is '$(root_attr host "$out")', want '$host'"
[[ "$(root_attr device "$out")" == cpu ]] || fail "/@device is '$(root_attr device "$out")', want 'cpu'"

# ---- a parallel run: every documented /ranks name, with its type, and where each rank ran ---------
: "${MPIEXEC:=mpiexec}"
pout="$work/parallel.h5"
bash "$MOETRON_SOURCE_DIR/tests/mpi/run_mpi.sh" "$MPIEXEC" -n 2 "$MOETRON" run \
  --model "$MOETRON_SOURCE_DIR/tests/fixtures/olmoe" --prompts "$work/prompts.jsonl" --plan tp=2 \
  --out "$pout" >"$work/parallel.log" 2>&1 || { cat "$work/parallel.log"; fail "moetron run on 2 ranks failed"; }
ranks_checked=0
while IFS='|' read -r _ name type _ present _; do
  name=$(echo "$name" | tr -d ' `'); type=$(echo "$type" | tr -d ' '); present=$(echo "$present" | xargs)
  [[ "$present" == "parallel runs" ]] || continue
  if [[ "$name" == *@* ]]; then
    header=$(h5dump -H -a "${name%@*}/${name#*@}" "$pout" 2>&1) || fail "attribute $name missing: $header"
  else
    header=$(h5dump -H -d "$name" "$pout" 2>&1) || fail "dataset $name missing: $header"
    grep -q "SIMPLE { ( 2 )" <<<"$header" || fail "$name does not have one entry per rank: $header"
  fi
  grep -q "DATATYPE  *$(h5type "$type")" <<<"$header" || fail "$name is not $type: $header"
  ranks_checked=$((ranks_checked + 1))
done < <(grep '^| `/ranks' "$MOETRON_SOURCE_DIR/docs/results-schema.md")
(( ranks_checked >= 15 )) || fail "only $ranks_checked /ranks names found in docs/results-schema.md"
out=$pout
mapfile -t rank_hosts < <(values /ranks/host)
[[ "${rank_hosts[*]}" == "$host $host" ]] || fail "/ranks/host is '${rank_hosts[*]}', want '$host $host'"
mapfile -t rank_devices < <(values /ranks/device)
[[ "${rank_devices[*]}" == "cpu cpu" ]] || fail "/ranks/device is '${rank_devices[*]}', want 'cpu cpu'"
[[ "$(root_attr host "$pout")" == "$host" ]] || fail "/@host of the parallel run is '$(root_attr host "$pout")'"
mapfile -t sent < <(values /ranks/bytes_sent)
mapfile -t received < <(values /ranks/bytes_received)
for r in 0 1; do
  (( sent[r] > 0 && received[r] > 0 )) || fail "rank $r counted ${sent[r]} bytes sent, ${received[r]} received"
done
# tp=2 on two ranks: whatever one sends the other receives.
(( sent[0] == received[1] && sent[1] == received[0] )) || fail "traffic does not balance: sent ${sent[*]}, received ${received[*]}"

echo "ok: $checked documented names present; $ranks_checked /ranks names; offsets ${output_offsets[*]}"
