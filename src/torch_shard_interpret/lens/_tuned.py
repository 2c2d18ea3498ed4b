"""The tuned lens (Belrose et al. 2023): a learned affine translator per block before the model's own readout.

The logit lens reads ``blocks.{i}.resid_post`` through the final norm and the unembedding as if it were
the last residual stream. Early residual streams live in a different basis, so the logit lens is often
far from the model's real prediction. The tuned lens inserts one affine map per block,

    translated_i = resid_post_i @ weight[i].T + bias[i]        # [.., d_model]
    logits_i     = unembed(final_norm(translated_i))           # the model's own (frozen) modules

initialised to the identity (``weight = I``, ``bias = 0``, where it equals the logit lens) and trained to
minimise ``KL(p_final || p_i)`` on text, with ``p_final`` the readout of the last block's residual
stream. The last block's translator stays the identity.

Training is cheap because the model runs once: the residual streams of the training text are cached
(``model.run(..., cache="blocks.*.resid_post")``, no gradient through the model), then all translators
train together with Adam on random positions of that cache. Only the translators get gradients
(``torch.autograd.grad`` with respect to them): the final norm and the unembedding are called under
autograd but never updated, and no ``.grad`` lands on the user's parameters. The ``d_model x d_vocab``
unembedding dominates the cost, so each step samples ``batch_size`` positions; when the unembedding is a
plain ``nn.Linear`` the training step multiplies in ``train_dtype`` (bfloat16 by default on CPU, where it
is several times faster), while ``lens(...)`` and ``evaluate(...)`` read out in the model's own dtype.

Internally a translator is ``h + s_i * ((h / s_i) @ delta[i].T + b[i])`` with ``delta`` starting at zero
and ``s_i`` the mean RMS of block ``i``'s residual stream: the same affine map, but with steps of equal
size whatever the residual stream's scale. ``save`` writes the plain ``weight``/``bias``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._io import atomic_write
from .._progress import progress as bar_of
from ..core._errors import InputError, TsiError
from ..core._model import Model
from ..core._site import natural_key
from ._logit import (
    EMBED_SITE,
    as_token_id,
    module_device,
    module_dtype,
    position_columns,
    readout_modules,
)
from ._residuals import harvest_residuals, layer_names, model_name_of
from ._result import LensResult

WEIGHTS_FILE = "tuned_lens.safetensors"
CONFIG_FILE = "tuned_lens.json"
FORMAT = "tsi-tuned-lens/1"


class _Readout:
    """The model's final norm and unembedding as one callable ``[.., d_model] -> [.., d_vocab]`` logits
    (float32), optionally with a fast low-precision copy of a plain ``nn.Linear`` unembedding."""

    def __init__(self, model: Model, dtype: torch.dtype | None = None):
        self.norm, self.head = readout_modules(model)
        self.norm_device = module_device(self.norm)
        self.norm_dtype = module_dtype(self.norm)
        self.head_device = module_device(self.head, self.norm_device)
        self.head_dtype = module_dtype(self.head)
        self.weight = None
        if dtype is not None and dtype != self.head_dtype and type(self.head) is nn.Linear:
            self.weight = self.head.weight.detach().to(dtype)
            self.bias = None if self.head.bias is None else self.head.bias.detach().to(dtype)
            self.dtype = dtype

    def __call__(self, resid: torch.Tensor) -> torch.Tensor:
        x = self.norm(resid.to(self.norm_device, self.norm_dtype))
        x = x.to(self.head_device)
        if self.weight is not None:
            return F.linear(x.to(self.dtype), self.weight, self.bias).float()
        return self.head(x.to(self.head_dtype)).float()


def _kl(final_logp: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``KL(p || q)`` per row, ``final_logp`` the log-probabilities of ``p``, ``logits`` those of ``q``."""
    logq = logits.log_softmax(-1)
    return (final_logp.exp() * (final_logp - logq)).sum(-1)


