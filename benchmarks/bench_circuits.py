"""Circuit discovery on the embedded SmolLM2-135M (IOI) and ACDC's forward count on the known-circuit models.

One run measures, each case in its own subprocess (so peak memory is the case's own):

- plain forward + backward of the IOI metric (3 prompt pairs, and one prompt of 128 and 512 tokens), the unit
  of "forward-equivalents" for the cases of the same length;
- ``tsi.circuits.attribute(method="eap")`` and ``"eap-ig"`` (5 steps) scoring every edge (70,651);
- EAP on one prompt of 128 and 512 tokens, to fit peak memory against length and state the longest prompt
  whose EAP fits in 8 GiB;
- warm EAP and EAP-IG paired with a forward + backward in each round (median ratio), the figure that a
  loaded machine does not distort;
- ACDC on the hand-built toy and the two known-circuit models: batched forwards and patched rows against
  one forward per edge.

Peak memory is the process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` after the
model is loaded and warmed up) minus its resident set at that moment: what the case itself adds.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_circuits.py [--threads 1]

auto-circuit runs in its own venv: ``benchmarks/bench_autocircuit.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from _peak import reset_peak, rss  # noqa: E402  (benchmarks/, the script's own folder)

import torch_shard_interpret as tsi  # noqa: E402
from torch_shard_interpret.bench._check_ioi import ioi_pairs, logit_diff  # noqa: E402

CASES = ("fwdbwd", "eap", "eap-ig", "fwdbwd-128", "eap-128", "fwdbwd-512", "eap-512", "paired")
ROUNDS = 5


def _inputs(model, case: str):
    """``(clean, corrupt, metric, ids)`` of a case: the IOI pairs, or one random prompt of ``-N`` tokens."""
    tail = case.rsplit("-", 1)[-1]
    if tail.isdigit():
        gen = torch.Generator().manual_seed(0)
        clean = torch.randint(100, 40000, (1, int(tail)), generator=gen)
        corrupt = torch.randint(100, 40000, (1, int(tail)), generator=gen)
        right, wrong = torch.tensor([model.token_id(" Mary")]), torch.tensor([model.token_id(" John")])
    else:
        clean, corrupt, right, wrong = ioi_pairs(model)
    metric = logit_diff(right, wrong)
    ids = clean if torch.is_tensor(clean) else torch.cat([model.to_tokens(t) for t in clean])
    return clean, corrupt, metric, ids


def _one(model, case: str, clean, corrupt, metric, ids) -> dict:
    if case.startswith("fwdbwd"):
        model.run(ids, cache="embed", grad=lambda r: metric(r.logits).sum())
        return {}
    method = "eap-ig" if case == "eap-ig" else "eap"
    scored = tsi.circuits.attribute(model, clean, corrupt, metric, method=method, steps=5, progress=False)
    info = {k: v for k, v in scored.info.items() if isinstance(v, (int, float))}
    return {**info, "edges": len(scored.graph.edges)}


def _paired(model) -> dict:
    """Median over ``ROUNDS`` warm rounds of (EAP time / fwd+bwd time), each round timing both back to back,
    so that a change in the machine's load between rounds cancels out of each ratio."""
    args = _inputs(model, "eap")
    for case in ("fwdbwd", "eap", "eap-ig"):
        _one(model, case, *args)  # warm-up: the layout and weights are read once per model
    ratios: dict[str, list[float]] = {"eap": [], "eap-ig": []}
    for _ in range(ROUNDS):
        for case in ratios:
            t0 = time.perf_counter()
            _one(model, "fwdbwd", *args)
            t1 = time.perf_counter()
            _one(model, case, *args)
            ratios[case].append((time.perf_counter() - t1) / (t1 - t0))
    return {k: sorted(v)[len(v) // 2] for k, v in ratios.items()}


def child(case: str) -> dict:
    model = tsi.load("smollm2-135m")
    if case == "paired":
        return {"case": case, **_paired(model)}
    args = _inputs(model, case)
    model.run(args[3][:1, :8])  # warm up
    base = reset_peak()
    t0 = time.perf_counter()
    info = _one(model, case, *args)
    seconds = time.perf_counter() - t0
    return {
        "case": case,
        "seconds": seconds,
        "peak_bytes": rss("VmHWM") - base,
        "tokens": int(args[3].shape[1]),
        **info,
    }


def run_child(case: str, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--child", case, "--threads", str(threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
    if out.returncode != 0:
        return {"case": case, "error": out.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def acdc_rows() -> list[dict]:
    from torch_shard_interpret.circuits._toy import toy_circuit

    rows = []
    tasks = [("toy (2-layer GQA LLaMA)", toy_circuit(0))]
    tasks += [(f"known circuit: {n}", tsi.bench.known_circuit(n)) for n in ("prev_token", "induction")]
    for name, task in tasks:
        t0 = time.perf_counter()
        res = tsi.circuits.acdc(task.model, task.clean, task.corrupt, task.metric, progress=False)
        rows.append({"task": name, "seconds": time.perf_counter() - t0, **res.info})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", default=None)
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child)))
        return
    res = {c: run_child(c, args.threads) for c in args.cases.split(",")}
    paired = res.pop("paired", {})
    print("| case | tokens | wall s | forward+backward equivalents | peak MiB | peak / fwd+bwd |")
    print("|---|---|---|---|---|---|")
    for c, r in res.items():
        if "error" in r:
            print(f"| {c} | error: {r['error']} | | | | |")
            continue
        tail = c.rsplit("-", 1)[-1]
        base = res.get(f"fwdbwd-{tail}" if tail.isdigit() else "fwdbwd", {})
        fe = r["seconds"] / base["seconds"] if base.get("seconds") else float("nan")
        pk = r["peak_bytes"] / base["peak_bytes"] if base.get("peak_bytes") else float("nan")
        print(
            f"| {c} | {r['tokens']} | {r['seconds']:.2f} | {fe:.2f} | {r['peak_bytes'] / 2**20:.0f} | {pk:.2f} |"
        )
    if "eap" in paired:
        print(f"\nWarm, paired with a fwd+bwd in each of {ROUNDS} rounds (median): EAP {paired['eap']:.2f}, "
              f"EAP-IG (5 steps) {paired['eap-ig']:.2f} forward+backward equivalents")  # fmt: skip
    a, b = res.get("eap-128", {}), res.get("eap-512", {})
    if "peak_bytes" in a and "peak_bytes" in b:
        slope = (b["peak_bytes"] - a["peak_bytes"]) / (512 - 128)
        fixed = a["peak_bytes"] - slope * 128
        longest = int((8 * 2**30 - fixed) / slope)
        print(f"\nEAP peak memory ~ {fixed / 2**20:.0f} MiB + {slope / 2**20:.2f} MiB/token (one prompt): "
              f"about {longest} tokens fit in 8 GiB")  # fmt: skip
    print(
        "\n| ACDC task | edges (one forward each) | batched forwards | patched rows | ratio | kept | seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in acdc_rows():
        print(f"| {r['task']} | {r['one_per_edge']} | {r['forwards']} | {r['rows']} | "
              f"{r['one_per_edge'] / r['forwards']:.1f}x | {r['kept']} | {r['seconds']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
