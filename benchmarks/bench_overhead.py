"""Fixed cost of one ``model.run`` with one cached site on a tiny MLP, against a raw hook, in one run.

The cost that matters is the one *added* to the plain forward: ``run - plain`` for tsi and ``raw - plain``
for a raw ``register_forward_hook`` / call / ``remove`` that stores the detached output. Every call of
every case is timed on its own and the cases alternate call by call (in a rotating order), so the three
see the same machine load; each round takes the median of its ``inner`` calls per case (robust to the
calls a loaded machine preempts) and gives one ratio ``(tsi - plain) / (raw - plain)``. Printed: medians over rounds and the ratio's IQR.

tsi's lean run puts its hook straight into the module's hook table (``core/_fasthooks.py``) instead of going
through ``register_forward_hook``; a fourth case, ``raw_table``, does the same by hand, so the second ratio
``(tsi - plain) / (raw_table - plain)`` is what tsi adds beyond an equally cheap registration.

    python benchmarks/bench_overhead.py [--rounds 41] [--inner 400]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import torch_shard_interpret as tsi  # noqa: E402
from torch_shard_interpret.core import _fasthooks  # noqa: E402


def interleaved(cases: dict[str, Callable[[], object]], rounds: int, inner: int) -> dict[str, list[float]]:
    """Per case, the median call (µs) of each round; the cases alternate call by call in a rotating order."""
    names = list(cases)
    fns = [cases[n] for n in names]
    clock = time.perf_counter_ns
    sums: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(inner):
        for f in fns:
            f()
    gc.disable()
    try:
        for r in range(rounds):
            acc: list[list[int]] = [[] for _ in fns]
            for i in range(inner):
                k = (i + r) % len(fns)
                for j in list(range(k, len(fns))) + list(range(k)):
                    f = fns[j]
                    t0 = clock()
                    f()
                    acc[j].append(clock() - t0)
            # The median call of the round: robust to the calls a loaded machine preempts.
            for n, a in zip(names, acc, strict=True):
                sums[n].append(statistics.median(a) / 1e3)
            gc.collect()
    finally:
        gc.enable()
    return sums


def measure_intervention(rounds: int, inner: int) -> str:
    """A run with one intervention and one cached site (the general scope), with its hooks put into the
    tables directly against through the public API (``_fasthooks.DIRECT`` toggled call by call)."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64)).eval()
    x = torch.randn(1, 64)
    model = tsi.wrap(mlp)
    ivs = {"0:output": lambda t, ctx: t * 0.5}

    def direct():
        return model.run(x, interventions=ivs, cache="2:output")

    def public():
        _fasthooks.DIRECT = False
        try:
            return direct()
        finally:
            _fasthooks.DIRECT = True

    assert torch.equal(direct().logits, public().logits), "the two registrations gave different logits"
    sums = interleaved({"plain": lambda: mlp(x), "direct": direct, "public": public}, rounds, inner)
    plain, d, p = sums["plain"], sums["direct"], sums["public"]
    ratios = [(a - c) / (b - c) for a, b, c in zip(d, p, plain, strict=True)]
    q = statistics.quantiles(ratios, n=4)
    return (
        f"1 intervention + 1 cached site (inference_mode): plain {statistics.median(plain):.1f} µs, "
        f"direct tables +{statistics.median([a - c for a, c in zip(d, plain, strict=True)]):.2f} µs, "
        f"public API +{statistics.median([b - c for b, c in zip(p, plain, strict=True)]):.2f} µs, "
        f"ratio {statistics.median(ratios):.3f} (IQR {q[0]:.3f}-{q[2]:.3f})"
    )


