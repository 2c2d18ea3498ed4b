"""Ground truth: a TopK SAE recovers the feature directions of a toy model of superposition.

Elhage et al. 2022: ``n`` sparse features (each active with probability ``p``, magnitude uniform in [0, 1])
are compressed into ``m < n`` dimensions by ``h = W x`` and read back with ``x' = ReLU(W^T h + b)``. The
columns of ``W`` are the true feature directions in the hidden space; an SAE trained on ``h`` should find them.
"""

from __future__ import annotations

import torch

import torch_shard_interpret as tsi

N_FEAT, D_HIDDEN, P_ACTIVE = 40, 16, 0.04


def _features(n: int, gen: torch.Generator) -> torch.Tensor:
    on = torch.rand(n, N_FEAT, generator=gen) < P_ACTIVE
    return on * torch.rand(n, N_FEAT, generator=gen)


def _toy_model(gen: torch.Generator, steps: int = 2500) -> torch.Tensor:
    W = torch.nn.Parameter(0.3 * torch.randn(D_HIDDEN, N_FEAT, generator=gen))  # noqa: N806
    b = torch.nn.Parameter(torch.zeros(N_FEAT))
    opt = torch.optim.Adam([W, b], lr=1e-2)
    for _ in range(steps):
        x = _features(512, gen)
        loss = (torch.relu((x @ W.t()) @ W + b) - x).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return W.detach()


def test_topk_sae_recovers_toy_feature_directions():
    gen = torch.Generator().manual_seed(0)
    W = _toy_model(gen)  # noqa: N806
    represented = W.norm(dim=0) > 0.5  # features the toy model learnt to store
    assert int(represented.sum()) >= N_FEAT * 3 // 4
    h = _features(16_384, gen) @ W.t()  # [n, d_hidden] hidden activations
    sae = tsi.sae.train(
        h,
        {"kind": "topk", "d_sae": 2 * N_FEAT, "k": 3},
        {"steps": 1200, "batch_size": 1024, "lr": 3e-3},
        progress=False,
    )
    true = torch.nn.functional.normalize(W[:, represented].t(), dim=-1)  # [n_feat, d_hidden]
    learnt = torch.nn.functional.normalize(sae.W_dec.detach(), dim=-1)  # [d_sae, d_hidden]
    best = (true @ learnt.t()).max(dim=1).values
    print(f"toy superposition: mean max cosine {best.mean():.4f} over {int(represented.sum())} features")
    assert float(best.mean()) >= 0.9
