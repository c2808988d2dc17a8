#!/usr/bin/env bash
# Issue 12's four most under-predicted emulated plans (report-4-ep-share.md), each as the
# predictor priced it (`moetron plan --explain`) beside what Nsight Compute measures of the same
# emulated last rank's kernels (perf/ncu_summary.py), for one profile of this machine:
#
#   MOETRON=build/moetron perf/results/explain_fourteenth/ncu_emulated.sh OUT_DIR
#
# writes OUT_DIR/<shape>-<world>-<plan>-explain.txt and -ncu.txt (and the raw .csv, logs in work/).
# As the twelfth session: 2-layer shapes, validate_predictor.py's workload of section (b) (4
# requests a rank, at least 32, of 64 prompt + 12 new tokens), eager decode steps 4-5 profiled.
# Environment:
#   PROFILES=DIR  take DIR/<family>-<preset>-profile-1r-cuda.h5 (e.g. perf/predictor_h200_twelfth)
#                 instead of benching each shape here first (as validate_predictor.py does)
#   DRY_RUN=1     print the ncu command and run the rank without it (no tables)
#   BACKEND=cpu   the emulated runs on the CPU backend (no profiler window), to test the script
#   PROMPT=N OUTPUT=N  the workload's lengths (default 64 and 12; OUTPUT >= 7 for steps 4-5)
#   NSYS=1        also an Nsight Systems trace of the same two steps, summed by `nsys stats` into
#                 -nsys.txt: ncu profiles kernels only, and Ops::copy (every emulated copy) and
#                 copy_columns (the logits' gather) are cudaMemcpy(2D)Async nodes (not run yet)
set -euo pipefail
: "${MOETRON:?MOETRON must name the moetron binary}"
out=${1:?usage: MOETRON=build/moetron $0 OUT_DIR}
perf=$(cd "$(dirname "$0")/../.." && pwd)
backend=${BACKEND:-cuda} prompt=${PROMPT:-64} output=${OUTPUT:-12}
work=$out/work
mkdir -p "$work"
ncu_flags=(--clock-control none --profile-from-start off --csv --page raw
           --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum)
window=()
[[ $backend == cuda ]] && window=(--profile-decode-steps 4:2)

# family preset world plan
points=("olmoe olmoe-1b-7b 16 pp=1,tp=8,dp=2,ep=1"
        "qwen2_moe qwen1.5-moe-a2.7b 16 pp=1,tp=16,dp=1,ep=1"
        "mixtral mixtral-8x7b 64 pp=1,tp=32,dp=2,ep=1"
        "mixtral mixtral-8x7b 64 pp=1,tp=2,dp=32,ep=8")

# The shape's config (once) and its profile: the one given, else benched here (once).
shape_dir() { echo "$work/$1-$2"; }
prepare_shape() {
  local dir profile
  dir=$(shape_dir "$1" "$2")
  profile=${PROFILES:+$PROFILES/$1-$2-profile-1r-cuda.h5}
  [[ -n $profile ]] || profile=$work/$1-$2-profile-1r-$backend.h5
  if [[ ! -f $dir/config.json ]]; then
    "$MOETRON" model make --family "$1" --preset "$2" --config-only --out "$dir" \
      --set num_hidden_layers=2 --set max_position_embeddings=8192 >/dev/null
  fi
  if [[ ! -f $profile ]]; then
    "$MOETRON" bench --model "$dir" --out "$profile" --backend "$backend" --max-tokens 4096 >"$profile.log" 2>&1 \
      || { tail -5 "$profile.log"; return 1; }
  fi
  echo "$profile"
}

for point in "${points[@]}"; do
  read -r family preset world plan <<<"$point"
  start=$SECONDS
  dir=$(shape_dir "$family" "$preset")
  profile=$(prepare_shape "$family" "$preset")
  requests=$((4 * world > 32 ? 4 * world : 32))
  name=$family-$world-${plan//[=,]/_}
  workload=(--max-batch "$requests" --max-batch-tokens $((requests * prompt)))
  "$MOETRON" plan --model "$dir" --profile "$profile" --hardware h200 --ranks "$world" --ranks-per-node 8 \
    --requests "$requests" --prompt-tokens "$prompt" --output-tokens "$output" "${workload[@]}" --top 1 \
    --explain "$plan" >"$out/$name-explain.txt"
  vocab=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$dir/config.json")
  python3 "$perf/make_prompts.py" "$work/$name.jsonl" "$requests" "$prompt" "$output" "$vocab" 1
  run=("$MOETRON" run --model "$dir" --prompts "$work/$name.jsonl" --out "$work/$name.h5" --plan "$plan"
       --emulate-rank $((world - 1)) --emulate-world "$world" "${workload[@]}" --backend "$backend"
       --load-format dummy --ignore-eos --log-level warn --seed 1 --no-graphs --gpu-memory-fraction 0.4 "${window[@]}")
  if [[ -n ${DRY_RUN:-} ]]; then
    echo "dry run: ncu ${ncu_flags[*]} ${run[*]} >$out/$name.csv"
    "${run[@]}" >"$work/$name.log" 2>&1 || { tail -5 "$work/$name.log"; exit 1; }
  else
    left=$((170 - SECONDS))  # the whole script stays within 3 minutes
    ((left > 10)) || { echo "past the 3-minute budget: $name and the rest not profiled"; exit 1; }
    timeout -k 5 "$left" ncu "${ncu_flags[@]}" "${run[@]}" >"$out/$name.csv" 2>"$work/$name.log" \
      || { tail -5 "$work/$name.log"; exit 1; }
    python3 "$perf/ncu_summary.py" "$out/$name.csv" --steps 2 >"$out/$name-ncu.txt"
    if [[ -n ${NSYS:-} ]]; then
      nsys profile --capture-range=cudaProfilerApi --capture-range-end=stop --trace=cuda --force-overwrite=true \
        -o "$work/$name" "${run[@]}" >"$work/$name-nsys.log" 2>&1 || { tail -5 "$work/$name-nsys.log"; exit 1; }
      { echo "two decode steps (4-5), eager"; nsys stats --report cuda_gpu_kern_sum,cuda_gpu_mem_time_sum,cuda_gpu_mem_size_sum \
          "$work/$name.nsys-rep"; } >"$out/$name-nsys.txt"
    fi
  fi
  echo "$name: $((SECONDS - start)) s"
done
