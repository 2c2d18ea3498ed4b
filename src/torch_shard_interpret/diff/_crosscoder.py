"""A BatchTopK crosscoder over paired activations of two models (Lindsey et al. 2024; Minder et al. 2025).

    z     = BatchTopK(ReLU(x_a @ W_enc_a + x_b @ W_enc_b + b_enc))     # [batch, d_latent]
    x_a^  = z @ W_dec_a + b_dec_a ;  x_b^ = z @ W_dec_b + b_dec_b

One shared dictionary, one decoder per model. The loss is the squared error of both reconstructions only: no L1
penalty on decoder norms, which is what makes the L1 crosscoder call shared concepts model-specific (Minder et
al.'s "Complete Shrinkage" and "Latent Decoupling"). BatchTopK keeps the ``k * batch`` largest pre-activations of
a batch; at inference a learnt threshold (the running mean of the smallest kept value) replaces the batch.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Crosscoder(nn.Module):
    """``Crosscoder(d_a, d_b, d_latent, k)``; ``encode(x_a, x_b)``, ``decode(z) -> (x_a^, x_b^)``."""

    threshold: torch.Tensor  # buffers (registered in __init__), 0-d
    scale_a: torch.Tensor
    scale_b: torch.Tensor

    def __init__(self, d_a: int, d_b: int, d_latent: int, k: int, seed: int = 0) -> None:
        super().__init__()
        self.d_a, self.d_b, self.d_latent, self.k = d_a, d_b, d_latent, k
        gen = torch.Generator().manual_seed(seed)
        dec_a = torch.randn(d_latent, d_a, generator=gen)
        dec_b = torch.randn(d_latent, d_b, generator=gen)
        scale = 0.1 / torch.cat([dec_a, dec_b], 1).norm(
            dim=1, keepdim=True
        )  # both decoders start equal in norm
        self.W_dec_a = nn.Parameter(dec_a * scale)
        self.W_dec_b = nn.Parameter(dec_b * scale)
        self.W_enc_a = nn.Parameter(self.W_dec_a.detach().T.clone())
        self.W_enc_b = nn.Parameter(self.W_dec_b.detach().T.clone())
        self.b_enc = nn.Parameter(torch.zeros(d_latent))
        self.b_dec_a = nn.Parameter(torch.zeros(d_a))
        self.b_dec_b = nn.Parameter(torch.zeros(d_b))
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("scale_a", torch.ones(()))
        self.register_buffer("scale_b", torch.ones(()))

    def pre_acts(self, x_a: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        """``[batch, d_latent]`` ReLU pre-activations (inputs in the models' own units)."""
        h = (x_a * self.scale_a - self.b_dec_a) @ self.W_enc_a + (
            x_b * self.scale_b - self.b_dec_b
        ) @ self.W_enc_b
        return torch.relu(h + self.b_enc)

    def encode(self, x_a: torch.Tensor, x_b: torch.Tensor, batch_topk: bool = False) -> torch.Tensor:
        pre = self.pre_acts(x_a, x_b)
        if not batch_topk:
            return pre * (pre > self.threshold)
        n = min(pre.numel(), self.k * pre.shape[0])
        flat = pre.flatten()
        keep = flat.topk(n, sorted=False).indices
        z = torch.zeros_like(flat).scatter_(0, keep, flat[keep]).view_as(pre)
        return z

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstructions in the normalised units the crosscoder was trained in."""
        return z @ self.W_dec_a + self.b_dec_a, z @ self.W_dec_b + self.b_dec_b

    def decoder_norms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``([d_latent], [d_latent])``: each latent's decoder norm in model A and in model B."""
        return self.W_dec_a.detach().norm(dim=1), self.W_dec_b.detach().norm(dim=1)

    def relative_norm(self) -> torch.Tensor:
        """``[d_latent]`` ``||d_b|| / (||d_a|| + ||d_b||)``: 0 = A only, 0.5 = shared, 1 = B only."""
        na, nb = self.decoder_norms()
        return nb / (na + nb).clamp_min(1e-12)


def fit_crosscoder(
    x_a: torch.Tensor, x_b: torch.Tensor, d_latent: int, k: int, steps: int, batch_size: int, lr: float,
    seed: int = 0, progress: bool = True,
) -> tuple[Crosscoder, list[float]]:  # fmt: skip
    """Train on paired rows ``x_a [n, d_a]``, ``x_b [n, d_b]``; returns the crosscoder and the loss curve."""
    from .._progress import progress as bar_of

    cc = Crosscoder(x_a.shape[1], x_b.shape[1], d_latent, k, seed)
    with torch.no_grad():  # each model's rows to mean norm sqrt(d), so neither model dominates the loss
        cc.scale_a.fill_(math.sqrt(x_a.shape[1]) / x_a.norm(dim=1).mean().clamp_min(1e-12))
        cc.scale_b.fill_(math.sqrt(x_b.shape[1]) / x_b.norm(dim=1).mean().clamp_min(1e-12))
        cc.b_dec_a.copy_((x_a * cc.scale_a).mean(0))
        cc.b_dec_b.copy_((x_b * cc.scale_b).mean(0))
    opt = torch.optim.Adam(cc.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    batch_size = min(batch_size, len(x_a))
    with bar_of(steps, desc="crosscoder", unit="step", enabled=progress) as bar:
        for step in range(steps):
            idx = torch.randint(0, len(x_a), (batch_size,), generator=gen)
            a, b = x_a[idx], x_b[idx]
            z = cc.encode(a, b, batch_topk=True)
            ra, rb = cc.decode(z)
            ta, tb = a * cc.scale_a, b * cc.scale_b
            loss = ((ra - ta).pow(2).sum(-1) + (rb - tb).pow(2).sum(-1)).mean()
            frac = min(1.0, step / max(1, int(0.05 * steps)))
            for g in opt.param_groups:
                g["lr"] = lr * frac * min(1.0, (steps - step) / max(1, 0.2 * steps)) + 1e-8
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                kept = z[z > 0]
                if kept.numel():
                    cc.threshold.mul_(0.99).add_(0.01 * kept.min())
            losses.append(float(loss.detach()))
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix_str(f"loss {loss.item():.3f}")
    cc.eval()
    return cc, losses
