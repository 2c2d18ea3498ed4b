#!/usr/bin/env bash
# A venv for benchmarks/bench_autocircuit.py: auto-circuit 1.0.1 needs TransformerLens's HookedTransformer
# (TransformerLens < 3), which cannot live beside our own pins, so it gets a folder of its own.
# The pins below are the set that resolved and imported on 2026-12-04 (torch 2.13.0 CPU, Python 3.11):
# auto-circuit pulls numpy 1.26, which today's pyarrow and datasets no longer import with.
set -euo pipefail
VENV=${AC_VENV:-benchmarks/.venv-autocircuit}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "$TORCH_SPEC"
"$VENV/bin/pip" install -q "auto-circuit==1.0.1" "transformer-lens>=2.16,<3" "datasets<3" "pyarrow<17" "$TORCH_SPEC"
"$VENV/bin/pip" install -q --no-deps -e .
"$VENV/bin/python" -c "import auto_circuit, transformer_lens, torch_shard_interpret; print('auto-circuit venv ready')"