@contextmanager
def _frozen(*modules: nn.Module) -> Iterator[None]:
    """Turn off ``requires_grad`` of the modules' parameters for the block (restored afterwards)."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, f in zip(params, flags, strict=True):
            p.requires_grad_(f)


# ---- the lens -------------------------------------------------------------------------------------------
class TunedLens:
    """Per-block affine translators ``weight`` ``[n_layers, d_model, d_model]`` and ``bias`` ``[n_layers, d_model]``.

    Create one with ``TunedLens.train(model, texts)``, ``TunedLens.load(path)`` or ``TunedLens.identity(model)``
    (untrained: equals the logit lens). ``lens(model, prompt)`` returns a ``LensResult``.
    """

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        *,
        model_name: str | None = None,
        scales: torch.Tensor | None = None,
    ):
        self.n_layers, self.d_model, self.model_name = n_layers, d_model, model_name
        self.delta = torch.zeros(n_layers, d_model, d_model)  # weight = I + delta
        self.shift = torch.zeros(n_layers, d_model)  # bias = scales * shift
        self.scales = torch.ones(n_layers) if scales is None else scales.detach().float().cpu().clone()
        self.info: dict[str, Any] = {}

    def to(self, device: torch.device | str) -> TunedLens:
        """Move the translators to ``device`` (in place); returns the lens."""
        self.delta, self.shift, self.scales = (t.to(device) for t in (self.delta, self.shift, self.scales))
        return self

    @property
    def device(self) -> torch.device:
        return self.delta.device

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def identity(cls, model: Model) -> TunedLens:
        """An untrained lens (every translator the identity): it reads out exactly like the logit lens."""
        n_layers = len(layer_names(model))
        if model.cfg.d_model is None:
            raise TsiError("the tuned lens needs model.cfg.d_model")
        return cls(n_layers, model.cfg.d_model, model_name=model_name_of(model))

    @classmethod
    def train(
        cls,
        model: Model,
        texts: Sequence[str],
        *,
        steps: int = 250,
        lr: float = 1e-3,
        batch_size: int = 32,
        context: int = 128,
        max_tokens: int | None = 4096,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 50,
        progress: bool = True,
        seed: int = 0,
        train_dtype: torch.dtype | None = "auto",  # type: ignore[assignment]
        callback: Callable[[int, float], None] | None = None,
    ) -> TunedLens:
        """Train the translators of every block of ``model`` on ``texts``.

        Args:
            model: a ``tsi.Model`` whose adapter names ``blocks.*.resid_post``, ``final_norm`` and ``logits``.
            texts: training text (sentences or documents; documents are cut into ``context``-token windows).
            steps: Adam steps (learning rate decaying linearly to 0). Each step trains all translators on the same ``batch_size`` random positions.
            lr: Adam learning rate (in the scale-free parametrisation of the module docstring).
            batch_size: token positions per step (the unembedding of ``n_layers x batch_size`` vectors is
                the cost of a step).
            context: the longest window the model runs at once when the residual streams are cached.
            max_tokens: cache at most this many tokens (``n_layers x max_tokens x d_model`` float32 floats);
                None caches all.
            checkpoint_dir: write ``tuned_lens.safetensors`` + ``tuned_lens.json`` there (atomically) every
                ``checkpoint_every`` steps and at the end.
            progress: show progress with the current loss (a bar on a terminal, a line now and then in logs).
            seed: seeds the sampling of positions.
            train_dtype: dtype of the unembedding matmul while training; ``"auto"``: bfloat16 on a CPU with AVX-512,
                the model's dtype elsewhere; None: always the model's own module.
            callback: called as ``callback(step, loss)`` after every step.

        Returns:
            The trained ``TunedLens`` (on the device of the model's final norm). ``lens.info`` holds the
            number of cached tokens, the final loss and the training time.
        """
        if steps < 0 or batch_size < 1 or context < 2 or lr <= 0:
            raise InputError(
                f"need steps >= 0, batch_size >= 1, context >= 2 and lr > 0 (got steps={steps}, "
                f"batch_size={batch_size}, context={context}, lr={lr})"
            )
        start = time.perf_counter()
        resid = harvest_residuals(model, texts, context=context, max_tokens=max_tokens)  # [L, N, d]
        harvested = time.perf_counter()
        n_layers, n_tokens, d_model = resid.shape
        scales = resid.pow(2).mean(-1).sqrt().mean(-1).clamp_min(1e-6)  # [L]
        lens = cls(n_layers, d_model, model_name=model_name_of(model), scales=scales.cpu())
        norm, head = readout_modules(model)
        device = module_device(norm, resid.device)
        lens.to(device)
        resid = resid.to(device)
        if train_dtype == "auto":
            # bfloat16 only where the CPU has native support: on AVX2-only CPUs its matmul is ~90x slower.
            fast_bf16 = torch.backends.cpu.get_cpu_capability().startswith("AVX512")
            train_dtype = torch.bfloat16 if device.type == "cpu" and fast_bf16 else None
        readout = _Readout(model, train_dtype)
        params = [lens.delta.requires_grad_(True), lens.shift.requires_grad_(True)]
        opt = torch.optim.Adam(params, lr=lr)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 - k / max(steps, 1))  # linear decay to 0
        gen = torch.Generator().manual_seed(seed)
        train_layers = n_layers - 1  # the last translator stays the identity
        bar = _bar(steps, progress)
        loss_value = float("nan")
        try:
            with _frozen(norm, head):
                for step in range(1, steps + 1):
                    idx = torch.randint(n_tokens, (batch_size,), generator=gen).to(device)
                    with torch.no_grad():
                        final_logp = readout(resid[-1, idx]).log_softmax(-1)  # [batch, d_vocab]
                    with torch.enable_grad():
                        h = resid[:train_layers, idx]  # [L-1, batch, d_model]
                        translated = lens._translate(h, slice(0, train_layers))
                        logits = readout(translated)  # [L-1, batch, d_vocab]
                        loss = _kl(final_logp, logits).mean(-1).sum()  # sum over layers of the mean KL
                        grads = torch.autograd.grad(loss, params)
                    for p, g in zip(params, grads, strict=True):
                        p.grad = g
                    opt.step()
                    sched.step()
                    opt.zero_grad(set_to_none=True)
                    loss_value = float(loss.detach()) / max(train_layers, 1)
                    if bar is not None:
                        bar.set_postfix(kl=f"{loss_value:.3f}")
                        bar.update(1)
                    if callback is not None:
                        callback(step, loss_value)
                    if checkpoint_dir is not None and checkpoint_every > 0 and step % checkpoint_every == 0:
                        lens.save(checkpoint_dir)
        finally:
            if bar is not None:
                bar.close()
            for p in params:
                p.requires_grad_(False)
        lens.info = {
            "tokens": n_tokens,
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "final_mean_kl": loss_value,
            "harvest_seconds": round(harvested - start, 2),
            "train_seconds": round(time.perf_counter() - harvested, 2),
        }
        if checkpoint_dir is not None:
            lens.save(checkpoint_dir)
        return lens

    # -- the affine maps --------------------------------------------------------------------------------
    @property
    def weight(self) -> torch.Tensor:
        """``[n_layers, d_model, d_model]``: ``translated = h @ weight[i].T + bias[i]``."""
        eye = torch.eye(self.d_model, device=self.delta.device, dtype=self.delta.dtype)
        return (eye + self.delta).detach()

    @property
    def bias(self) -> torch.Tensor:
        """``[n_layers, d_model]``."""
        return (self.shift * self.scales[:, None]).detach()

    def _translate(self, h: torch.Tensor, layers: slice | None = None) -> torch.Tensor:
        """``h`` ``[n, .., d_model]`` (one row per layer of ``layers``) -> translated, same shape."""
        layers = layers or slice(0, self.n_layers)
        delta, shift = self.delta[layers], self.shift[layers]  # [n, d, d], [n, d]
        s = self.scales[layers].view(-1, 1, 1)  # [n, 1, 1]
        flat = h.reshape(h.shape[0], -1, h.shape[-1]).to(delta.dtype)  # [n, rows, d_model]
        out = flat + s * (torch.bmm(flat / s, delta.transpose(1, 2)) + shift[:, None])
        return out.reshape(h.shape)

    def translate(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        """Block ``layer``'s translator applied to residual vectors ``[.., d_model]``."""
        if not -self.n_layers <= layer < self.n_layers:
            raise InputError(f"layer {layer} is outside 0..{self.n_layers - 1}")
        layer %= self.n_layers
        with torch.no_grad():
            dev = resid.device
            x = resid.to(self.delta.device).unsqueeze(0)
            return self._translate(x, slice(layer, layer + 1))[0].to(dev)

    def _check_model(self, model: Model) -> None:
        n = len(layer_names(model))
        if n != self.n_layers or model.cfg.d_model not in (None, self.d_model):
            raise InputError(
                f"this tuned lens was trained for {self.n_layers} layers of d_model {self.d_model}"
                f"{f' ({self.model_name})' if self.model_name else ''}, but the model has {n} layers of "
                f"d_model {model.cfg.d_model}; train or load a lens for this model"
            )

    # -- use --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        model: Model,
        prompt: Any,
        *,
        target: int | str | None = None,
        positions: Any = None,
        include_embed: bool = False,
        return_logits: bool = False,
    ) -> LensResult:
        """The tuned lens of one prompt: ``LensResult`` with ``probs`` ``[n_layers, pos, d_vocab]``.

        ``include_embed`` and ``return_logits`` mean what they mean for ``tsi.lens.logit_lens``: a first row
        for the embeddings (``blocks.0.resid_pre``), and the raw logits kept in ``result.logits``. The
        translators belong to the blocks, so the embedding row has none: it is read through the identity,
        i.e. it is the logit lens of the embeddings (the same row ``logit_lens(include_embed=True)`` gives).
        """
        self._check_model(model)
        target_id = as_token_id(model, target)
        readout = _Readout(model)
        cache = [EMBED_SITE, "blocks.*.resid_post"] if include_embed else "blocks.*.resid_post"
        run = model.run(prompt, cache=cache)
        names = sorted(run.cache.names("blocks.*.resid_post"), key=natural_key)
        first = run.cache[names[0]]
        if first.shape[0] != 1:
            raise InputError(f"the tuned lens takes one prompt, not a batch of {first.shape[0]}")
        cols = position_columns(positions, first.shape[1])
        logits = []  # one [pos, d_vocab] per row
        if include_embed:
            logits.append(readout(run.cache[EMBED_SITE][0, cols].float()).cpu())
        for i, name in enumerate(names):
            h = self.translate(i, run.cache[name][0, cols].float())  # [pos, d_model]
            logits.append(readout(h).cpu())
        stacked = torch.stack(logits)  # [rows, pos, d_vocab]
        tokens = run.tokens[0, cols].cpu() if run.tokens is not None else torch.tensor(cols)
        return LensResult(
            probs=stacked.softmax(-1),
            tokens=tokens,
            str_tokens=model.str_tokens(tokens) if run.tokens is not None else [str(c) for c in cols],
            positions=cols,
            target=target_id,
            layer_names=[EMBED_SITE, *names] if include_embed else names,
            tokenizer=model.tokenizer,
            logits=stacked if return_logits else None,
        )

    def evaluate(
        self,
        model: Model,
        texts: Sequence[str],
        *,
        context: int = 128,
        chunk: int = 64,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Mean ``KL(p_final || p_layer)`` (nats) over every token of ``texts``, per layer: ``[n_layers]``.

        ``dtype``: compute the unembedding in this dtype (e.g. ``torch.bfloat16``, faster on CPU, about
        0.01 nats of rounding); default the model's own. The final distribution is read out the same way."""
        self._check_model(model)
        return _kl_per_layer(model, texts, self, context=context, chunk=chunk, dtype=dtype)

    # -- persistence ------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``path/tuned_lens.safetensors`` (``weight``, ``bias``) and ``path/tuned_lens.json`` atomically."""
        from safetensors.torch import save

        out = Path(path)
        if out.exists() and not out.is_dir():
            raise InputError(f"save needs a directory path, but {str(out)!r} is a file")
        tensors = {
            "weight": self.weight.float().cpu().contiguous(),
            "bias": self.bias.float().cpu().contiguous(),
            "scales": self.scales.float().cpu().contiguous(),
        }
        config = {
            "format": FORMAT,
            "model_name": self.model_name,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "info": self.info,
        }
        atomic_write(out / WEIGHTS_FILE, save(tensors), mode=None, mkdir=True)
        atomic_write(out / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode(), mode=None, mkdir=True)
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: torch.device | str | None = None) -> TunedLens:
        """Read a lens written by ``save`` (a directory, or the ``.safetensors`` file inside it)."""
        from safetensors.torch import load_file

        src = Path(path)
        folder = src.parent if src.suffix == ".safetensors" else src
        weights, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
        if not weights.is_file() or not config_path.is_file():
            raise InputError(
                f"no tuned lens at {str(folder)!r}: expected {WEIGHTS_FILE} and {CONFIG_FILE} "
                "(written by TunedLens.save)"
            )
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            tensors = load_file(str(weights), device="cpu")
            n_layers, d_model = int(config["n_layers"]), int(config["d_model"])
            weight, bias = tensors["weight"], tensors["bias"]
        except Exception as exc:  # noqa: BLE001 - JSON, safetensors and missing keys fail in many ways
            raise InputError(
                f"the tuned lens at {str(folder)!r} cannot be read ({type(exc).__name__}); train it again or "
                f"restore {WEIGHTS_FILE} and {CONFIG_FILE} as TunedLens.save wrote them"
            ) from None
        if weight.shape != (n_layers, d_model, d_model) or bias.shape != (n_layers, d_model):
            raise InputError(f"the tuned lens at {str(folder)!r} has weights that do not match its config")
        scales = tensors.get("scales", torch.ones(n_layers))
        lens = cls(n_layers, d_model, model_name=config.get("model_name"), scales=scales)
        with torch.no_grad():
            lens.delta.copy_(weight - torch.eye(d_model))
            lens.shift.copy_(bias / lens.scales[:, None])
        lens.info = dict(config.get("info") or {})
        return lens.to(device) if device is not None else lens

    def __repr__(self) -> str:
        name = f", model={self.model_name!r}" if self.model_name else ""
        return f"TunedLens(n_layers={self.n_layers}, d_model={self.d_model}{name})"


