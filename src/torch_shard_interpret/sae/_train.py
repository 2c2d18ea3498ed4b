"""Training: ``tsi.sae.train`` (a store, a tensor, or a model and texts) and ``tsi.sae.train_on_model``.

The loop is one ``_Trainer.step(x, y)`` per global batch. Data sources hand out global batches by step
number, so a resumed run sees exactly the batches an uninterrupted one would. Under ``torchrun`` every rank
reads the same global batch, trains on its own slice of rows and sums gradients with ``all_reduce``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from . import _checkpoint
from ._config import LR_AT_16K, LR_EXPONENT, MIN_TENSOR_STEPS, SAEConfig, SAEError, TrainConfig
from ._losses import forward_loss
from ._sae import SAE, make


# ---- distributed --------------------------------------------------------------------------------
class _Dist:
    """Rank, world size and sum-reductions; a no-op outside ``torch.distributed``."""

    def __init__(self, mode: str | bool = "auto"):
        import torch.distributed as dist

        self.dist = dist
        self.owned = False
        want = mode is True or (mode == "auto" and int(os.environ.get("WORLD_SIZE", "1")) > 1)
        if want and dist.is_available() and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, timeout=timedelta(seconds=120))
            self.owned = True
        self.on = want and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.on else 0
        self.world = dist.get_world_size() if self.on else 1

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
        if self.owned and self.dist.is_initialized():
            try:
                self.dist.barrier()  # no rank tears down gloo while another is still talking to it
            finally:
                self.dist.destroy_process_group()


# ---- the trainer of one SAE ---------------------------------------------------------------------
class _Trainer:
    def __init__(self, cfg: SAEConfig, tcfg: TrainConfig, total_steps: int, dist: _Dist):
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
        self.dead_after = tcfg.dead_after_tokens or max(tcfg.batch_size, min(10_000_000, total_tokens // 10))
        resample = tcfg.resample_every
        self.resample_every = (
            (max(1, total_steps // 4) if resample is None else resample) if cfg.kind == "relu" else 0
        )
        self.warmup = tcfg.warmup_steps if tcfg.warmup_steps is not None else min(1000, total_steps // 20)
        self.last: dict[str, float] = {}

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
            gather=self.dist.cat if self.dist.on else None,
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
        n_keep = min(self.cfg.k * xs.shape[0], pre.numel())
        low = pre.topk(n_keep, sorted=False).values.min()
        if float(low) > 0:
            self.sae.threshold.copy_(low)

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
                    sae.threshold.div_(s_out)
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


# ---- data sources --------------------------------------------------------------------------------
class _TensorSource:
    """Global batch ``s`` = rows ``[s*B, (s+1)*B)`` of the concatenation of seeded per-epoch permutations."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor | None, batch: int, seed: int):
        self.x, self.y, self.batch, self.seed = x, y, batch, seed
        self.n = x.shape[0]
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {
                epoch: torch.randperm(
                    self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                )
            }
        return self._perms[epoch]

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        start = step * self.batch
        idx = []
        while len(idx) < self.batch:
            epoch, off = divmod(start + len(idx), self.n)
            take = min(self.batch - len(idx), self.n - off)
            idx.extend(self._perm(epoch)[off : off + take].tolist())
        index = torch.tensor(idx)
        return self.x[index], (self.y[index] if self.y is not None else None)


class _StoreSource:
    """Batches from ``store.batches(site, batch_size, shuffle=True, seed=seed + epoch)``; full batches only."""

    def __init__(self, store: Any, sites: Sequence[str], batch: int, seed: int):
        self.store, self.sites, self.batch, self.seed = store, list(sites), batch, seed
        self.epoch, self.pos = 0, 0
        self._its: list[Iterator] | None = None

    def _open(self) -> None:
        self._its = [
            iter(self.store.batches(s, batch_size=self.batch, shuffle=True, seed=self.seed + self.epoch))
            for s in self.sites
        ]
        for _ in range(self.pos):  # resume: skip what the interrupted run consumed
            for it in self._its:
                next(it)

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        for attempt in range(2):
            if self._its is None:
                self._open()
            try:
                parts = [next(it) for it in self._its]  # type: ignore[union-attr]
                if parts[0].shape[0] < self.batch:
                    raise StopIteration
            except StopIteration:
                if self.pos == 0 and attempt == 0:
                    raise SAEError(
                        f"the store holds fewer than batch_size={self.batch} rows; pass a smaller batch_size"
                    ) from None
                self.epoch, self.pos, self._its = self.epoch + 1, 0, None
                continue
            self.pos += 1
            x = torch.as_tensor(parts[0]).reshape(-1, parts[0].shape[-1])
            y = torch.as_tensor(parts[1]).reshape(-1, parts[1].shape[-1]) if len(parts) > 1 else None
            return x, y
        raise SAEError("the store gave no batch")

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state(self, st: dict[str, int]) -> None:
        self.epoch, self.pos, self._its = int(st["epoch"]), int(st["pos"]), None


