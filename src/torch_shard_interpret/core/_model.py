# pyright: strict, reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false, reportUnknownLambdaType=false
"""Model: the user's own module plus site names, runs, caches and interventions.

``tsi.wrap(module)`` never changes ``module``: it only looks up sites and registers hooks for the
duration of a call (or of an ``intervene`` context), and removes them afterwards.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, cast

import torch
from torch import nn

from ._adapter import Adapter
from ._build import block_modules, build_sites
from ._cache import ActivationCache
from ._config import make_config
from ._errors import (
    AdapterError,
    GradModeError,
    InputError,
    InterventionError,
    ReadOnlySiteError,
    SiteNotFoundError,
    TsiError,
)
from ._hooks import GENERATING, Scope, StopForward, in_intervention, refuse_reentry
from ._inputs import is_hf, output_logits, prepare
from ._interventions import HookContext, Intervention, as_intervention
from ._lean import LeanPlan, lean_call
from ._result import RunResult as RunResult
from ._site import Site, is_glob, match_glob, parse_raw
from ._splice import Splice
from ._tokens import str_tokens, token_id

SiteSpec = str | Sequence[str] | None
InterventionFn = Callable[[torch.Tensor, HookContext], "torch.Tensor | None"]
InterventionSpec = Mapping[str, Intervention | Sequence[Intervention] | InterventionFn] | None


class Model:
    """A wrapped ``nn.Module``. Create one with ``tsi.wrap`` or ``tsi.load``."""

    def __init__(self, module: nn.Module, tokenizer: Any = None, adapter: Adapter | None = None):
        if not isinstance(module, nn.Module):  # pyright: ignore[reportUnnecessaryIsInstance] - user input
            raise TsiError(f"tsi.wrap needs a torch.nn.Module, not a {type(module).__name__}")
        if adapter is not None and not isinstance(adapter, Adapter):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise AdapterError(
                f"adapter must be a tsi.adapters.Adapter or None, not {adapter!r}; "
                "use tsi.wrap(module) to pick one automatically"
            )
        self.module = module
        self.tokenizer = tokenizer
        self._hf = is_hf(module)
        if tokenizer is not None and getattr(tokenizer, "pad_token", "x") is None:
            tokenizer.pad_token = tokenizer.eos_token  # batches of prompts need a pad token
        self.adapter = adapter
        self.cfg = make_config(module, self.adapter)
        self._sites: dict[str, Site] = (
            build_sites(self.adapter, module, self.cfg.n_heads, self.cfg.n_kv_heads, self.cfg.d_head)
            if self.adapter is not None
            else {}
        )
        self.prepend_bos = False
        """Start every tokenized text with the BOS token, as TransformerLens does by default (off: the
        tokenizer's own choice, which is what the model saw in training). ``run``/``generate``/``to_tokens``
        take ``prepend_bos=`` to override it for one call."""
        self._raw: list[str] | None = None
        self._globs: dict[str, list[Site]] = {}
        self._resolved: dict[str, tuple[Site, ...]] = {}
        self._said_eager = False  # a glob skipped sites that need eager attention, and we said so
        self._plans: dict[Any, LeanPlan | None] = {}  # record-only runs, by cache spec (``_lean.py``)
        self._one_site: dict[str, Callable[[torch.Tensor], RunResult | None]] = {}  # ... of one output site

    # ---- sites --------------------------------------------------------------------------------
    def sites(self, pattern: str | None = None) -> list[str]:
        """Every site name (canonical first, then raw), or those matching the glob ``pattern``."""
        names = list(self._sites) + self._raw_names()
        return names if pattern is None else match_glob(pattern, names)

    def _raw_names(self) -> list[str]:
        if self._raw is None:
            self._raw = [f"{p}:{k}" for p, _ in self.module.named_modules() for k in ("input", "output")]
        return self._raw

    def site(self, name: str) -> Site:
        """The ``Site`` object for one name (canonical or raw)."""
        site = self._sites.get(name)
        if site is not None:
            return site
        raw = parse_raw(name)
        if raw is None:
            raise SiteNotFoundError(name, self.sites())
        path, kind, index = raw
        try:
            module = self.module.get_submodule(path) if path else self.module
        except AttributeError:
            raise SiteNotFoundError(name, self.sites()) from None
        site = Site(name, path, module, kind, index)
        self._sites[name] = site
        return site

    def resolve(self, spec: SiteSpec) -> list[Site]:
        """Site objects for a name, a glob or a list of them. A glob skips sites the model cannot provide now
        (attention patterns without eager attention); a name raises."""
        if spec is None:
            return []
        if isinstance(spec, str):
            known = self._resolved.get(spec)
            if known is not None:  # a name resolved before to sites that need nothing of the model
                return list(known)
            if not is_glob(spec):
                site = self._check(self.site(spec))
                if site.requires is None:
                    self._resolved[spec] = (site,)
                return [site]
            found = self._globs.get(spec)
            if found is None:
                names = match_glob(spec, list(self._sites)) or match_glob(spec, self._raw_names())
                if not names:
                    raise SiteNotFoundError(spec, self.sites(), hint="the glob matches no site")
                found = self._globs[spec] = [self.site(n) for n in names]
            if all(s.requires is None for s in found):
                self._resolved[spec] = tuple(found)
                return list(found)
            usable = [s for s in found if self._usable(s)]
            if not usable:  # e.g. only attention patterns without eager attention: say why
                self._check(found[0])
            if len(usable) < len(found) and not self._said_eager:  # say it once per model
                self._said_eager = True
                skipped = next(s.name for s in found if not self._usable(s))
                warnings.warn(
                    f"tsi: {spec!r} leaves out the {len(found) - len(usable)} site(s) that need eager attention "
                    f"(such as {skipped}) under {self.attention!r} attention; call model.set_attention('eager') "
                    "to include them (said once per model)",
                    stacklevel=3,
                )
            return usable
        out: list[Site] = []
        for item in spec:
            out.extend(self.resolve(item))
        return list(dict.fromkeys(out))

    def _usable(self, site: Site) -> bool:
        return site.requires != "eager" or self.attention == "eager"

    def _check(self, site: Site) -> Site:
        if not self._usable(site):
            raise TsiError(
                f"{site.name} needs eager attention, but this model uses {self.attention!r}; "
                "call model.set_attention('eager') first (slower, but it exposes the patterns)"
            )
        return site

    # ---- splices (e.g. sparse autoencoders) ---------------------------------------------------
    def add_splice(
        self,
        site: str,
        name: str,
        encode: Callable[[torch.Tensor], torch.Tensor],
        decode: Callable[[torch.Tensor], torch.Tensor],
        latent_dim: str = "d_sae",
    ) -> list[str]:
        """Add the sites ``{site}.{name}.latents`` and ``{site}.{name}.error``: ``encode(x)`` and
        ``x - decode(encode(x))`` at ``site``. They can be cached, patched, ablated and steered like any site;
        when one is changed the model continues with ``decode(latents) + error``. Returns the new names."""
        parent = self.site(site)
        if parent.extra.get("parent") is not None or parent.n_heads is not None or parent.view is not None:
            raise InterventionError(f"a splice needs a plain activation site, not {site!r}")
        splice = Splice(name, encode, decode, latent_dim)
        names = []
        for part in ("latents", "error"):
            full = f"{site}.{name}.{part}"
            layout = parent.layout
            if part == "latents" and layout is not None:
                layout = (*layout[:-1], latent_dim)
            self._sites[full] = Site(
                full,
                parent.module_path,
                parent.module,
                parent.kind,
                parent.index,
                layout,
                extra={"parent": parent, "splice": splice, "part": part},
            )
            names.append(full)
        self._forget()
        return names

    def remove_splice(self, site: str, name: str) -> None:
        """Remove the sites added by ``add_splice(site, name, ...)``."""
        for part in ("latents", "error"):
            self._sites.pop(f"{site}.{name}.{part}", None)
        self._forget()

    def _forget(self) -> None:
        """Drop what was resolved from the site table (it changed)."""
        self._globs.clear()
        self._resolved.clear()
        self._plans.clear()
        self._one_site.clear()

    # ---- attention implementation -------------------------------------------------------------
    @property
    def attention(self) -> str | None:
        """The attention implementation of a Hugging Face model (``eager``, ``sdpa``...), else None."""
        return getattr(getattr(self.module, "config", None), "_attn_implementation", "eager")

    def set_attention(self, implementation: str = "eager") -> None:
        """Switch a Hugging Face model's attention implementation (``eager`` exposes attention patterns)."""
        if not hasattr(self.module, "set_attn_implementation"):
            raise TsiError("set_attention works on Hugging Face models only")
        if self.attention != implementation:
            getattr(self.module, "set_attn_implementation")(implementation)  # noqa: B009 - an HF method
            warnings.warn(
                f"tsi: switched attention to {implementation!r}"
                + (" (slower; exposes attention patterns)" if implementation == "eager" else ""),
                stacklevel=2,
            )

    # ---- interventions ------------------------------------------------------------------------
    def _interventions(self, spec: InterventionSpec) -> dict[Site, list[Intervention]]:
        out: dict[Site, list[Intervention]] = {}
        if not spec:
            return out
        if not isinstance(spec, Mapping):  # pyright: ignore[reportUnnecessaryIsInstance] - user input
            raise InterventionError("interventions must be a dict {site name: intervention}")
        for key, val in spec.items():
            items = list(val) if isinstance(val, (list, tuple)) else [val]
            ivs = [as_intervention(v, key) for v in items]
            for iv in ivs:
                iv.check(key)
            for site in self.resolve(key):
                if not site.writable:
                    reason = site.read_only_reason or "the model does not use this value downstream"
                    raise ReadOnlySiteError(f"{site.name} can be cached but not changed: {reason}")
                for iv in ivs:
                    if iv.heads is not None and site.layout is not None and "n_heads" not in site.layout:
                        raise InterventionError(
                            f"heads= needs a site with a head dimension (blocks.N.attn.z or attn.pattern), "
                            f"not {site.name!r}"
                        )
                out.setdefault(site, []).extend(ivs)
        return out

    @contextmanager
    def intervene(self, interventions: InterventionSpec) -> Generator[Scope, None, None]:
        """Apply ``interventions`` to every call of the model inside the block (run, generate, or the module itself).

        Contexts nest; each removes only its own hooks. A site the block never reached is reported on exit.
        """
        refuse_reentry("intervene")
        scope = Scope(self._interventions(interventions), root=self.module)
        with scope:
            yield scope
        scope.check_reached()

    # ---- running ------------------------------------------------------------------------------
    def run(
        self,
        inputs: Any = None,
        *,
        cache: SiteSpec = None,
        interventions: InterventionSpec = None,
        grad: Callable[[RunResult], torch.Tensor] | None = None,
        cache_device: torch.device | str | None = None,
        return_logits: bool = True,
        keep_graph: bool = False,
        prepend_bos: bool | None = None,
        **model_kwargs: Any,
    ) -> RunResult:
        """Run the model once.

        ``inputs``: a prompt, a list of prompts (padded, with an attention mask), token ids, a dict of
        model kwargs or any tensor. ``cache``: site names/globs to record. ``interventions``: ``{site:
        intervention}``. ``grad``: a function of the result returning a scalar; its gradients with
        respect to every cached activation land in ``result.grads``. ``return_logits=False`` stops the
        forward as soon as every cached site has been recorded. Runs without autograd unless ``grad`` or
        ``keep_graph`` is given. ``prepend_bos``: start each text with the BOS token (default
        ``model.prepend_bos``, off).
        """
        if in_intervention() is not None:
            refuse_reentry("run")
        if (
            type(inputs) is torch.Tensor
            and not self._hf
            and not interventions
            and grad is None
            and return_logits
            and not keep_graph
            and not model_kwargs
        ):
            one = self._one_site.get(cache) if type(cache) is str and cache_device is None else None
            result = one(inputs) if one is not None else None
            return result if result is not None else lean_call(self, inputs, cache, cache_device)
        if grad is not None and torch.is_inference_mode_enabled():
            raise GradModeError(
                "gradients cannot be computed under torch.inference_mode(); call run(..., grad=...) outside it"
            )
        prepared = prepare(
            self.module,
            self.tokenizer,
            inputs,
            model_kwargs,
            self.cfg.n_ctx,
            hf=self._hf,
            prepend_bos=self._bos(prepend_bos),
        )
        record = self.resolve(cache)
        if grad is not None and not record:
            raise InputError("grad= needs sites to differentiate with respect to; pass cache=[...]")
        store: dict[str, torch.Tensor] = {}
        scope = Scope(
            self._interventions(interventions),
            record,
            cache=store,
            cache_device=None if grad is not None else cache_device,
            grad=grad is not None,
            stop=not return_logits and grad is None and bool(record),
            root=self.module,
        )
        if grad is not None:
            mode = torch.enable_grad()
        else:
            mode = nullcontext() if keep_graph or not torch.is_grad_enabled() else torch.no_grad()
        output = None
        stopped = False
        with mode, scope:
            try:
                output = self.module(*prepared.args, **prepared.kwargs)
            except StopForward:
                stopped = True
        scope.check_reached(stopped)
        result = RunResult(
            logits=output_logits(output) if output is not None else None,
            cache=ActivationCache(store),
            tokens=prepared.tokens,
            attention_mask=prepared.attention_mask,
            output=output,
            tokenizer=self.tokenizer,
        )
        if grad is not None:
            self._grads(result, store, grad, cache_device)
        return result

    def _run_scoped(
        self, x: torch.Tensor, cache: SiteSpec, cache_device: torch.device | str | None
    ) -> RunResult:
        """``run`` of a plain module on one tensor, autograd off, caching sites the lean run cannot record
        (``_lean.py``): the general scope, without the input handling."""
        store: dict[str, torch.Tensor] = {}
        scope = Scope(None, self.resolve(cache), cache=store, cache_device=cache_device, root=self.module)
        if torch.is_grad_enabled():
            with torch.no_grad(), scope:
                output = self.module(x)
        else:
            with scope:
                output = self.module(x)
        return RunResult(
            output_logits(output), ActivationCache(store), None, None, output=output, tokenizer=self.tokenizer
        )

    def _grads(
        self, result: RunResult, store: dict[str, torch.Tensor], fn: Callable[[RunResult], Any], device: Any
    ) -> None:
        with torch.enable_grad():
            scalar = fn(result)
        if not torch.is_tensor(scalar) or scalar.numel() != 1:
            raise InputError("grad= must return a scalar tensor (for example r.logits[0, -1, token_id])")
        names = list(store)
        grads = torch.autograd.grad(scalar, [store[n] for n in names], allow_unused=True)
        for n, g in zip(names, cast("tuple[torch.Tensor | None, ...]", grads), strict=True):
            value = store[n].detach()
            g = torch.zeros_like(value) if g is None else g  # allow_unused: None where the scalar ignores it
            store[n] = value if device is None else value.to(device)
            result.grads[n] = g if device is None else g.to(device)
        if result.logits is not None:
            result.logits = result.logits.detach()

    # ---- generation ---------------------------------------------------------------------------
    def generate(
        self,
        inputs: Any,
        max_new_tokens: int = 20,
        *,
        interventions: InterventionSpec = None,
        do_sample: bool = False,
        full_text: bool = False,
        prepend_bos: bool | None = None,
        **generate_kwargs: Any,
    ) -> str | list[str] | torch.Tensor:
        """Generate with the KV cache (greedy by default) and return the new text (``full_text=True``: with the
        prompt). Interventions given here or by an enclosing ``intervene`` apply at every step; positions are
        absolute, so ``positions=None`` also steers each newly generated token."""
        refuse_reentry("generate")
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
        prepared = prepare(
            self.module,
            self.tokenizer,
            inputs,
            {},
            self.cfg.n_ctx,
            padding_side="left",
            hf=self._hf,
            prepend_bos=self._bos(prepend_bos),
        )
        ids = prepared.tokens
        if ids is None:
            raise InputError("generate needs text or token ids")
        ctx = self.intervene(interventions) if interventions else nullcontext()
        with ctx:
            token = GENERATING.set({})
            try:
                if hasattr(self.module, "generate") and self._hf:
                    pad = getattr(self.tokenizer, "pad_token_id", None)
                    extra = {"pad_token_id": pad} if pad is not None else {}
                    out = getattr(self.module, "generate")(  # noqa: B009 - an HF method
                        **prepared.kwargs,
                        max_new_tokens=max_new_tokens,
                        do_sample=do_sample,
                        **extra,
                        **generate_kwargs,
                    )
                else:
                    out = self._greedy(ids, max_new_tokens)
            finally:
                GENERATING.reset(token)
        new = out if full_text else out[:, ids.shape[1] :]
        if self.tokenizer is None:
            return new
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return texts[0] if isinstance(inputs, str) else texts

    @torch.no_grad()
    def _greedy(self, ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        for _ in range(max_new_tokens):
            logits = output_logits(self.module(ids))
            if logits is None:
                raise InputError(
                    "generate needs a module that returns logits (a tensor or an output with .logits)"
                )
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        return ids

    # ---- helpers ------------------------------------------------------------------------------
    def _bos(self, prepend_bos: bool | None) -> bool:
        return self.prepend_bos if prepend_bos is None else bool(prepend_bos)

    def to_tokens(self, text: str | Sequence[str], prepend_bos: bool | None = None) -> torch.Tensor:
        """Token ids ``[batch, pos]`` as ``run`` would see them."""
        prepared = prepare(self.module, self.tokenizer, text, {}, None, prepend_bos=self._bos(prepend_bos))
        return prepared.tokens  # type: ignore[return-value]

    def to_str_tokens(self, text: str, prepend_bos: bool | None = None) -> list[str]:
        """The tokens of ``text`` as readable strings, as ``run`` would see them."""
        return self.str_tokens(self.to_tokens(text, prepend_bos)[0])

    def str_tokens(self, ids: torch.Tensor | Sequence[int]) -> list[str]:
        """Readable strings of token ids (``[pos]`` or ``[1, pos]``); the ids as text without a tokenizer."""
        return str_tokens(self.tokenizer, ids)

    def token_id(self, token: str) -> int:
        """The id of ``token`` (e.g. ``" Paris"``), which must be exactly one token."""
        return token_id(self.tokenizer, token)

    def block_modules(self, i: int) -> dict[str, nn.Module | None]:
        """The modules of block ``i`` by role (block, attn, o_proj, mlp, mlp_down, ln1, ln2, attn_out, mlp_out)."""
        if self.adapter is None:
            raise TsiError("this model has no adapter, so it has no named blocks; use raw sites")
        return block_modules(self.adapter, self.module, i)

    @property
    def device(self) -> torch.device:
        from ._inputs import input_device

        return input_device(self.module)

    def __repr__(self) -> str:
        arch = self.cfg.architecture or "raw sites only"
        return f"tsi.Model({type(self.module).__name__}, {arch}, n_layers={self.cfg.n_layers})"
