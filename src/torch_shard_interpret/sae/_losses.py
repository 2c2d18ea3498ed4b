"""One training forward pass per SAE kind: reconstruction, sparsity penalty and AuxK, as sums over the rows
this process holds divided by global normalisers, so that summing gradients over DDP ranks gives exactly the
single-process gradient."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._config import SAEConfig, SAEError
from ._kernels import GatherEncode, SparseDecode, topk_forward
from ._sae import SAE


class _JumpReLU(torch.autograd.Function):
    """``pre * (pre > theta)``; gradient to ``theta`` through a rectangle kernel of width ``eps`` (STE)."""

    @staticmethod
    def forward(ctx, pre, theta, eps):
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return pre * (pre > theta)

    @staticmethod
    def backward(ctx, g):
        pre, theta = ctx.saved_tensors
        eps = ctx.eps
        near = ((pre - theta).abs() < eps / 2).to(g.dtype)
        d_pre = g * (pre > theta)
        d_theta = (-(theta / eps) * near * g).sum(0)
        return d_pre, d_theta, None


class _Step(torch.autograd.Function):
    """``(pre > theta)`` as a float; gradient to ``theta`` through the same kernel (the L0 penalty's STE)."""

    @staticmethod
    def forward(ctx, pre, theta, eps):
        ctx.save_for_backward(pre, theta)
        ctx.eps = eps
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, g):
        pre, theta = ctx.saved_tensors
        near = ((pre - theta).abs() < ctx.eps / 2).to(g.dtype)
        return None, (-(1.0 / ctx.eps) * near * g).sum(0), None


EARLY_STEPS = {"batchtopk": 800, "jumprelu": 500}
"""First training steps of a kind spent as another (docs/bench-superposition.md, "SAE defaults"): BatchTopK selects per token
(TopK) and JumpReLU trains as ReLU with the L1 penalty ``l1_coefficient``, before their own selection."""


@dataclass
class StepOut:
    loss: torch.Tensor
    """What to differentiate (local part of the global loss)."""
    sq_err: torch.Tensor
    """Sum of squared errors over local rows (no grad)."""
    l0: torch.Tensor
    """Sum over local rows of the number of active latents (no grad)."""
    fired: torch.Tensor
    """``[d_sae]`` bool: latents active on some local row."""
    aux: torch.Tensor
    """The AuxK term (0 when unused)."""


def forward_loss(
    sae: SAE,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_global: int,
    total_var: torch.Tensor,
    dead: torch.Tensor | None,
    aux_reduce=None,
    gather=None,
    step: int | None = None,
    workspace: dict[str, torch.Tensor] | None = None,
) -> StepOut:
    """Loss of ``sae`` on local rows ``x`` -> targets ``y`` (already normalised).

    ``n_global``: rows in the global batch; ``total_var``: ``sum ||y - mean(y)||^2`` over the global batch;
    ``dead``: ``[d_sae]`` bool mask of dead latents (AuxK); ``aux_reduce``: all-reduce (sum) for AuxK statistics;
    ``gather``: all-gather + concatenate (DDP), so that BatchTopK selects over the global batch;
    ``step``: the index of this training step (the trainer's, saved in its checkpoints, so that a resumed run
    stays in the phase it was in, see ``EARLY_STEPS``), or None for an evaluation pass, which updates nothing;
    ``workspace``: buffers a training loop keeps between steps (see ``topk_forward``).
    """
    cfg = sae.cfg
    if cfg.kind == "abstopk" or cfg.skip:  # loaded from SAELens: inference only here
        what, fix = (
            ("abstopk SAEs", "kind='topk'") if cfg.kind == "abstopk" else ("skip transcoders", "skip=False")
        )
        raise SAEError(f"{what} can be loaded and run but not trained by tsi; train with {fix} instead")
    b_in = sae.b_dec if (cfg.apply_b_dec_to_input and not cfg.transcoder) else None
    zero = x.new_zeros(())
    training = step is not None
    early = step is not None and step < EARLY_STEPS.get(cfg.kind, 0)
    if cfg.kind == "topk" or (cfg.kind == "batchtopk" and early):
        x_hat, z, idx, pre, xc = topk_forward(
            x, sae.W_enc, sae.b_enc, sae.W_dec, b_in, sae.b_dec, _k(cfg), workspace
        )
        fired = torch.zeros(cfg.d_sae, dtype=torch.bool, device=x.device)
        fired[idx[z > 0]] = True
        l0 = (z > 0).sum().to(x.dtype)
    else:
        xc = x - b_in if b_in is not None else x
        pre = torch.addmm(sae.b_enc, xc, sae.W_enc)  # [batch, d_sae]
        if cfg.kind == "relu" or (cfg.kind == "jumprelu" and early):
            z = F.relu(pre)
        elif cfg.kind == "jumprelu":
            z = _JumpReLU.apply(F.relu(pre), sae.log_threshold.exp(), cfg.jumprelu_bandwidth)
        elif gather is None:  # batchtopk: the k * batch largest activations of the batch
            flat = F.relu(pre).flatten()
            n_keep = min(_k(cfg) * x.shape[0], flat.numel())
            vals, where = flat.topk(n_keep, sorted=False)
            mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(0, where, True).view_as(pre)
            z = F.relu(pre) * mask
            if training:
                _update_threshold(sae, vals)
        else:
            z, vals = _batchtopk_global(pre, _k(cfg) * n_global, cfg.d_sae * n_global, gather)
            if training:
                _update_threshold(sae, vals)
        x_hat = z @ sae.W_dec + sae.b_dec
        active = z > 0
        fired = active.any(0)
        l0 = active.sum().to(x.dtype)
    sq = F.mse_loss(x_hat, y, reduction="sum")  # one fused kernel each way, no [batch, d_out] temporaries
    if cfg.kind in ("topk", "batchtopk"):
        loss = sq / total_var
    elif cfg.kind == "relu" or early:
        loss = sq / n_global + cfg.l1_coefficient * (z * sae.W_dec.norm(dim=-1)).sum() / n_global
    else:
        steps = _Step.apply(F.relu(pre), sae.log_threshold.exp(), cfg.jumprelu_bandwidth)
        loss = sq / n_global + cfg.l0_coefficient * steps.sum() / n_global
    aux = zero
    if cfg.kind != "relu" and dead is not None and cfg.aux_coefficient > 0:
        aux = _auxk(sae, pre, xc, (x_hat - y).detach(), dead, aux_reduce)
        # JumpReLU's loss is per row, not per unit of variance: weigh AuxK the same relative to it as in TopK
        weight = cfg.aux_coefficient * (total_var / n_global if cfg.kind == "jumprelu" else 1.0)
        loss = loss + weight * aux
    return StepOut(loss, sq.detach(), l0.detach(), fired, aux.detach())