# ---- the public entry points ---------------------------------------------------------------------
def train(
    source: Any,
    site: str | Sequence[str] | None = None,
    kind: str = "topk",
    d_sae: int = 4096,
    k: int | None = 32,
    steps: int | None = None,
    batch_size: int = 4096,
    lr: float | None = None,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    *,
    config: SAEConfig | None = None,
    train_config: TrainConfig | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    distributed: str | bool = "auto",
    checkpoint_every: int | None = None,
    **cfg_kwargs: Any,
) -> SAE:
    """Train one SAE (or transcoder) and return it in eval mode.

    ``source``: an activation store (anything with ``.batches(site, batch_size, shuffle, seed)``), an
    ``[n, d_in]`` tensor, a pair of tensors ``(inputs, targets)`` for a transcoder, or ``(model, texts)`` for
    on-the-fly training from hooks (see ``train_on_model``). A transcoder reads ``site=(in_site, out_site)``
    from a store. ``config``/``train_config`` replace the keyword arguments; extra keywords go to ``SAEConfig``
    (``l1_coefficient=``, ``transcoder=True``...). ``callback(step, metrics)`` runs after each step (and after
    the checkpoint of that step). Under ``torchrun`` (``WORLD_SIZE`` > 1) it trains data-parallel.
    ``checkpoint_dir``/``checkpoint_every``/``resume``: see the module docs (all sources, on the fly included).
    """
    from ..core._model import Model

    tcfg = train_config or TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    if checkpoint_every is not None:
        tcfg = dataclasses.replace(tcfg, checkpoint_every=checkpoint_every)
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], Model):
        model, texts = source
        cfg_over = (
            dataclasses.asdict(config)
            if config is not None
            else {"kind": kind, "d_sae": d_sae, "k": k, **cfg_kwargs}
        )
        sites = [site] if isinstance(site, str) else list(site or [])
        if not sites and config is not None and config.hook_name:
            sites = [config.hook_name]
        if len(sites) == 2:
            cfg_over.update(transcoder=True, hook_name=sites[0], hook_name_out=sites[1])
            sites = sites[:1]
        if len(sites) != 1:
            raise SAEError(
                "on-the-fly training needs site='blocks.N.resid_post' (or a pair of sites for a transcoder)"
            )
        return train_on_model(
            model, texts, sites=sites, configs=[cfg_over], train_config=tcfg, progress=progress,
            checkpoint_dir=checkpoint_dir, resume=resume, callback=callback,
        )[0]  # fmt: skip

    sites: list[str] = [site] if isinstance(site, str) else list(site or [])
    if torch.is_tensor(source) or (isinstance(source, tuple) and all(torch.is_tensor(t) for t in source)):
        x, y = (source, None) if torch.is_tensor(source) else source
        if x.ndim != 2 or x.shape[0] == 0 or (y is not None and (y.ndim != 2 or y.shape[0] != x.shape[0])):
            raise SAEError(
                f"train expects an [n, d_in] tensor (or two with the same n), not shape {list(x.shape)}"
            )
        n, d_in, d_out = x.shape[0], x.shape[1], (y.shape[1] if y is not None else None)
        tcfg = dataclasses.replace(tcfg, batch_size=min(tcfg.batch_size, n))
        if tcfg.steps is None:
            tcfg = dataclasses.replace(
                tcfg, steps=min(20_000, max(MIN_TENSOR_STEPS, math.ceil(5 * n / tcfg.batch_size)))
            )
        data: Any = _TensorSource(x, y, tcfg.batch_size, tcfg.seed)
        if y is not None:
            cfg_kwargs.setdefault("transcoder", True)
    elif hasattr(source, "batches"):
        if not sites:
            avail = list(getattr(source, "sites", []) or [])
            if len(avail) != 1:
                raise SAEError(
                    f"this store holds several sites ({', '.join(map(str, avail))}); choose one with site= (tsi train-sae: --site)"
                )
            sites = avail
        if len(sites) == 2:
            cfg_kwargs.setdefault("transcoder", True)
        probe = [
            torch.as_tensor(next(iter(source.batches(s, batch_size=1, shuffle=False, seed=0)))) for s in sites
        ]
        d_in, d_out = probe[0].shape[-1], (probe[1].shape[-1] if len(probe) > 1 else None)
        try:
            n = len(source)
        except TypeError:
            n = None
        if n is not None:  # a batch larger than the store could never be served: use the whole store
            tcfg = dataclasses.replace(tcfg, batch_size=min(tcfg.batch_size, n))
        if tcfg.steps is None:
            if n is None:
                raise SAEError("this store has no len(); pass steps=")
            tcfg = dataclasses.replace(tcfg, steps=max(1, n // tcfg.batch_size))
        data = _StoreSource(source, sites, tcfg.batch_size, tcfg.seed)
    else:
        raise SAEError(
            f"train needs an activation store, an [n, d_in] tensor or (model, texts), not {type(source).__name__}"
        )

    if config is None:
        transcoder = bool(cfg_kwargs.get("transcoder", False))
        base = dict(d_in=d_in, d_sae=d_sae, kind=kind, k=k, hook_name=sites[0] if sites else None)
        if transcoder:
            base.update(
                d_out=d_out, apply_b_dec_to_input=False, hook_name_out=sites[1] if len(sites) > 1 else None
            )
        config = SAEConfig(**{**base, **cfg_kwargs})
    elif config.d_in != d_in:
        raise SAEError(f"config.d_in is {config.d_in} but the activations have width {d_in}")
    return _run([config], [data], tcfg, checkpoint_dir, resume, progress, callback, distributed)[0]


def _run(configs, sources, tcfg, checkpoint_dir, resume, progress, callback, distributed, model_name=None):
    dist = _Dist(distributed)
    try:
        steps = int(tcfg.steps)
        trainers = [_Trainer(c, tcfg, steps, dist) for c in configs]
        ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
        every = tcfg.checkpoint_every or max(1, steps // 10)
        start = 0
        if ckpt is not None and resume:
            _checkpoint.refuse_legacy(ckpt)
            if _checkpoint.exists(ckpt):
                start = _resume(ckpt, trainers, sources)
        bar = _bar(progress and dist.rank == 0, steps, start)
        for step in range(start, steps):
            metrics: dict[str, float] = {}
            for t, src in zip(trainers, sources, strict=True):
                x, y = src.get(step)
                metrics = t.step(x, y)
            if ckpt is not None and ((step + 1) % every == 0 or step + 1 == steps):
                if dist.rank == 0:
                    _checkpoint.write(ckpt, step + 1, {
                        "step": step + 1,
                        "trainers": [t.state() for t in trainers],
                        "data": [src.state() if hasattr(src, "state") else None for src in sources],
                    })  # fmt: skip
                dist.barrier()
            if bar is not None and (step % tcfg.log_every == 0 or step + 1 == steps):
                bar.set_postfix(_fmt(metrics), refresh=False)
            if bar is not None:
                bar.update(1)
            if callback is not None:
                callback(step + 1, metrics)
        if bar is not None:
            bar.close()
        return [t.finish(c.hook_name, model_name) for t, c in zip(trainers, configs, strict=True)]
    finally:
        dist.close()


def _resume(ckpt: Path, trainers: list[_Trainer], sources: list[Any]) -> int:
    """Load the checkpoint in ``ckpt`` into the trainers and sources; returns the step to continue from."""
    step, st = _checkpoint.read(ckpt)
    saved = st.get("trainers")
    if not isinstance(saved, list) or not isinstance(st.get("data"), list):
        raise _checkpoint.damaged(ckpt, "it holds no trainers")
    if len(saved) != len(trainers):
        raise SAEError(
            f"the checkpoint holds {len(saved)} SAEs, this run trains {len(trainers)}; "
            "use resume=False or another checkpoint_dir"
        )
    try:
        for t, s in zip(trainers, saved, strict=True):
            t.load_state(s)
        for src, s in zip(sources, st["data"], strict=True):
            if hasattr(src, "load_state"):
                src.load_state(s)
    except SAEError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise _checkpoint.damaged(ckpt, f"its state does not fit this run: {type(exc).__name__}") from None
    return step


def _fmt(m: dict[str, float]) -> dict[str, str]:
    return {
        "loss": f"{m.get('loss', 0):.4g}",
        "L0": f"{m.get('l0', 0):.1f}",
        "FVU": f"{m.get('fvu', 0):.3f}",
        "dead": f"{m.get('dead', 0):.1%}",
    }


def _bar(on: bool, total: int, start: int):
    if not on:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=start, desc="train SAE", unit="step", leave=False)


# ---- on-the-fly training from a model ------------------------------------------------------------
def train_on_model(
    model: Any,
    texts: Sequence[str],
    sites: Sequence[str],
    configs: Sequence[SAEConfig | dict[str, Any]] | None = None,
    *,
    steps: int | None = None,
    batch_size: int = 4096,
    lr: float | None = None,
    seed: int = 0,
    context: int = 128,
    text_batch_size: int = 8,
    buffer_batches: int = 4,
    train_config: TrainConfig | None = None,
    progress: bool = True,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> list[SAE]:
    """Train several SAEs from ONE forward pass per batch of texts (no activations on disk).

    ``configs``: ``SAEConfig``s or dicts of ``SAEConfig`` fields (``d_in`` is read from the model). A config
    with a ``hook_name`` trains there (transcoders also name ``hook_name_out``); one without is trained on every
    site of ``sites``. Token rows of padding are dropped; rows are shuffled in a buffer of ``buffer_batches``
    batches. ``steps=None``: one pass over the texts. Returns the SAEs in the order of the expanded configs.

    ``checkpoint_dir``: write a checkpoint (``checkpoint.json`` + safetensors, see ``_checkpoint``) every ``checkpoint_every`` steps (None: 10% of the
    run) and at the end: every SAE with its optimiser and RNG state, plus the stream's position in the texts,
    its shuffle generator and its buffer of not yet used rows. ``resume=True`` continues from it and gives the
    same final weights as an uninterrupted run; a checkpoint made for other configs, texts or stream settings is
    refused. ``callback(step, metrics)`` runs after each step (after that step's checkpoint).
    """
    tcfg = train_config or TrainConfig(steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    if checkpoint_every is not None:
        tcfg = dataclasses.replace(tcfg, checkpoint_every=checkpoint_every)
    if isinstance(texts, str) or not len(texts):
        raise SAEError("texts must be a non-empty list of strings")
    plan: list[tuple[dict[str, Any], str, str | None]] = []  # (config fields, input site, output site)
    for c in configs or [{}]:
        fields = dataclasses.asdict(c) if isinstance(c, SAEConfig) else dict(c)
        if fields.get("hook_name"):
            plan.append((fields, fields["hook_name"], fields.get("hook_name_out")))
        else:
            plan.extend(({**fields, "hook_name": s}, s, None) for s in sites)
    needed = list(dict.fromkeys([p[1] for p in plan] + [p[2] for p in plan if p[2]]))
    model.resolve(needed)  # unknown names fail here, before any work

    stream = _ModelStream(model, list(texts), needed, tcfg, context, text_batch_size, buffer_batches)
    first = stream.peek()
    sae_cfgs = []
    for fields, s_in, s_out in plan:
        f = {k: v for k, v in fields.items() if k != "extra"}
        f.setdefault("kind", "topk")
        f.setdefault("d_sae", 4096)
        f["d_in"] = first[s_in].shape[-1]
        if s_out:
            f.update(transcoder=True, d_out=first[s_out].shape[-1], apply_b_dec_to_input=False)
        sae_cfgs.append(SAEConfig(**f))
    if tcfg.steps is None:
        tcfg = dataclasses.replace(tcfg, steps=max(1, stream.estimate_batches()))
    sources = [_SharedSource(stream, s_in, s_out, owner=i == 0) for i, (_, s_in, s_out) in enumerate(plan)]
    name = getattr(getattr(model.module, "config", None), "_name_or_path", None) or None
    return _run(sae_cfgs, sources, tcfg, checkpoint_dir, resume, progress, callback, False, model_name=name)


class _ModelStream:
    """Runs the model on batches of texts (one forward for every site) and serves shuffled global batches."""

    def __init__(self, model, texts, sites, tcfg, context, text_batch, buffer_batches):
        self.model, self.texts, self.sites = model, texts, sites
        self.batch, self.context, self.text_batch = tcfg.batch_size, context, text_batch
        self.buffer_rows = self.batch * buffer_batches
        self.gen = torch.Generator().manual_seed(tcfg.seed)
        self.next_text = 0
        self.buf: dict[str, torch.Tensor] = {}
        self.step = -1
        self.current: dict[str, torch.Tensor] = {}
        self.tokens_per_text: float | None = None
        self._key_cache: dict[str, Any] | None = None

    def _forward(self) -> dict[str, torch.Tensor]:
        texts = [self.texts[(self.next_text + i) % len(self.texts)] for i in range(self.text_batch)]
        self.next_text += self.text_batch
        tok = self.model.tokenizer
        if tok is None:
            raise SAEError("on-the-fly training needs a model with a tokenizer")
        enc = tok(texts, truncation=True, max_length=self.context, padding=True, return_tensors="pt")
        run = self.model.run(dict(enc), cache=self.sites, return_logits=False)
        keep = enc["attention_mask"].bool().reshape(-1)
        if self.tokens_per_text is None:
            self.tokens_per_text = float(keep.sum()) / len(texts)
        return {s: run.cache[s].reshape(-1, run.cache[s].shape[-1])[keep].float().cpu() for s in self.sites}

    def _fill(self) -> None:
        while not self.buf or self.buf[self.sites[0]].shape[0] < self.buffer_rows:
            new = self._forward()
            self.buf = {s: torch.cat([self.buf[s], new[s]]) if self.buf else new[s] for s in self.sites}
        perm = torch.randperm(self.buf[self.sites[0]].shape[0], generator=self.gen)
        self.buf = {s: v[perm] for s, v in self.buf.items()}

    def peek(self) -> dict[str, torch.Tensor]:
        if not self.buf:
            self._fill()
        return self.buf

    def estimate_batches(self) -> int:
        self.peek()
        return int(len(self.texts) * (self.tokens_per_text or 1) // self.batch)

    def _key(self) -> dict[str, Any]:
        """What a checkpoint must have been made with to be resumed by this stream."""
        if self._key_cache is not None:
            return self._key_cache
        import hashlib

        digest = hashlib.sha1()
        for t in self.texts:
            digest.update(str(t).encode("utf-8", "surrogatepass") + b"\0")
        self._key_cache = {
            "texts": [len(self.texts), digest.hexdigest()], "sites": list(self.sites), "batch": self.batch,
            "context": self.context, "text_batch": self.text_batch, "buffer_rows": self.buffer_rows,
        }  # fmt: skip
        return self._key_cache

    def state(self) -> dict[str, Any]:
        """Position in the texts, shuffle generator and the rows still buffered (between steps)."""
        return {
            "key": self._key(),
            "next_text": self.next_text,
            "gen": self.gen.get_state(),
            "buf": {s: v.clone() for s, v in self.buf.items()},  # clone: not the whole buffer's storage
            "tokens_per_text": self.tokens_per_text,
        }

    def load_state(self, st: dict[str, Any]) -> None:
        if not isinstance(st, dict) or st.get("key") != self._key():
            raise SAEError(
                "the checkpoint was made for other texts, sites or stream settings (batch_size, context, "
                "text_batch_size, buffer_batches); use resume=False or another checkpoint_dir"
            )
        self.next_text = int(st["next_text"])
        self.gen.set_state(st["gen"])
        self.buf = {s: st["buf"][s] for s in self.sites}
        self.tokens_per_text = st["tokens_per_text"]
        self.step, self.current = -1, {}

    def get(self, step: int) -> dict[str, torch.Tensor]:
        if step != self.step:
            if not self.buf or self.buf[self.sites[0]].shape[0] < self.buffer_rows // 2 + self.batch:
                self._fill()
            self.current = {s: v[: self.batch] for s, v in self.buf.items()}
            self.buf = {s: v[self.batch :] for s, v in self.buf.items()}
            self.step = step
        return self.current


class _SharedSource:
    """One SAE's view of the shared stream; the ``owner`` (the first) carries the stream's checkpoint state."""

    def __init__(self, stream: _ModelStream, s_in: str, s_out: str | None, owner: bool = False):
        self.stream, self.s_in, self.s_out, self.owner = stream, s_in, s_out, owner

    def state(self) -> dict[str, Any] | None:
        return self.stream.state() if self.owner else None

    def load_state(self, st: dict[str, Any] | None) -> None:
        if self.owner:
            if st is None:
                raise SAEError("the checkpoint was not made by on-the-fly training; use resume=False")
            self.stream.load_state(st)

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch = self.stream.get(step)
        return batch[self.s_in], (batch[self.s_out] if self.s_out else None)
