"""Activation patching of every ``resid_pre`` x position of the IOI pair on the embedded SmolLM2-135M.

One run times, on the same model and the same 30 x 14 grid (fp32, CPU):

- ``tsi`` batched: ``tsi.patching.activation_patching`` (many patched runs per forward, unchanged cells
  skipped, the unpatched run's KV cache reused before each cell's position, batches that grow at each
  block's input so the blocks before a cell run once), the same with ``reuse_kv=False``, and with
  ``share_prefix=False, reuse_kv=False`` (fixed batches of copies);
- ``tsi`` loop: one ``model.run`` per patch with ``tsi.Patch(clean, positions=[p])``;
- a raw-hook loop: one plain HF forward per patch with a ``register_forward_pre_hook`` on the decoder
  layer (what a hand-written script does);
- TransformerLens ``patching.get_act_patch_resid_pre`` on a ``TransformerBridge`` when
  ``transformer_lens`` is importable and can boot this model (else it is reported as skipped);
- attribution patching, in seconds and in forward-equivalents (its time / one plain batch-1 forward).

It also checks the batched grid against the loop and prints the attribution/exact correlation.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_patching.py [--threads 1] [--layers 0,10,20]

Prints a markdown table. On a machine shared with other jobs use ``--threads 1``: several intra-op
threads fighting for busy cores make every small forward pathologically slow.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import torch_shard_interpret as tsi  # noqa: E402

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When John and Mary went to the store, Mary gave a drink to"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--layers", help="comma-separated layers to patch (default: all)")
    ap.add_argument("--no-tl", action="store_true", help="skip TransformerLens")
    ap.add_argument(
        "--attribution-only",
        action="store_true",
        help="only the paired attribution-patching forward-equivalents (no grid, no loops)",
    )
    ap.add_argument("--rounds", type=int, default=7, help="paired attribution rounds (default 7)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = tsi.load("smollm2-135m")
    hf = model.module
    mary, john = model.token_id(" Mary"), model.token_id(" John")

    def metric(logits):
        return logits[:, -1, mary] - logits[:, -1, john]

    layers = [int(x) for x in args.layers.split(",")] if args.layers else list(range(model.cfg.n_layers))
    sites = [f"blocks.{i}.resid_pre" for i in layers]
    clean_ids, corrupt_ids = model.to_tokens(CLEAN), model.to_tokens(CORRUPT)
    n_pos = clean_ids.shape[1]
    n_cells = len(sites) * n_pos
    rows, notes = {}, []

    # one plain forward (the unit of "forward-equivalents")
    with torch.inference_mode():
        hf(input_ids=corrupt_ids, use_cache=False)
        fwd = statistics.median(
            timed(lambda: hf(input_ids=corrupt_ids, use_cache=False))[0] for _ in range(7)
        )

    if args.attribution_only:
        return attribution_only(model, hf, corrupt_ids, metric, sites, args.rounds)

    # tsi batched
    t_batched, exact = timed(
        lambda: tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, sites=sites, progress=False)
    )
    rows["tsi batched (`activation_patching`)"] = (
        t_batched,
        exact.info["forwards"],
        exact.info["batch_size"],
    )
    t_grown, grown = timed(
        lambda: tsi.patching.activation_patching(
            model, CLEAN, CORRUPT, metric, sites=sites, progress=False, reuse_kv=False
        )
    )
    rows["tsi batched, no KV prefix reuse (`reuse_kv=False`)"] = (
        t_grown,
        grown.info["forwards"],
        grown.info["batch_size"],
    )
    t_fixed, fixed = timed(
        lambda: tsi.patching.activation_patching(
            model,
            CLEAN,
            CORRUPT,
            metric,
            sites=sites,
            progress=False,
            share_prefix=False,
            reuse_kv=False,
        )
    )
    rows["tsi batched, fixed batches (`share_prefix=False`)"] = (
        t_fixed,
        fixed.info["forwards"],
        fixed.info["batch_size"],
    )

    # tsi loop, one forward per patch
    def tsi_loop():
        clean = model.run(clean_ids, cache=sites)
        out = torch.empty(len(sites), n_pos)
        for i, site in enumerate(sites):
            for p in range(n_pos):
                run = model.run(
                    corrupt_ids, interventions={site: tsi.Patch(clean, positions=[p])}, use_cache=False
                )
                out[i, p] = metric(run.logits)[0]
        return out

    t_loop, loop = timed(tsi_loop)
    rows["tsi loop (one `model.run` + `tsi.Patch` per cell)"] = (t_loop, n_cells + 1, 1)
    err = float((loop - exact.patched_metric).abs().max())
    err = max(err, float((fixed.patched_metric - exact.patched_metric).abs().max()))
    err = max(err, float((grown.patched_metric - exact.patched_metric).abs().max()))

    # raw-hook loop
    def raw_loop():
        clean = {}
        hooks = [
            hf.model.layers[i].register_forward_pre_hook(
                lambda m, a, kw, i=i: clean.__setitem__(i, (a[0] if a else kw["hidden_states"]).clone()),
                with_kwargs=True,
            )
            for i in layers
        ]
        with torch.no_grad():
            hf(input_ids=clean_ids, use_cache=False)
        for h in hooks:
            h.remove()
        out = torch.empty(len(layers), n_pos)
        for li, i in enumerate(layers):
            for p in range(n_pos):

                def patch(m, a, kw, i=i, p=p):
                    if a:
                        x = a[0].clone()
                        x[:, p] = clean[i][:, p]
                        return (x, *a[1:]), kw
                    x = kw["hidden_states"].clone()
                    x[:, p] = clean[i][:, p]
                    return a, {**kw, "hidden_states": x}

                h = hf.model.layers[i].register_forward_pre_hook(patch, with_kwargs=True)
                with torch.no_grad():
                    out[li, p] = metric(hf(input_ids=corrupt_ids, use_cache=False).logits)[0]
                h.remove()
        return out

    t_raw, raw = timed(raw_loop)
    rows["raw-hook loop (plain HF forward + pre-hook per cell)"] = (t_raw, n_cells + 1, 1)
    err = max(err, float((raw - exact.patched_metric).abs().max()))

    # TransformerLens
    if not args.no_tl:
        os.environ.setdefault("TQDM_DISABLE", "1")  # TL's per-cell progress bar
        try:
            from transformer_lens import patching as tl_patching
            from transformer_lens.model_bridge import TransformerBridge

            bridge = TransformerBridge.boot_transformers(
                "HuggingFaceTB/SmolLM2-135M-Instruct", hf_model=copy.deepcopy(hf), tokenizer=model.tokenizer,
                device="cpu", dtype=torch.float32,
            )  # fmt: skip
            _, tl_cache = bridge.run_with_cache(clean_ids)

            def tl_metric(logits):
                return metric(logits)[0]

            t_tl, tl = timed(
                lambda: tl_patching.get_act_patch_resid_pre(bridge, corrupt_ids, tl_cache, tl_metric)
            )
            tl = tl[layers]
            rows["TransformerLens `patching.get_act_patch_resid_pre` (bridge)"] = (t_tl, n_cells + 1, 1)
            notes.append(
                f"TL vs tsi batched: max |diff| {float((tl - exact.patched_metric).abs().max()):.1e}"
            )
        except Exception as exc:  # noqa: BLE001
            notes.append(
                f"TransformerLens skipped ({type(exc).__name__}: {str(exc)[:160]}); the raw-hook loop stands in"
            )

    # Attribution patching in forward-equivalents: after a warm-up, 7 rounds of (one plain forward, one
    # attribution patching) back to back, and the median of their ratios, so that load drifting over the run
    # does not bias it.
    def attribute():
        return tsi.patching.attribution_patching(model, CLEAN, CORRUPT, metric, sites=sites)

    def plain():
        with torch.inference_mode():
            return hf(input_ids=corrupt_ids, use_cache=False)

    est = attribute()
    pairs = [(timed(plain)[0], timed(attribute)[0]) for _ in range(7)]
    t_attr = statistics.median(a for _, a in pairs)
    fwd_eq = statistics.median(a / f for f, a in pairs)

    print(f"\n### Activation patching, {len(sites)} resid_pre x {n_pos} positions = {n_cells} cells (SmolLM2-135M, "
          f"fp32, CPU, {torch.get_num_threads()} thread(s))\n")  # fmt: skip
    print("| method | wall time (s) | forwards | rows per forward | speed-up vs tsi loop |")
    print("|---|---:|---:|---:|---:|")
    for name, (t, n, b) in rows.items():
        print(f"| {name} | {t:.2f} | {n} | {b} | {t_loop / t:.2f}x |")
    print(f"| tsi `attribution_patching` | {t_attr:.2f} | 2 + 1 backward | 1 | {t_loop / t_attr:.1f}x |")
    print()
    print(
        f"- one plain batch-1 forward: {fwd * 1000:.1f} ms; attribution patching = {fwd_eq:.2f} forward-equivalents (median of 7 paired rounds)"
    )
    print(f"- batched vs loops: max |patched metric difference| = {err:.1e}")
    print(f"- cells skipped as no-ops (source == base activation): {n_cells - exact.info['cells_run']}")
    print(f"- attribution vs exact: Pearson r = {est.correlation(exact):.3f} over {n_cells} cells")
    print(f"- clean metric {exact.clean_metric:+.3f}, corrupt metric {exact.corrupt_metric:+.3f}")
    for note in notes:
        print(f"- {note}")
    return 0


def attribution_only(model, hf, corrupt_ids, metric, sites, rounds: int) -> int:
    """Attribution patching in forward-equivalents, paired: after a warm-up, ``rounds`` rounds of (one plain
    batch-1 forward, one attribution patching, one plain forward) back to back; each round's ratio is the
    attribution time over the mean of its two forwards. Prints the median ratio and its IQR."""

    def attribute():
        return tsi.patching.attribution_patching(model, CLEAN, CORRUPT, metric, sites=sites)

    def plain():
        with torch.inference_mode():
            return hf(input_ids=corrupt_ids, use_cache=False)

    for _ in range(2):
        plain()
        attribute()
    ratios, fwds, attrs = [], [], []
    for _ in range(rounds):
        f1 = timed(plain)[0]
        a = timed(attribute)[0]
        f2 = timed(plain)[0]
        fwds.append((f1 + f2) / 2)
        attrs.append(a)
        ratios.append(a / ((f1 + f2) / 2))
    q = statistics.quantiles(ratios, n=4)
    print(
        f"attribution patching over {len(sites)} sites, {corrupt_ids.shape[1]} tokens (SmolLM2-135M, fp32, CPU, "
        f"{torch.get_num_threads()} thread(s)), {rounds} paired rounds: plain batch-1 forward "
        f"{statistics.median(fwds) * 1000:.1f} ms, attribution {statistics.median(attrs) * 1000:.1f} ms, "
        f"{statistics.median(ratios):.2f} forward-equivalents (IQR {q[0]:.2f}-{q[2]:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
