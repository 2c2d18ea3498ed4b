"""SAE recovery on toy superposition, side by side: tsi.sae vs SAELens vs sparsify, same data and config.

Every library trains a TopK SAE with d_sae = n_features and k = ceil(expected L0) on the same 50,000 hidden
activations of ``tsi.bench.toy_superposition`` for the same number of samples (our default: 1,000 steps of
4,096), each with its own default learning rate and loss; scored by mean max cosine and MCC against the true
directions. Peers run only where installed (benchmarks/.venv; see benchmarks/sae_requirements.txt):

    benchmarks/.venv/bin/python benchmarks/bench_groundtruth.py
"""

from __future__ import annotations

import json
import math
import time

import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.bench import mcc, mean_max_cosine

CONFIGS = ((20, 8, 0.05), (40, 10, 0.05), (100, 20, 0.02), (40, 10, 0.1))
STEPS, BATCH = 1000, 4096


def batches(acts: torch.Tensor, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(STEPS):
        yield acts[torch.randint(len(acts), (BATCH,), generator=g)]


def ours(acts, n, k):
    tcfg = {"steps": STEPS, "batch_size": BATCH}
    return tsi.sae.train(acts, {"kind": "topk", "d_sae": n, "k": k}, tcfg, progress=False).W_dec


def saelens(acts, n, k):
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=acts.shape[1], d_sae=n, k=k))
    cfg = SAETrainerConfig(
        total_training_samples=STEPS * BATCH,
        train_batch_size_samples=BATCH,
        device="cpu",
        n_checkpoints=0,
        checkpoint_path=None,
        save_final_checkpoint=False,
        autocast=False,
        lr_scheduler_name="constant",
        lr_end=3e-4,
        lr_warm_up_steps=0,
        lr_decay_steps=0,
        n_restart_cycles=1,
        adam_beta1=0.9,
        adam_beta2=0.999,
        dead_feature_window=1000,
        feature_sampling_window=2000,
        n_batches_for_norm_estimate=100,
        logger=LoggingConfig(log_to_wandb=False, eval_every_n_wandb_logs=2**31 - 1),
    )  # fmt: skip  (SAELens's defaults: lr 3e-4, as in its train_toy_sae)
    SAETrainer(cfg=cfg, sae=sae, data_provider=batches(acts)).fit()
    return sae.W_dec.detach()


def sparsify(acts, n, k):
    from sparsify import SparseCoder, SparseCoderConfig

    sae = SparseCoder(acts.shape[1], SparseCoderConfig(num_latents=n, k=k))
    lr = 2e-4 / (n / 2**14) ** 0.5  # sparsify's default Adam rate
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    warm = 1000  # sparsify's default warm-up
    for step, x in enumerate(batches(acts)):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warm)
        out = sae(x)
        opt.zero_grad()
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        sae.set_decoder_norm_to_unit_norm()
    return sae.W_dec.detach()


def main() -> None:
    results = []
    for n, d, p in CONFIGS:
        task = tsi.bench.toy_superposition(n, d, p)
        acts = task.sample(50_000)
        k = max(1, math.ceil(task.expected_l0))
        for name, fn in (("tsi", ours), ("saelens", saelens), ("sparsify", sparsify)):
            t0 = time.perf_counter()
            try:
                w = fn(acts, n, k)
            except ImportError as exc:
                print(f"{name}: not installed ({exc}); skipped", flush=True)
                continue
            row = {"config": [n, d, p], "library": name, "mean_max_cosine": round(mean_max_cosine(task.features, w), 4),
                   "mcc": round(mcc(task.features, w), 4), "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
            results.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
