"""Where the fixed cost of one ``model.run`` goes, on the 2-layer MLP of run.py (part B).

Times each step that ``Model.run`` performs, in isolation, with the same arguments ``run`` passes
(median of several rounds of many calls, µs per call), then a cProfile of the whole call.

    benchmarks/.venv/bin/python benchmarks/profile_overhead.py
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from threading import get_ident

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import torch_shard_interpret as tsi  # noqa: E402
from torch_shard_interpret.core._cache import ActivationCache  # noqa: E402
from torch_shard_interpret.core._fasthooks import next_key  # noqa: E402
from torch_shard_interpret.core._hooks import Scope  # noqa: E402
from torch_shard_interpret.core._inputs import input_device, output_logits, prepare  # noqa: E402
from torch_shard_interpret.core._model import RunResult  # noqa: E402


def timeit(fn, inner: int = 5000, rounds: int = 9) -> float:
    for _ in range(inner // 10):
        fn()
    out = []
    gc.disable()
    try:
        for _ in range(rounds):
            t0 = time.perf_counter_ns()
            for _ in range(inner):
                fn()
            out.append((time.perf_counter_ns() - t0) / inner / 1e3)
    finally:
        gc.enable()
    return statistics.median(out)


def main() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64)).eval()
    x = torch.randn(1, 64)
    model = tsi.wrap(mlp)
    site = model.resolve("0:output")

    def scope_cycle(record=site):
        store = {}
        s = Scope(model._interventions(None), record, cache=store, root=mlp)
        with s:
            pass
        s.check_reached()

    def scope_cycle_call():
        store = {}
        s = Scope({}, site, cache=store, root=mlp)
        with s:
            mlp(x)

    def result():
        out = x
        return RunResult(
            logits=output_logits(out),
            cache=ActivationCache({}),
            tokens=None,
            attention_mask=None,
            output=out,
            tokenizer=None,
        )

    steps = {
        "plain mlp(x)": lambda: mlp(x),
        "model.run(x, cache='0:output')": lambda: model.run(x, cache="0:output"),
        "model.run(x)": lambda: model.run(x),
        "  torch.is_inference_mode_enabled()": torch.is_inference_mode_enabled,
        "  prepare(...) total (as run() calls it)": lambda: prepare(
            mlp, None, x, {}, model.cfg.n_ctx, **_hf_kw(model)
        ),
        "    input_device(module) (next(module.parameters()))": lambda: input_device(mlp),
        "    is_hf(module)": lambda: tsi.core._inputs.is_hf(mlp),
        "  model.resolve('0:output')": lambda: model.resolve("0:output"),
        "  model._interventions(None)": lambda: model._interventions(None),
        "  Scope(...) construct only": lambda: Scope({}, site, cache={}, root=mlp),
        "  Scope construct+enter+exit+check_reached (1 site)": scope_cycle,
        "  Scope construct+enter+exit (no site)": lambda: scope_cycle([]),
        "  Scope with 1 site around mlp(x) (hooks fire)": scope_cycle_call,
        "  torch.no_grad() enter+exit": lambda: _enter_exit(torch.no_grad()),
        "  nullcontext enter+exit": lambda: _enter_exit(nullcontext()),
        "  RunResult + ActivationCache + output_logits": result,
        "  raw register_forward_hook + remove": lambda: mlp[0].register_forward_hook(_noop).remove(),
        "  hook-table insert + pop (what the lean run does)": lambda: _table_cycle(mlp[0]),
        "  threading.get_ident()": get_ident,
        "  torch.is_grad_enabled()": torch.is_grad_enabled,
    }
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; µs per call, median of 9 rounds\n")
    with torch.inference_mode():
        for name, fn in steps.items():
            print(f"{timeit(fn):8.2f}  {name}")

    prof = cProfile.Profile()
    with torch.inference_mode():
        for _ in range(500):
            model.run(x, cache="0:output")
        prof.enable()
        for _ in range(20000):
            model.run(x, cache="0:output")
        prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
    print("\ncProfile of 20000 x model.run(x, cache='0:output') (cProfile adds its own cost per call):")
    print(buf.getvalue())


def _hf_kw(model) -> dict:
    """``run`` passes the cached ``is_hf`` flag when the Model has one."""
    return {"hf": model._hf} if hasattr(model, "_hf") else {}


def _noop(*_):
    return None


def _table_cycle(module: nn.Module) -> None:
    hooks = module._forward_hooks
    key = next_key()
    hooks[key] = _noop
    hooks.pop(key, None)


def _enter_exit(ctx):
    with ctx:
        pass


if __name__ == "__main__":
    main()
