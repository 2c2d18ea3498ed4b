"""SAE training throughput (tokens/s) on CPU: torch-shard-interpret vs SAELens vs EleutherAI sparsify.

Same stored activations for all (d_in 576 like SmolLM2-135M, written once to benchmarks/.cache/), a TopK SAE
with 4096 latents, k 32, batch 4096, fp32, Adam; one optimizer step = forward + backward + the library's
decoder-norm handling + optimizer step. No dead latents during the timed steps (AuxK does not run anywhere).

    benchmarks/.venv/bin/python benchmarks/bench_sae.py [--steps 2] [--repeats 12] [--threads 1] [--libs tsi,sparsify]

``--harvest`` stores real SmolLM2-135M blocks.15.resid_post activations instead of synthetic sparse ones.
Install the competitors with benchmarks/sae_requirements.txt (see there). A library that cannot be imported
is reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

D_IN, D_SAE, K, BATCH = 576, 4096, 32, 4096
CACHE = Path(__file__).parent / ".cache"


def activations(n: int, harvest: bool) -> torch.Tensor:
    path = CACHE / f"sae_acts_{'smollm2' if harvest else 'synthetic'}_{n}x{D_IN}.pt"
    if path.exists():
        return torch.load(path)
    CACHE.mkdir(exist_ok=True)
    if harvest:
        import torch_shard_interpret as tsi

        model = tsi.load("smollm2-135m")
        words = (
            "the of and to in is was for on that with as by it at from his an were are which this be".split()
        )
        g = torch.Generator().manual_seed(0)
        rows = []
        while sum(r.shape[0] for r in rows) < n:
            text = " ".join(words[i] for i in torch.randint(len(words), (128,), generator=g).tolist())
            rows.append(
                model.run([text] * 4, cache="blocks.15.resid_post", return_logits=False)
                .cache["blocks.15.resid_post"]
                .reshape(-1, D_IN)
            )
        x = torch.cat(rows)[:n].float()
    else:  # sparse features + noise: a realistic sparsity pattern for the encoder
        g = torch.Generator().manual_seed(0)
        dirs = torch.nn.functional.normalize(torch.randn(8192, D_IN, generator=g), dim=-1)
        idx = torch.randint(8192, (n, 24), generator=g)
        x = torch.einsum("nk,nkd->nd", torch.rand(n, 24, generator=g), dirs[idx]) + 0.05 * torch.randn(
            n, D_IN, generator=g
        )
    torch.save(x, path)
    return x


def _time(step, batches, start: int, steps: int) -> float:
    t0 = time.perf_counter()
    for i in range(steps):
        step(batches[(start + i) % len(batches)])
    return steps * BATCH / (time.perf_counter() - t0)


def bench_ours(dtype: str = "float32"):
    from torch_shard_interpret.sae import SAEConfig, TrainConfig
    from torch_shard_interpret.sae._trainer import Dist, Trainer

    cfg = SAEConfig(d_in=D_IN, d_sae=D_SAE, kind="topk", k=K, dtype=dtype)
    tr = Trainer(cfg, TrainConfig(batch_size=BATCH, dead_after_tokens=10**12), 10**6, Dist(False))
    return lambda x: tr.step(x)


def bench_saelens(sparse: bool = False):
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.saes.sae import TrainStepInput

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, use_sparse_activations=sparse))
    opt = torch.optim.Adam(sae.parameters(), lr=2e-4)
    dead = torch.zeros(D_SAE, dtype=torch.bool)

    def step(x):
        sae.train()
        out = sae.training_forward_pass(
            TrainStepInput(
                sae_in=x, coefficients={}, dead_neuron_mask=dead, n_training_steps=0, is_logging_step=False
            )
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)  # as SAETrainer does
        opt.step()
        opt.zero_grad()

    return step


def bench_sparsify():
    from sparsify import SparseCoder, SparseCoderConfig

    sae = SparseCoder(D_IN, SparseCoderConfig(num_latents=D_SAE, k=K))
    opt = torch.optim.Adam(sae.parameters(), lr=2e-4)

    def step(x):
        out = sae(x)
        out.fvu.backward()  # auxk_alpha defaults to 0 in sparsify
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
        sae.set_decoder_norm_to_unit_norm()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2, help="steps per library per round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=12, help="rounds over all libraries (median reported)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument(
        "--harvest", action="store_true", help="real SmolLM2-135M activations instead of synthetic"
    )
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument(
        "--libs", default="all", help="comma-separated subset: tsi,tsi-bf16,saelens,saelens-sparse,sparsify"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = activations(BATCH * 4, args.harvest)
    batches = list(x.split(BATCH))
    every = {"tsi": ("torch-shard-interpret", bench_ours),
             "tsi-bf16": ("torch-shard-interpret (dtype bf16)", lambda: bench_ours("bfloat16")),
             "saelens": ("SAELens (dense)", bench_saelens),
             "saelens-sparse": ("SAELens (use_sparse_activations)", lambda: bench_saelens(sparse=True)),
             "sparsify": ("sparsify", bench_sparsify)}  # fmt: skip
    keys = [k for k in every if k != "tsi-bf16"] if args.libs == "all" else args.libs.split(",")
    libs = dict(every[k] for k in keys)
    load = os.getloadavg()
    results: dict[str, list[float]] = {name: [] for name in libs}
    errors: dict[str, str] = {}
    steppers = {}
    for name, make in libs.items():  # set up once and warm up (tsi's first step initialises b_dec)
        try:
            steppers[name] = make()
            for i in range(args.warmup):
                steppers[name](batches[i % len(batches)])
        except Exception as exc:  # noqa: BLE001 - report and go on
            errors[name] = f"{type(exc).__name__}: {exc}"
    for r in range(args.repeats):  # interleaved rounds in a rotating order: load slows every library alike
        names = list(steppers)
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if name in errors:
                continue
            try:
                results[name].append(_time(steppers[name], batches, r * args.steps, args.steps))
            except Exception as exc:  # noqa: BLE001 - report and go on
                errors[name] = f"{type(exc).__name__}: {exc}"
    print(f"SAE training throughput, CPU ({platform.processor() or platform.machine()}, {args.threads} threads), "
          f"torch {torch.__version__}, d_in {D_IN}, d_sae {D_SAE}, k {K}, batch {BATCH}, fp32, "
          f"{'SmolLM2' if args.harvest else 'synthetic'} activations, {args.steps} steps x {args.repeats} interleaved rounds")  # fmt: skip
    print(f"{'library':36s} {'tokens/s':>10s} {'ms/step':>9s}")
    table = {}
    for name, vals in results.items():
        if name in errors:
            print(f"{name:36s} skipped: {errors[name][:150]}")
            continue
        tps = statistics.median(vals)
        table[name] = tps
        print(f"{name:36s} {tps:10.0f} {1000 * BATCH / tps:9.0f}")
    ours, ref = "torch-shard-interpret", "sparsify"
    if results.get(ours) and results.get(ref) and ref not in errors and ours not in errors:
        ratios = sorted(a / b for a, b in zip(results[ours], results[ref], strict=True))
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        print(f"tsi / sparsify, per-round ratio: median {statistics.median(ratios):.2f}x "
              f"(IQR {q[0]:.2f}-{q[2]:.2f}, {len(ratios)} rounds)")  # fmt: skip
    print(
        f"load average before {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, after "
        + " / ".join(f"{v:.1f}" for v in os.getloadavg())
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"tokens_per_s": table, "errors": errors}, indent=2))


if __name__ == "__main__":
    main()