def measure(rounds: int, inner: int, inference: bool = True) -> dict[str, float]:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64)).eval()
    x = torch.randn(1, 64)
    model = tsi.wrap(mlp)
    first = mlp[0]

    def raw():
        store = {}

        def hook(mod, args, out):
            store["0"] = out.detach()

        h = first.register_forward_hook(hook)
        try:
            return mlp(x), store
        finally:
            h.remove()

    def raw_table():  # the same hook put straight into the module's hook table, as tsi's lean run does
        store = {}

        def hook(mod, args, out):
            store["0"] = out.detach()

        hooks = first._forward_hooks
        hooks[-1] = hook
        try:
            return mlp(x), store
        finally:
            hooks.pop(-1, None)

    if inference:
        plain = mlp.__call__
        cases = {
            "plain": lambda: plain(x),
            "tsi": lambda: model.run(x, cache="0:output"),
            "raw": raw,
            "raw_table": raw_table,
        }
    else:  # the default usage: run() turns autograd off itself; the peers do it with torch.no_grad()

        def plain_ng():
            with torch.no_grad():
                return mlp(x)

        def raw_ng():
            with torch.no_grad():
                return raw()

        def table_ng():
            with torch.no_grad():
                return raw_table()

        cases = {
            "plain": plain_ng,
            "tsi": lambda: model.run(x, cache="0:output"),
            "raw": raw_ng,
            "raw_table": table_ng,
        }
    got = model.run(x, cache="0:output").cache["0:output"]
    assert torch.equal(got, raw()[1]["0"]), "tsi recorded a different tensor"
    sums = interleaved(cases, rounds, inner)
    ratios = [(t - p) / (r - p) for t, p, r in zip(sums["tsi"], sums["plain"], sums["raw"], strict=True)]
    table_ratios = [
        (t - p) / (r - p) for t, p, r in zip(sums["tsi"], sums["plain"], sums["raw_table"], strict=True)
    ]
    q = statistics.quantiles(ratios, n=4)
    out = {f"{n}_us": statistics.median(v) for n, v in sums.items()}
    out["tsi_added_us"] = statistics.median([a - b for a, b in zip(sums["tsi"], sums["plain"], strict=True)])
    out["raw_added_us"] = statistics.median([a - b for a, b in zip(sums["raw"], sums["plain"], strict=True)])
    out["added_ratio"] = statistics.median(ratios)
    out["added_ratio_q1"], out["added_ratio_q3"] = q[0], q[2]
    t = statistics.quantiles(table_ratios, n=4)
    out["table_added_us"] = statistics.median(
        [a - b for a, b in zip(sums["raw_table"], sums["plain"], strict=True)]
    )
    out["table_ratio"] = statistics.median(table_ratios)
    out["table_ratio_q1"], out["table_ratio_q3"] = t[0], t[2]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=41)
    ap.add_argument("--inner", type=int, default=400)
    ap.add_argument(
        "--intervention", action="store_true", help="also time a run with one intervention (general scope)"
    )
    args = ap.parse_args()
    torch.set_num_threads(
        1
    )  # a [1, 64] forward gains nothing from threads; on a loaded machine they add noise
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for label, inference in (
        ("under torch.inference_mode()", True),
        ("autograd on (run() turns it off)", False),
    ):
        if inference:
            with torch.inference_mode():
                res = measure(args.rounds, args.inner, True)
        else:
            res = measure(args.rounds, args.inner, False)
        print(
            f"{label}: plain {res['plain_us']:.1f} µs, tsi +{res['tsi_added_us']:.2f} µs, "
            f"raw +{res['raw_added_us']:.2f} µs, added ratio {res['added_ratio']:.3f} "
            f"(IQR {res['added_ratio_q1']:.3f}-{res['added_ratio_q3']:.3f}); against a raw hook put straight "
            f"into the hook table +{res['table_added_us']:.2f} µs: {res['table_ratio']:.3f} "
            f"(IQR {res['table_ratio_q1']:.3f}-{res['table_ratio_q3']:.3f})"
        )
    if args.intervention:
        with torch.inference_mode():
            print(measure_intervention(args.rounds, args.inner))


if __name__ == "__main__":
    main()
