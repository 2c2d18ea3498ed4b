"""The replacement model of one prompt: attention patterns and norm scales frozen, each MLP a transcoder + error.

With the patterns and the norms' scale factors held at their values on the prompt, everything between two
MLPs is linear in the residual stream: a norm becomes ``gamma * centre(x) * sigma`` (``sigma`` frozen per
position; ``centre`` only for LayerNorm), and attention becomes ``sum_h A_h (norm(x) W_V^h) W_O^h``. The MLPs
are cut out: each writes its transcoder's features (nodes) plus an error vector (a node per position), so
gradients through this map are *direct* effects. At the prompt itself the map reproduces the model exactly;
``Replacement`` checks that (norm outputs and each head's ``z``) and raises if this architecture breaks it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..core._result import logits_of
from ._arch import call, layout
from ._graph import CircuitError
from ._graph import graph as build_graph

if TYPE_CHECKING:
    from ..core._model import Model


class FrozenNorm:
    """A LayerNorm or RMSNorm with its scale frozen at input ``x`` ([p, d]): ``lin(d) = gamma * centre(d) * sigma``."""

    def __init__(self, module: nn.Module, x: torch.Tensor, where: str):
        name = type(module).__name__
        self.center = isinstance(module, nn.LayerNorm) or ("LayerNorm" in name and "RMS" not in name)
        d = x.shape[-1]
        w = getattr(module, "weight", None)
        gamma = w.detach().float() if isinstance(w, torch.Tensor) else torch.ones(d)
        if "Gemma" in name:  # Gemma's RMSNorm scales by (1 + weight)
            gamma = 1 + gamma
        eps = getattr(module, "eps", None)
        eps = getattr(module, "variance_epsilon", 1e-5) if eps is None else eps
        b = getattr(module, "bias", None)
        self.beta = b.detach().float() if isinstance(b, torch.Tensor) else torch.zeros(d)
        self.gamma = gamma.to(x.device)
        xc = self._centre(x.float())
        self.sigma = (xc.pow(2).mean(-1, keepdim=True) + float(eps)).rsqrt()  # [p, 1]
        with torch.no_grad():
            real = module(x).float()
        if not torch.allclose(self.lin(x.float()) + self.beta.to(x.device), real, rtol=1e-3, atol=1e-4):
            raise CircuitError(
                f"the norm at {where} ({name}) is not a LayerNorm or RMSNorm this replacement model can freeze; "
                "attribution graphs support pre-norm models with LayerNorm or RMSNorm"
            )

    def _centre(self, d: torch.Tensor) -> torch.Tensor:
        return d - d.mean(-1, keepdim=True) if self.center else d

    def lin(self, d: torch.Tensor) -> torch.Tensor:
        """The frozen norm's linear part on ``[..., p, d]``."""
        return self.gamma * self._centre(d) * self.sigma

    def lin_t(self, g: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """The transpose at positions ``pos``: ``g`` is ``[T, d]`` at ``pos`` ([T]), returns ``[T, d]``."""
        return self._centre(g * self.gamma * self.sigma[pos])


def _linear_part(module: nn.Module, u: torch.Tensor) -> torch.Tensor:
    return call(module, u) - call(module, torch.zeros_like(u[..., :1, :]))


class Replacement:
    """One prompt (``ids`` [1, p]) through the frozen model with transcoders ``{layer: Transcoder}``."""

    def __init__(self, model: Model, ids: torch.Tensor, tcs: dict[int, Any]):
        g = build_graph(model)
        lay = layout(model, g)
        self.model, self.lay, self.g = model, lay, g
        L = g.n_layers
        missing = [i for i in range(L) if i not in tcs]
        if missing:
            raise CircuitError(
                f"attribution graphs need a transcoder for every layer; layers {missing} have none"
            )
        self.tcs = tcs
        self.parallel = g.parallel
        sites = [f"{lay.final_norm}:input"]
        for i, layer in enumerate(lay.layers):
            sites += [f"{layer.ln1}:input", f"{layer.mlp_norm}:input", f"{layer.mlp}:input"]
            sites += [f"blocks.{i}.mlp.out", f"blocks.{i}.attn.pattern", f"blocks.{i}.attn.z"]
        old = model.attention
        with warnings.catch_warnings():  # the switch to eager attention (patterns) is ours, and undone below
            warnings.simplefilter("ignore", UserWarning)
            if old != "eager":
                model.set_attention("eager")
            try:
                run = model.run(ids, cache=sorted(set(sites)))
            finally:
                if old != "eager" and old is not None:
                    model.set_attention(old)
        c = run.cache
        self.ids = ids[0]
        self.logits = logits_of(run, "the attribution graph")[0, -1].detach().float()
        self.x0 = c[f"{lay.layers[0].ln1}:input"][0].detach().float()  # the residual entering layer 0
        self.ln1, self.ln2, self.patterns, self.inputs, self.errors, self.acts = [], [], [], [], [], []
        H, G, dh = g.n_heads, g.n_kv_heads, lay.d_head
        self.v_cols = []
        for i, layer in enumerate(lay.layers):
            x = c[f"{layer.ln1}:input"][0].detach()
            self.ln1.append(FrozenNorm(lay.module(layer.ln1), x, f"blocks.{i}.ln1"))
            xm = c[f"{layer.mlp_norm}:input"][0].detach()
            self.ln2.append(FrozenNorm(lay.module(layer.mlp_norm), xm, f"blocks.{i}.ln2"))
            self.patterns.append(c[f"blocks.{i}.attn.pattern"][0].detach().float())  # [H, q, k]
            proj, offset = next((p, off) for p in layer.projs for kind, off, _ in p.parts if kind == "v")
            self.v_cols.append((proj, offset))
            z = c[f"blocks.{i}.attn.z"][0].detach().float()
            with torch.no_grad():
                v = self._values(i, call(proj.module, lay.module(layer.ln1)(x)).float())  # [p, H, dh]
                z_lin = torch.einsum("hqk,khe->qhe", self.patterns[i], v)
            if not torch.allclose(z_lin, z.reshape(z_lin.shape), rtol=1e-3, atol=1e-4):
                raise CircuitError(
                    f"layer {i}'s attention is not pattern @ values on this model, so it cannot be frozen; "
                    "attribution graphs support standard softmax attention"
                )
            x_in = c[f"{layer.mlp}:input"][0].detach().float()
            tc = tcs[i]
            if x_in.shape[-1] != tc.cfg.d_in:
                raise CircuitError(
                    f"the layer-{i} transcoder reads width {tc.cfg.d_in} but the MLP input is {x_in.shape[-1]} wide"
                )
            with torch.no_grad():
                acts = tc.encode(x_in.to(tc.dtype)).float()
                recon = tc.decode(acts.to(tc.dtype)).float()
            self.inputs.append(x_in)
            self.acts.append(acts)  # [p, d_sae]
            self.errors.append(c[f"blocks.{i}.mlp.out"][0].detach().float() - recon)
        self.final = FrozenNorm(
            lay.module(lay.final_norm), c[f"{lay.final_norm}:input"][0].detach(), "final_norm"
        )
        self.H, self.G, self.dh = H, G, dh

    def _values(self, i: int, y: torch.Tensor) -> torch.Tensor:
        """``[..., p, H, dh]``: each query head's value (a KV head repeated across its group) from projection output."""
        _, offset = self.v_cols[i]
        G, H, dh = self.g.n_kv_heads, self.g.n_heads, self.lay.d_head
        v = y[..., offset : offset + G * dh].reshape(*y.shape[:-1], G, dh)
        return v.repeat_interleave(H // G, dim=-2)

    def attn_lin(self, i: int, d: torch.Tensor) -> torch.Tensor:
        """Layer ``i``'s frozen attention on residual directions ``[T, p, d]`` (biases left out)."""
        proj, _ = self.v_cols[i]
        v = self._values(i, _linear_part(proj.module, self.ln1[i].lin(d)))
        z = torch.einsum("hqk,tkhe->tqhe", self.patterns[i], v)
        return torch.einsum("tqhe,hed->tqd", z, self.lay.w_o(i, z))

    def attn_t(self, i: int, g: torch.Tensor) -> torch.Tensor:
        """The transpose of ``attn_lin``: gradients ``[T, p, d]`` at its output to its input."""
        with torch.enable_grad():
            d = torch.zeros_like(g).requires_grad_(True)
            (out,) = torch.autograd.grad(self.attn_lin(i, d), d, g)
        return out

    def logit_grads(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[K, d]``: gradient of each demeaned logit ``logit_v - mean(logits)`` at the last residual."""
        unembed = self.lay.module(self.lay.unembed)
        p = self.x0.shape[0]
        with torch.enable_grad():
            d = torch.zeros(len(tokens), 1, self.x0.shape[1], device=self.x0.device, requires_grad=True)
            sigma = self.final.sigma[p - 1 : p]
            out = _linear_part(unembed, self.final.gamma * self.final._centre(d) * sigma)[:, 0]
            cot = torch.zeros_like(out)
            cot[torch.arange(len(tokens)), tokens] = 1.0
            cot -= 1.0 / out.shape[-1]
            (grad,) = torch.autograd.grad(out, d, cot)
        return grad[:, 0]
