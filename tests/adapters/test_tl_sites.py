"""The sites TransformerLens users expect, on every architecture, with the identities that relate them.

``resid_mid = resid_pre + attn.out`` (sequential blocks); ``softmax(attn.scores) = attn.pattern``;
``attn.z = attn.pattern @ attn.v`` per head (grouped-query attention: ``attn.k``/``attn.v`` per query head);
``norm(x) = (x - mean) / scale * w + b`` for each norm scale; ``embed = token embedding + pos_embed``.
"""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from _arch_cases import B, H, L, P

TOL = dict(atol=1e-5, rtol=1e-5)


def test_resid_mid_is_resid_pre_plus_attn_out(case):
    c = case.cache
    has = [i for i in range(L) if f"blocks.{i}.resid_mid" in c]
    assert has == (list(range(L)) if case.style == "sequential" and case.model.adapter.ln2 else [])
    for i in has:
        mid = c[f"blocks.{i}.resid_mid"].reshape(B, P, -1)
        torch.testing.assert_close(mid, c[f"blocks.{i}.resid_pre"] + c[f"blocks.{i}.attn.out"], **TOL)


def test_softmax_of_scores_is_the_pattern(case):
    for i in range(L):
        scores = case.cache[f"blocks.{i}.attn.scores"]
        pattern = case.cache[f"blocks.{i}.attn.pattern"]
        torch.testing.assert_close(scores.float().softmax(-1).to(pattern.dtype), pattern, **TOL)
        if case.key not in ("bert", "roberta"):  # causal: the mask is in the scores, so later keys get 0
            assert (pattern.triu(1) == 0).all()


def test_z_is_pattern_times_v_per_head(case):
    if "blocks.0.attn.v" not in case.cache:
        assert case.key in ("gpt_neox", "gpt_neox_seq")  # fused per-head q|k|v: no q/k/v sites
        return
    for i in range(L):
        v = case.cache[f"blocks.{i}.attn.v"]  # [batch, pos, n_heads, d_head]
        pattern = case.cache[f"blocks.{i}.attn.pattern"]  # [batch, n_heads, q_pos, k_pos]
        z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)
        torch.testing.assert_close(z, case.cache[f"blocks.{i}.attn.z"], **TOL)