@torch.no_grad()
def _k(cfg: SAEConfig) -> int:
    """``cfg.k`` of a top-k kind (SAEConfig checks it on creation; this names a config changed since)."""
    if cfg.k is None:
        raise SAEError(f"a {cfg.kind} SAE needs k (active latents per token), not None")
    return cfg.k


def _update_threshold(sae: SAE, vals: torch.Tensor) -> None:
    """EMA of the smallest positive kept activation (the BatchTopK inference threshold)."""
    pos = vals[vals > 0]
    if pos.numel():
        low = pos.min().to(sae.threshold.dtype)
        t = sae.threshold
        t.copy_(low if float(t) == 0.0 else 0.99 * t + 0.01 * low)


def _batchtopk_global(
    pre: torch.Tensor, n_keep: int, n_all: int, gather
) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchTopK over the global batch under DDP: every rank offers its ``n_keep`` largest activations (the
    global top ``n_keep`` can all sit on one rank), the offers are all-gathered, and the ``n_keep``-th largest
    is the global cut. Returns the local latents and the globally kept values (identical on every rank)."""
    act = F.relu(pre)
    n_keep = min(n_keep, n_all)
    with torch.no_grad():
        flat = act.detach().flatten()
        offer = flat.topk(min(n_keep, flat.numel()), sorted=False).values
        if offer.numel() < n_keep:  # equal shapes for all_gather; -1 is below every ReLU value
            offer = torch.cat([offer, offer.new_full((n_keep - offer.numel(),), -1.0)])
        kept = gather(offer).topk(n_keep, sorted=False).values
        cut = kept.min()
        # fewer than n_keep positive values: every positive one is kept (the zeros change nothing)
        mask = act >= cut if float(cut) > 0 else act > 0
    return act * mask, kept


def _auxk(sae: SAE, pre, xc, err, dead, aux_reduce) -> torch.Tensor:
    """Gao et al. 2024: the top ``aux_k`` dead latents reconstruct the residual ``-err`` (= y - x_hat)."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return err.new_zeros(())
    k_aux = min(sae.cfg.aux_k or sae.cfg.d_in // 2, n_dead)
    resid = -err  # [batch, d_out]
    stats = torch.cat([resid.sum(0), resid.pow(2).sum().reshape(1), err.new_tensor([resid.shape[0]])])
    if aux_reduce is not None:
        stats = aux_reduce(stats)
    d = resid.shape[1]
    mean, sumsq, n = stats[:d] / stats[-1], stats[d], stats[-1]
    var = (sumsq - n * mean.pow(2).sum()).clamp_min(1e-12)
    with torch.no_grad():
        masked = pre.detach().masked_fill(~dead, float("-inf"))
        vals, idx = masked.topk(k_aux, dim=-1, sorted=False)
    b_in = sae.b_dec if (sae.cfg.apply_b_dec_to_input and not sae.cfg.transcoder) else None
    a = GatherEncode.apply(vals, xc.detach(), sae.W_enc, sae.b_enc, b_in, idx).relu()
    r_hat = SparseDecode.apply(a, idx, sae.W_dec)
    return (r_hat - resid).pow(2).sum() / var