class _LogitLensMaps:
    """The identity translators (the logit lens), for ``_kl_per_layer``."""

    def translate(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        return resid


@torch.no_grad()
def _kl_per_layer(
    model: Model, texts: Sequence[str], maps: Any, *, context: int, chunk: int, dtype: torch.dtype | None
) -> torch.Tensor:
    resid = harvest_residuals(model, texts, context=context)  # [L, N, d_model]
    readout = _Readout(model, dtype)
    n_layers, n_tokens, _ = resid.shape
    total = torch.zeros(n_layers, dtype=torch.float64)
    for start in range(0, n_tokens, chunk):
        final_logp = readout(resid[-1, start : start + chunk]).log_softmax(-1)  # [chunk, d_vocab]
        for i in range(n_layers):
            logits = readout(maps.translate(i, resid[i, start : start + chunk]))
            total[i] += _kl(final_logp, logits).clamp_min(0).sum().double().cpu()
    return (total / n_tokens).float()


def logit_lens_kl(
    model: Model,
    texts: Sequence[str],
    *,
    context: int = 128,
    chunk: int = 64,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Mean ``KL(p_final || p_layer)`` (nats) of the logit lens over every token of ``texts``: ``[n_layers]``.
    The baseline for ``TunedLens.evaluate`` (same arguments)."""
    return _kl_per_layer(model, texts, _LogitLensMaps(), context=context, chunk=chunk, dtype=dtype)


def _bar(total: int, enabled: bool) -> Any:
    return bar_of(total, desc="tuned lens", unit="step", enabled=enabled and total > 0)


__all__ = ["TunedLens", "harvest_residuals", "logit_lens_kl"]
