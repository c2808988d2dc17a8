# Shared by the command-line tests (sourced, not run: its name does not end in .sh).
set -euo pipefail
: "${MOETRON:?MOETRON must name the moetron binary}"
: "${MOETRON_SOURCE_DIR:?}"
[ -x "$MOETRON" ] || { echo "skip: $MOETRON not built"; exit 77; }
FIXTURES=$MOETRON_SOURCE_DIR/tests/fixtures
WORK=$(mktemp -d "${TMPDIR:-/tmp}/moetron-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
MPIEXEC=${MPIEXEC:-mpiexec}

# mpi N ARGS... (or "${MPI_RUN[@]}" N ARGS... where a function cannot go, e.g. after timeout):
# runs ARGS on N ranks (oversubscribed; as root where CI runs as root).
MPI_RUN=(bash "$MOETRON_SOURCE_DIR/tests/mpi/run_mpi.sh" "$MPIEXEC" -n)
mpi() {
  "${MPI_RUN[@]}" "$@"
}

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# expect_exit_1 NAME PATTERN COMMAND...: exits 1 (no signal, no hang) within 60 s saying PATTERN.
expect_exit_1() {
  local name=$1 pattern=$2 rc=0
  shift 2
  timeout 60 "$@" >"$WORK/$name.log" 2>&1 || rc=$?
  [ "$rc" -eq 1 ] || { cat "$WORK/$name.log"; fail "$name: exit $rc, expected 1"; }
  grep -q -- "$pattern" "$WORK/$name.log" || { cat "$WORK/$name.log"; fail "$name: no '$pattern' in the output"; }
  echo "$name: $(grep -m1 -- "$pattern" "$WORK/$name.log")"
}

# expect_failure NEEDLE ARGS...: `moetron ARGS` must fail and say NEEDLE on stderr.
expect_failure() {
  local needle=$1; shift
  local rc=0
  "$MOETRON" "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  [[ $rc -ne 0 ]] || fail "'moetron $*' succeeded; expected failure"
  grep -qF -- "$needle" "$WORK/err" || fail "'moetron $*' did not say '$needle': $(cat "$WORK/err")"
}

# Writes the fixture prompts (with HF's reference lengths) as a prompts file.
fixture_prompts() {
  python3 - "$1" "$2" <<'PY'
import json, sys
ref = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    for i, p in enumerate(ref["prompts"]):
        f.write(json.dumps({"id": f"p{i}", "prompt_tokens": p["prompt_tokens"],
                            "max_new_tokens": len(p["greedy_tokens"])}) + "\n")
PY
}

# GPU tests: skip (77) without a GPU.
require_gpu() {
  command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || { echo "skip: no GPU"; exit 77; }
}

# make_gpu_model DIR: a small random OLMoE with head_dim 64 (512 / 8), a width every CUDA
# attention kernel takes, and 4 layers for pipeline plans.
make_gpu_model() {
  "$MOETRON" model make --family olmoe --preset tiny --set hidden_size=512 --set num_attention_heads=8 \
    --set num_key_value_heads=4 --set intermediate_size=256 --set vocab_size=1024 --out "$1" --seed 3
}

# What the GPU tests share (needs a GPU): sets gpus (how many), model (make_gpu_model's) and
# writes $WORK/prompts.jsonl with random_prompts' arguments after FILE.
gpu_test_setup() {  # gpu_test_setup N SEED MAX_NEW_TOKENS_FORMULA [VOCAB] [MIN_LEN]
  require_gpu
  gpus=$(nvidia-smi -L | wc -l)
  model=$WORK/olmoe-h512
  make_gpu_model "$model"
  random_prompts "$WORK/prompts.jsonl" "$@"
}

# random_prompts FILE N SEED MAX_NEW_TOKENS_FORMULA [VOCAB] [MIN_LEN]: N requests of MIN_LEN..39
# (default 1) random tokens below VOCAB (default 1024); request i asks for eval(formula) new tokens.
random_prompts() {
  python3 - "$@" <<'PY'
import json, random, sys
path, n, seed, formula = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
vocab = int(sys.argv[5]) if len(sys.argv) > 5 else 1024
min_len = int(sys.argv[6]) if len(sys.argv) > 6 else 1
rng = random.Random(seed)
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"prompt_tokens": [rng.randrange(3, vocab) for _ in range(rng.randrange(min_len, 40))],
                            "max_new_tokens": eval(formula, {"i": i})}) + "\n")
PY
}

# A python3 with h5py: the Debian one, where `make deps` installs h5py, matplotlib and
# statsmodels (a python3 earlier on PATH, e.g. pyenv's, may lack them), else the one on PATH
# (the GPU machines have h5py there and not in /usr/bin/python3).
PYTHON=
for candidate in /usr/bin/python3 python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import h5py' 2>/dev/null; then
    PYTHON=$(command -v "$candidate")
    break
  fi
done
PYTHON=${PYTHON:-$(command -v python3)}

# h5_values FILE DATASET: the dataset's values, one a line, flattened in row-major order, strings
# without quotes: h5dump where it exists, else h5py (the GPU machines have no h5dump).
h5_values() {
  if command -v h5dump >/dev/null; then
    h5dump -y -w 0 -d "$2" "$1" | sed -n '/^ *DATA {/,/^ *}/p' | sed '1d;$d' | tr ',' '\n' | tr -d ' "' |
      sed '/^$/d'
  else
    "$PYTHON" -c 'import sys, h5py
for v in h5py.File(sys.argv[1], "r")[sys.argv[2]][()].ravel(): print(v.decode() if isinstance(v, bytes) else v)' \
      "$1" "$2"
  fi
}

# h5_root_attr FILE NAME: a root attribute's value as text (a string without quotes), by h5dump
# or h5py as h5_values.
h5_root_attr() {
  if command -v h5dump >/dev/null; then
    h5dump -a "/$2" "$1" | sed -n 's/^ *(0): "\{0,1\}\([^"]*\)"\{0,1\}$/\1/p'
  else
    "$PYTHON" -c 'import sys, h5py
v = h5py.File(sys.argv[1], "r").attrs[sys.argv[2]]; print(v.decode() if isinstance(v, bytes) else v)' "$1" "$2"
  fi
}
