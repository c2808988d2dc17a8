# Shared by the command-line tests (sourced, not run: its name does not end in .sh).
set -euo pipefail
: "${MOETRON:?MOETRON must name the moetron binary}"
: "${MOETRON_SOURCE_DIR:?}"
[ -x "$MOETRON" ] || { echo "skip: $MOETRON not built"; exit 77; }
FIXTURES=$MOETRON_SOURCE_DIR/tests/fixtures
WORK=$(mktemp -d "${TMPDIR:-/tmp}/moetron-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
MPIEXEC=${MPIEXEC:-mpiexec}

# mpi N ARGS...: runs ARGS on N ranks (oversubscribed; as root where CI runs as root).
mpi() {
  local n=$1
  shift
  bash "$MOETRON_SOURCE_DIR/tests/mpi/run_mpi.sh" "$MPIEXEC" -n "$n" "$@"
}

fail() {
  echo "FAIL: $*" >&2
  exit 1
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
