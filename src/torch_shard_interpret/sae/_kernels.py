"""Sparse TopK autograd functions: no dense ``[batch, d_sae]`` tensor in the decoder or in any backward pass.

With ``k`` active latents per token only the encoder matmul ``x @ W_enc`` is dense. Everything else is a
gather, a weighted row sum (``embedding_bag``), a sampled dense-dense product or a sparse-dense product:

    pre_k  = gather(x @ W_enc + b_enc, idx)           # [batch, k]   forward: from the dense pre-activations
    x_hat  = sum_j z[:, j] * W_dec[idx[:, j]] + b_dec # [batch, d_out] embedding_bag, mode="sum"

Backward (``g``: gradient of x_hat, ``h``: gradient of pre_k):
    dz      = <g[b], W_dec[idx[b, j]]>                # sampled_addmm on the sparsity pattern of idx
    dW_dec  = S(z)^T @ g                              # S: [batch, d_sae] sparse with k entries per row
    dW_enc  = (S(h)^T @ x)^T, db_enc = index_add(h), db_dec (pre-encoder bias) = -W_enc @ db_enc
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F


def _csr(idx: torch.Tensor, values: torch.Tensor, n_cols: int) -> torch.Tensor:
    """``[batch, n_cols]`` sparse CSR with ``values[b, j]`` at column ``idx[b, j]``."""
    batch, k = idx.shape
    crow = torch.arange(0, batch * k + 1, k, device=idx.device, dtype=torch.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            crow, idx.reshape(-1), values.reshape(-1), (batch, n_cols), check_invariants=False
        )


def _scatter_rows(idx: torch.Tensor, values: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
    """``S^T @ rows`` for ``S = _csr(idx, values)``: ``out[l] = sum_{b, j: idx[b, j] = l} values[b, j] rows[b]``."""
    batch, k = idx.shape
    row_of = torch.arange(batch, device=idx.device).repeat_interleave(k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = torch.sparse_coo_tensor(
            torch.stack([idx.reshape(-1), row_of]), values.reshape(-1), (n, batch), check_invariants=False
        )
        return torch.sparse.mm(s, rows)


def _sampled_dots(idx: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``out[r, j] = <a[r], b[idx[r, j]]>`` without forming ``a @ b.T``."""
    if a.device.type == "cpu" and a.dtype in (torch.float32, torch.float64):
        pattern = _csr(idx, torch.zeros(idx.shape, dtype=a.dtype, device=a.device), b.shape[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = torch.sparse.sampled_addmm(pattern, a, b.t(), beta=0.0)
        return out.values().reshape(idx.shape)
    return torch.einsum("bd,bkd->bk", a, b[idx])  # fine on GPU (memory: batch x k x d)


class SparseDecode(torch.autograd.Function):
    """``out[b] = sum_j z[b, j] * W_dec[idx[b, j]] (+ bias)``; the bias is added in place (one tensor less)."""

    @staticmethod
    def forward(ctx, z, idx, W_dec, bias=None):  # noqa: N803
        ctx.save_for_backward(z, idx, W_dec)
        out = F.embedding_bag(idx, W_dec, per_sample_weights=z, mode="sum")
        return out if bias is None else out.add_(bias)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        z, idx, W_dec = ctx.saved_tensors  # noqa: N806
        g = g.contiguous()
        dz = _sampled_dots(idx, g, W_dec) if ctx.needs_input_grad[0] else None
        dW = _scatter_rows(idx, z, g, W_dec.shape[0]) if ctx.needs_input_grad[2] else None  # noqa: N806
        d_bias = g.sum(0) if len(ctx.needs_input_grad) > 3 and ctx.needs_input_grad[3] else None
        return dz, None, dW, d_bias


class GatherEncode(torch.autograd.Function):
    """``pre_k[b, j] = (x[b] - b_dec) @ W_enc[:, idx[b, j]] + b_enc[idx[b, j]]``, given its value ``pre_k``
    already computed from the dense (no-grad) pre-activations; the backward pass is sparse. ``x`` itself gets
    no gradient (activations are data); ``b_dec`` (None: not subtracted) gets ``-W_enc @ d b_enc``."""

    @staticmethod
    def forward(ctx, pre_k, xc, W_enc, b_enc, b_dec, idx):  # noqa: N803
        ctx.save_for_backward(xc, W_enc, idx)
        ctx.d_sae = b_enc.shape[0]
        return pre_k.clone()

    @staticmethod
    def backward(ctx, h: torch.Tensor):
        xc, W_enc, idx = ctx.saved_tensors  # noqa: N806
        h = h.contiguous()
        dW = db = d_bdec = None  # noqa: N806
        if ctx.needs_input_grad[2]:
            dW = _scatter_rows(idx, h, xc, ctx.d_sae).t()  # noqa: N806
        if ctx.needs_input_grad[3] or ctx.needs_input_grad[4]:
            db = torch.zeros(ctx.d_sae, dtype=h.dtype, device=h.device).index_add_(
                0, idx.reshape(-1), h.reshape(-1)
            )
            if ctx.needs_input_grad[4]:
                d_bdec = -(W_enc @ db)
        return None, None, dW, db, d_bdec, None


def topk_forward(
    x: torch.Tensor,
    W_enc: torch.Tensor,  # noqa: N803
    b_enc: torch.Tensor,
    W_dec: torch.Tensor,  # noqa: N803
    b_dec_in: torch.Tensor | None,
    b_dec_out: torch.Tensor,
    k: int,
    workspace: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """TopK SAE forward with sparse gradients. Returns ``(x_hat, z, idx, pre, xc)``: reconstruction
    ``[batch, d_out]``, active values and latent ids ``[batch, k]``, the dense pre-activations (no grad, for
    AuxK) and the encoder input.

    ``workspace`` (a dict the caller keeps between steps): the ``[batch, d_sae]`` pre-activations are written
    into a buffer kept there, so that a training loop does not map a fresh 64 MiB (4096 x 4096 fp32) every
    step; the returned ``pre`` is then overwritten by the next call with the same workspace."""
    with torch.no_grad():
        xc = x - b_dec_in if b_dec_in is not None else x  # [batch, d_in]
        shape = (xc.shape[0], W_enc.shape[1])
        buf = None if workspace is None else workspace.get("pre")
        if workspace is not None and (
            buf is None or buf.shape != shape or buf.dtype != xc.dtype or buf.device != xc.device
        ):
            buf = workspace["pre"] = xc.new_empty(shape)
        pre = torch.addmm(b_enc, xc, W_enc, out=buf) if buf is not None else torch.addmm(b_enc, xc, W_enc)
        vals, idx = pre.topk(k, dim=-1, sorted=False)
    z = GatherEncode.apply(vals, xc, W_enc, b_enc, b_dec_in, idx).relu()  # [batch, k]
    x_hat = SparseDecode.apply(z, idx, W_dec, b_dec_out)
    return x_hat, z, idx, pre, xc
