"""The trainer of one SAE: ``Trainer.step(x, y)`` is one Adam step on one global batch.

The loop around it (``_train.py``) hands every trainer the same global batch. Under ``torchrun`` every rank
sees the whole batch, trains on its own slice of rows (``_slice``) and sums gradients and statistics with
``all_reduce`` through ``Dist``, a thin view of the process group that ``tsi.distributed`` starts (its timeout
comes from ``$TSI_DIST_TIMEOUT``). A trainer's ``state()`` holds tensors and JSON values only, which
``_checkpoint`` writes without pickling.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from ._config import DEAD_TOKENS_PER_LATENT, LR_AT_16K, LR_EXPONENT, SAEConfig, SAEError, TrainConfig
from ._losses import forward_loss
from ._sae import SAE, make


# ---- distributed --------------------------------------------------------------------------------
class Dist:
    """Rank, world size and sum-reductions; a no-op outside ``torch.distributed``."""

    def __init__(self, mode: str | bool = "auto"):
        import torch.distributed as dist

        from ..distributed import _group

        self.dist, self._group = dist, _group
        # Start a group where none runs (nccl with CUDA, else gloo; timeout from $TSI_DIST_TIMEOUT): under
        # torchrun for "auto", always for True (a world of one outside torchrun); this object then ends it.
        self.owned = False
        if mode == "auto":
            self.owned = _group.join()
        elif mode is True and not _group.is_initialized():
            _group.init()
            self.owned = True
        want = mode is True or (mode == "auto" and _group.launched())
        self.on = want and _group.is_initialized() and _group.world_size() > 1
        self.rank = _group.rank() if self.on else 0
        self.world = _group.world_size() if self.on else 1

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        if self.on:
            self.dist.all_reduce(t)
        return t

    def cat(self, t: torch.Tensor) -> torch.Tensor:
        """All-gather equally shaped tensors and concatenate them along dim 0 (rank order)."""
        if not self.on:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world)]
        self.dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def barrier(self) -> None:
        if self.on:
            self.dist.barrier()

    def close(self) -> None:
        self._group.leave(self.owned)  # after a barrier: no rank tears gloo down while another still talks


# ---- the trainer of one SAE ---------------------------------------------------------------------
class Trainer:
    """One SAE with its Adam optimiser, schedule, dead-latent counters, normalisation and resampling."""

    def __init__(self, cfg: SAEConfig, tcfg: TrainConfig, total_steps: int, dist: Dist):
        self.cfg, self.tcfg, self.total, self.dist = cfg, tcfg, total_steps, dist
        self.sae = make(cfg, seed=tcfg.seed)
        self.lr = tcfg.lr if tcfg.lr is not None else LR_AT_16K * (2**14 / cfg.d_sae) ** LR_EXPONENT
        fused = {"fused": True} if torch.device(self.sae.device).type in ("cpu", "cuda") else {}
        self.opt = torch.optim.Adam(self.sae.parameters(), lr=self.lr, betas=(0.9, 0.999), **fused)
        self.step_i = 0
        self.since_fired = torch.zeros(cfg.d_sae, dtype=torch.int64)
        self.scale_in = self.scale_out = 1.0
        self.initialised = False
        self.gen = torch.Generator().manual_seed(tcfg.seed + 1)
        total_tokens = total_steps * tcfg.batch_size
        window = min(10_000_000, total_tokens // 10, DEAD_TOKENS_PER_LATENT * cfg.d_sae)
        self.dead_after = tcfg.dead_after_tokens or max(tcfg.batch_size, window)
        resample = tcfg.resample_every
        self.resample_every = (
            (max(1, total_steps // 4) if resample is None else resample) if cfg.kind == "relu" else 0
        )
        self.warmup = tcfg.warmup_steps if tcfg.warmup_steps is not None else min(1000, total_steps // 20)
        self.last: dict[str, float] = {}
        self.workspace: dict[str, torch.Tensor] = {}  # buffers reused from step to step (``topk_forward``)

    # initialisation from the first batch (identical on every rank: each sees the whole global batch)
    @torch.no_grad()
    def _init_from(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.tcfg.normalize:
            self.scale_in = float(math.sqrt(self.cfg.d_in) / x.norm(dim=-1).mean().clamp_min(1e-12))
            self.scale_out = (
                float(math.sqrt(self.cfg.out_dim) / y.norm(dim=-1).mean().clamp_min(1e-12))
                if self.cfg.transcoder
                else self.scale_in
            )
        ys = y.to(self.sae.dtype) * self.scale_out
        b = ys.mean(0) if self.cfg.transcoder else _geometric_median(ys[:4096])
        self.sae.b_dec.copy_(b)
        self.initialised = True

    def _lr_factor(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        decay_start = int(self.total * (1 - self.tcfg.decay_fraction))
        if self.tcfg.decay_fraction > 0 and step >= decay_start:
            return max(0.0, (self.total - step) / max(1, self.total - decay_start))
        return 1.0

    def step(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, float]:
        """One optimizer step on the global batch ``x`` (and targets ``y`` for transcoders)."""
        y = x if y is None else y
        if not self.initialised:
            self._init_from(x, y)
        sae, dt = self.sae, self.sae.dtype
        xs = x.to(dt) * self.scale_in
        ys = xs if y is x and self.scale_out == self.scale_in else y.to(dt) * self.scale_out
        n = xs.shape[0]
        total_var = (ys - ys.mean(0)).pow(2).sum().clamp_min(1e-12)
        lo, hi = _slice(n, self.dist.rank, self.dist.world)
        dead = self.since_fired > self.dead_after
        sae.train()
        out = forward_loss(
            sae, xs[lo:hi], ys[lo:hi], n_global=n, total_var=total_var,
            dead=dead if bool(dead.any()) else None,
            aux_reduce=self.dist.sum_ if self.dist.on else None,
            gather=self.dist.cat if self.dist.on else None, step=self.step_i, workspace=self.workspace,
        )  # fmt: skip
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        if self.dist.on:
            for p in sae.parameters():
                if p.grad is not None:
                    self.dist.sum_(p.grad)
        sae.project_decoder_grad()
        for group in self.opt.param_groups:
            group["lr"] = self.lr * self._lr_factor(self.step_i)
        self.opt.step()
        sae.normalize_decoder()
        stats = torch.stack([out.sq_err, out.l0, out.aux * (hi - lo), out.loss.detach()])
        fired = out.fired.to(torch.int64)
        if self.dist.on:
            self.dist.sum_(stats)
            self.dist.sum_(fired)
        if self.cfg.kind == "batchtopk" and self.step_i + 1 == self.total:
            self._calibrate(xs, ys)
        self.since_fired += n
        self.since_fired[fired > 0] = 0
        self.step_i += 1
        if self.resample_every and self.step_i % self.resample_every == 0 and self.step_i < self.total:
            self._resample(xs, ys)
        self.last = {
            "loss": float(stats[3]),
            "fvu": float(stats[0] / total_var),
            "l0": float(stats[1]) / n,
            "dead": float((self.since_fired > self.dead_after).float().mean()),
        }
        return self.last

    @torch.no_grad()
    def _calibrate(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        """BatchTopK: set the inference threshold so that the last global batch keeps ``k`` per token."""
        pre = torch.relu(self.sae.pre_acts(xs)).flatten()
        n_keep = min(int(self.cfg.k or 1) * xs.shape[0], pre.numel())
        low = pre.topk(n_keep, sorted=False).values.min()
        threshold: torch.Tensor = self.sae.threshold  # a buffer  # type: ignore[assignment]
        if float(low) > 0:
            threshold.copy_(low)

    @torch.no_grad()
    def _resample(self, xs: torch.Tensor, ys: torch.Tensor) -> None:
        """Anthropic (2023): point dead latents at inputs the SAE reconstructs worst; reset their Adam state."""
        dead = (self.since_fired > self.dead_after).nonzero().flatten()
        if dead.numel() == 0:
            return
        sae = self.sae
        err = (sae(xs) - ys).pow(2).sum(-1)
        pick = torch.multinomial(
            err.clamp_min(1e-12) ** 2, dead.numel(), replacement=True, generator=self.gen
        )
        v = ys[pick] - sae.b_dec
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        alive = self.since_fired <= self.dead_after
        enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if bool(alive.any()) else 1.0
        sae.W_dec[dead] = v.to(sae.dtype)
        if not self.cfg.transcoder:
            sae.W_enc[:, dead] = (v * 0.2 * enc_norm).t().to(sae.dtype)
        sae.b_enc[dead] = 0
        for p, rows in ((sae.W_dec, (dead,)), (sae.W_enc, (slice(None), dead)), (sae.b_enc, (dead,))):
            st = self.opt.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in st:
                    st[key][rows] = 0
        self.since_fired[dead] = 0

    def finish(self, site: str | None, model_name: str | None = None) -> SAE:
        """Fold the normalisation into the weights; return the SAE in eval mode."""
        sae = self.sae
        s_in, s_out = self.scale_in, self.scale_out
        with torch.no_grad():  # latents come out in raw units; decoder rows stay unit-norm
            if s_in != 1.0 or s_out != 1.0:
                if self.cfg.transcoder:
                    sae.W_enc.mul_(s_in / s_out)
                sae.b_enc.div_(s_out)
                sae.b_dec.div_(s_out)
                if self.cfg.kind == "jumprelu":
                    sae.log_threshold.sub_(math.log(s_out))
                elif self.cfg.kind == "batchtopk":
                    threshold: torch.Tensor = sae.threshold  # a buffer  # type: ignore[assignment]
                    threshold.div_(s_out)
        updates: dict[str, Any] = {"normalize_activations": "none"}
        if site is not None and sae.cfg.hook_name is None:
            updates["hook_name"] = site
        if model_name is not None and sae.cfg.model_name is None:
            updates["model_name"] = model_name
        sae.cfg = dataclasses.replace(sae.cfg, **updates)
        return sae.eval()

    # ---- checkpoints ----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs: tensors and JSON values only (see ``_checkpoint``)."""
        opt = self.opt.state_dict()
        return {
            "cfg": self.cfg.to_dict(),
            "sae": dict(self.sae.state_dict()),
            "opt_state": {str(i): st for i, st in opt["state"].items()},
            "opt_groups": opt["param_groups"],
            "step": self.step_i,
            "since_fired": self.since_fired.clone(),
            "scales": (self.scale_in, self.scale_out),
            "initialised": self.initialised,
            "gen": self.gen.get_state(),
        }

    def load_state(self, st: dict[str, Any]) -> None:
        if SAEConfig.from_dict(st["cfg"]) != self.cfg:
            raise SAEError(
                "the checkpoint was made for a different SAE configuration; use resume=False or another checkpoint_dir"
            )
        self.sae.load_state_dict(st["sae"])
        groups = [{**g, "betas": tuple(g["betas"])} for g in st["opt_groups"]]
        opt_state = {int(i): dict(v) for i, v in st["opt_state"].items()}
        self.opt.load_state_dict({"state": opt_state, "param_groups": groups})
        self.step_i = int(st["step"])
        self.since_fired = st["since_fired"].clone()
        self.scale_in, self.scale_out = (float(v) for v in st["scales"])
        self.initialised = bool(st["initialised"])
        self.gen.set_state(st["gen"])


def _slice(n: int, rank: int, world: int) -> tuple[int, int]:
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


@torch.no_grad()
def _geometric_median(x: torch.Tensor, iters: int = 30) -> torch.Tensor:
    """Weiszfeld's algorithm, started from the mean (the b_dec initialisation of Bricken et al. 2023)."""
    x = x.float()
    m = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - m).norm(dim=-1).clamp_min(1e-6)
        m_new = (w[:, None] * x).sum(0) / w.sum()
        if (m_new - m).norm() < 1e-6 * (m.norm() + 1e-12):
            m = m_new
            break
        m = m_new
    return m