def test_gqa_keys_and_values_repeat_per_query_head(case):
    n_kv = case.model.cfg.n_kv_heads or H
    if "blocks.0.attn.k" not in case.cache or n_kv == H:
        return
    group = H // n_kv
    for part in ("k", "v"):
        value = case.cache[f"blocks.0.attn.{part}"]
        for h in range(H):  # query head h reads key/value head h // group: the copies of a group are equal
            assert torch.equal(value[:, :, h], value[:, :, (h // group) * group])


def test_scores_are_scaled_dot_products_without_rotary(case):
    if case.key not in ("gpt2", "bert"):
        return
    q, k = case.cache["blocks.1.attn.q"], case.cache["blocks.1.attn.k"]
    dots = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
    scores = case.cache["blocks.1.attn.scores"]
    keep = (
        torch.ones(P, P, dtype=torch.bool).tril()
        if case.key == "gpt2"
        else torch.ones(P, P, dtype=torch.bool)
    )
    torch.testing.assert_close(scores[..., keep], dots[..., keep], **TOL)


def _affine(norm, normalised):
    weight, bias = getattr(norm, "weight", None), getattr(norm, "bias", None)
    if weight is not None:
        normalised = normalised * (1 + weight if type(norm).__name__.startswith("Gemma") else weight)
    return normalised if bias is None else normalised + bias


@torch.no_grad()
def test_norm_scales_divide_the_norm_input(case):
    model = case.model
    names = [n for n in model.sites() if n.endswith(".scale")]
    if case.key == "olmo":  # OlmoLayerNorm hard-codes its eps and says nothing of it: no scale sites
        assert names == []
        return
    assert "final_norm.scale" in names or case.key == "opt_postnorm"
    if case.model.adapter.ln1:
        assert {f"blocks.{i}.ln1.scale" for i in range(L)} <= set(names)
    run = model.run(case.ids, cache=names + [f"{model.site(n).module_path}:input" for n in names])
    for name in names:
        site = model.site(name)
        x, scale = run.cache[f"{site.module_path}:input"], run.cache[name]
        assert scale.shape == (*x.shape[:-1], 1) and (scale > 0).all()
        centred = x - x.mean(-1, keepdim=True) if site.view.centred else x
        torch.testing.assert_close(_affine(site.module, centred / scale), site.module(x), **TOL)


def test_pos_embed_is_the_position_part_of_embed(case):
    if case.key != "gpt2":
        assert ("pos_embed" in case.cache) == (case.key in ("opt", "opt_postnorm", "bert", "roberta"))
        return
    tokens = case.module.transformer.wte(case.ids)
    torch.testing.assert_close(tokens + case.cache["pos_embed"], case.cache["embed"], **TOL)


# ---- writing the new sites -------------------------------------------------------------------------
def test_zero_values_give_zero_z(case):
    if "blocks.0.attn.v" not in case.cache:
        return
    run = case.model.run(
        case.ids, interventions={"blocks.0.attn.v": tsi.Set(torch.zeros(()))}, cache="blocks.0.attn.z"
    )
    assert (run.cache["blocks.0.attn.z"] == 0).all()


def test_uniform_scores_give_a_uniform_pattern(case):
    run = case.model.run(
        case.ids,
        interventions={"blocks.1.attn.scores": tsi.Set(torch.zeros(()), heads=[2])},
        cache=["blocks.1.attn.pattern"],
    )
    pattern = run.cache["blocks.1.attn.pattern"]
    torch.testing.assert_close(pattern[:, 2], torch.full((B, P, P), 1 / P), **TOL)
    torch.testing.assert_close(pattern[:, 1], case.cache["blocks.1.attn.pattern"][:, 1], **TOL)


def test_patching_q_k_v_from_the_same_run_is_exact(case):
    parts = [f"blocks.1.attn.{p}" for p in "qkv" if f"blocks.1.attn.{p}" in case.cache]
    if not parts:
        return
    run = case.model.run(case.ids, interventions={p: tsi.Patch(case.cache) for p in parts})
    torch.testing.assert_close(run.logits, case.run.logits, atol=1e-6, rtol=1e-6)
    other = case.model.run(case.ids.flip(1), cache=parts)
    moved = case.model.run(case.ids, interventions={parts[-1]: tsi.Patch(other.cache, positions=[3])})
    assert not torch.allclose(moved.logits[:, 3:], case.run.logits[:, 3:])


def test_gqa_write_must_keep_groups_equal():
    model = tsi.wrap(tsi.testing.tiny_hf_model("llama"))  # 4 query heads, 2 key/value heads
    ids = torch.randint(4, 100, (1, 5))
    with pytest.raises(tsi.InterventionError, match="share a key/value head"):
        model.run(ids, interventions={"blocks.0.attn.k": tsi.Scale(0.0, heads=[0])})
    both = model.run(
        ids, interventions={"blocks.0.attn.k": tsi.Scale(0.0, heads=[0, 1])}, cache="blocks.0.attn.k"
    )
    assert (both.cache["blocks.0.attn.k"][:, :, :2] == 0).all()
    assert not (both.cache["blocks.0.attn.k"][:, :, 2:] == 0).all()


def test_scales_are_read_only_with_a_hint():
    model = tsi.wrap(tsi.testing.tiny_hf_model("gpt2"))
    ids = torch.randint(4, 100, (1, 5))
    with pytest.raises(tsi.ReadOnlySiteError, match="statistic of the norm's input"):
        model.run(ids, interventions={"final_norm.scale": tsi.Scale(0.0)})


def test_patching_resid_mid_carries_the_whole_residual(case):
    if "blocks.0.resid_mid" not in case.cache:
        return
    other = case.model.run(case.ids.flip(1), cache=["blocks.0.resid_mid", "blocks.0.resid_post"])
    run = case.model.run(
        case.ids, interventions={"blocks.0.resid_mid": tsi.Patch(other.cache)}, cache="blocks.0.resid_post"
    )
    # resid_post = resid_mid + mlp(ln2(resid_mid)): both branches see the patched value
    torch.testing.assert_close(run.cache["blocks.0.resid_post"], other.cache["blocks.0.resid_post"], **TOL)
    assert torch.equal(case.model.run(case.ids).logits, case.run.logits)  # the module itself is unchanged


@pytest.mark.parametrize("frozen", [False, True])
def test_resid_mid_gradient_covers_both_branches(frozen):
    module = tsi.testing.tiny_hf_model("llama").double()
    module.requires_grad_(not frozen)
    model = tsi.wrap(module)
    ids = torch.randint(4, 100, (1, 5), generator=torch.Generator().manual_seed(3))
    site = "blocks.0.resid_mid"
    run = model.run(ids, cache=site, grad=lambda r: r.logits[0, -1, 7])
    direction = torch.randn(
        run.cache[site].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4)
    )
    eps = 1e-4

    def f(sign):
        out = model.run(ids, interventions={site: tsi.Fn(lambda v, ctx: v + sign * eps * direction)})
        return out.logits[0, -1, 7]

    finite = (f(1.0) - f(-1.0)) / (2 * eps)
    torch.testing.assert_close((run.grads[site] * direction).sum(), finite, rtol=1e-5, atol=1e-7)


def test_scores_need_eager_attention():
    model = tsi.wrap(tsi.testing.tiny_hf_model("llama"))
    assert model.attention == "sdpa"
    with pytest.raises(tsi.TsiError, match="blocks.0.attn.scores needs eager attention"):
        model.run(torch.randint(4, 100, (1, 5)), cache="blocks.0.attn.scores")
    run = model.run(torch.randint(4, 100, (1, 5)), cache="blocks.*.attn.*")  # the glob skips scores/pattern
    assert set(run.cache) == {f"blocks.{i}.attn.{p}" for i in range(2) for p in ("q", "k", "v", "z", "out")}
