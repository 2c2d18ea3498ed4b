"""Peak memory (issue 17): caching, batched activation patching against its ``memory_budget``, SAE training.

Each case runs in its own subprocess, so its peak is its own: the peak resident set (``VmHWM``) is reset
through ``/proc/self/clear_refs`` after the model is loaded and warmed up, and the figure is that peak minus
the resident set at the reset (what the case itself added: activations, logits, caches, allocator slack).
RSS misses allocations that reuse heap the process already holds, so each case also reports the peak of live
tensor bytes from the profiler's memory events (``tensor_peak``), run once more under the profiler.

    python benchmarks/bench_memory.py [--threads 1] [--cases plain,cache30,patch:1GiB,patch:64MiB,sae,sparsify]

Cases: ``plain`` (a batch 4 x 64 forward of the embedded SmolLM2-135M, fp32, ``inference_mode``), ``cache30``
(the same forward caching all 30 ``blocks.*.resid_post``), ``patch:<budget>`` (activation patching of the IOI
pair, ``resid_pre`` of every 5th block x all 14 positions, with that ``memory_budget``; ``patch:default`` passes
none), ``sae`` / ``sparsify`` (two TopK training steps at bench_sae.py's config: d_in 576, d_sae 4096, k 32,
batch 4096, fp32; sparsify only where it is installed, e.g. in benchmarks/.venv). EAP on a long prompt is
measured by bench_circuits.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from _peak import reset_peak, rss  # noqa: E402


def tensor_peak(fn) -> tuple[object, int]:
    """Run ``fn`` under the profiler's memory tracking; the peak of live tensor bytes it allocated (CPU).
    Independent of the C allocator: freed heap that the process already holds hides allocations from RSS."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    live = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):  # allocations (+) and frees (-)
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return out, peak


CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When John and Mary went to the store, Mary gave a drink to"
DEFAULT_CASES = "plain,cache30,patch:default,patch:256MiB,patch:64MiB,sae,sparsify"


def _model_case(case: str) -> dict:
    import torch_shard_interpret as tsi

    model = tsi.load("smollm2-135m")
    x = torch.randint(0, 49152, (4, 64), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        model.module(input_ids=x[:1, :8])  # warm up
    info: dict = {}
    if case.startswith("patch:"):
        mary, john = model.token_id(" Mary"), model.token_id(" John")
        budget = case.split(":", 1)[1]
        sites = [f"blocks.{i}.resid_pre" for i in range(0, model.cfg.n_layers, 5)]

        def run():
            return tsi.patching.activation_patching(
                model, CLEAN, CORRUPT, lambda lg: lg[:, -1, mary] - lg[:, -1, john], sites=sites,
                progress=False, memory_budget=None if budget == "default" else budget,
            )  # fmt: skip

        base = reset_peak()
        res = run()
        peak = rss("VmHWM") - base
        info = {"rows_per_forward": res.info["batch_size"], "budget": budget}
        _, info["tensor_peak_bytes"] = tensor_peak(run)
    else:

        def run():
            with torch.inference_mode():
                if case == "plain":
                    return model.module(input_ids=x, use_cache=False)
                return model.run(x, cache="blocks.*.resid_post")

        base = reset_peak()
        run()
        peak = rss("VmHWM") - base
        _, info["tensor_peak_bytes"] = tensor_peak(run)
    return {"case": case, "peak_bytes": peak, **info}


def _sae_case(case: str) -> dict:
    from bench_sae import BATCH, activations, bench_ours, bench_sparsify

    batches = list(activations(BATCH * 4, False).split(BATCH))
    step = bench_ours() if case == "sae" else bench_sparsify()
    step(batches[0])  # warm up: initialisation, optimizer state
    base = reset_peak()
    for b in batches[1:3]:
        step(b)
    peak = rss("VmHWM") - base
    _, tpeak = tensor_peak(lambda: step(batches[3]))
    return {"case": case, "peak_bytes": peak, "tensor_peak_bytes": tpeak}


def child(case: str) -> dict:
    return _sae_case(case) if case in ("sae", "sparsify") else _model_case(case)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", default=DEFAULT_CASES)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    print(
        f"peak memory over the resident set after loading (MiB), {args.threads} thread(s), torch {torch.__version__}"
    )
    print("| case | peak RSS MiB | peak live tensors MiB | rows per forward | budget |")
    print("|---|---:|---:|---:|---|")
    for case in args.cases.split(","):
        cmd = [sys.executable, __file__, "--child", case, "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            print(f"| {case} | skipped: {(out.stderr.strip().splitlines() or ['?'])[-1][:120]} | | | |")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {case} | {r['peak_bytes'] / 2**20:.0f} | {r['tensor_peak_bytes'] / 2**20:.0f} | "
              f"{r.get('rows_per_forward', '')} | {r.get('budget', '')} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
