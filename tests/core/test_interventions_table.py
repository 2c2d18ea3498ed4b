"""One table of interventions generates the invariant tests (captum style).

For every case: the expected change at the site, hooks removed after success and after injected
failures (in the model, in a user function, KeyboardInterrupt), batch-vs-single equivalence, and
generation with the KV cache equal to a manual loop without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import assert_no_hooks, tiny_hf_model

D = 64
N_HEADS = 4


@dataclass
class Case:
    id: str
    site: str
    make: Callable[[dict], tsi.Intervention]  # gets the clean cache of the input batch
    expect: Callable[[torch.Tensor, dict], torch.Tensor] | None  # before -> expected after (at the site)
    batch_independent: bool = True  # same result for a row alone as in a batch
    generation: bool = True  # include in the generate-vs-manual-loop test
    per_row_source: bool = True  # a single row is compared with the matching row of the source


def _vec(seed=1, *shape):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*(shape or (D,)), generator=g)


def _set_pos(x, pos, val):
    y = x.clone()
    y[:, pos] = val
    return y


CASES = [
    Case("set-all", "blocks.0.resid_post", lambda c: tsi.Set(_vec(2)), lambda x, c: _vec(2).expand_as(x)),
    Case(
        "set-pos",
        "blocks.0.resid_post",
        lambda c: tsi.Set(_vec(2), positions=[1, 3]),
        lambda x, c: _set_pos(x, [1, 3], _vec(2)),
    ),
    Case(
        "patch-pos",
        "blocks.0.resid_post",
        lambda c: tsi.Patch(c["other"], positions=[2]),
        lambda x, c: _set_pos(x, [2], c["other"]["blocks.0.resid_post"][:, [2]]),
        generation=False,
    ),
    Case(
        "add-all", "blocks.1.resid_pre", lambda c: tsi.Add(_vec(3), scale=2.0), lambda x, c: x + 2.0 * _vec(3)
    ),
    Case(
        "add-last",
        "blocks.0.resid_post",
        lambda c: tsi.Add(_vec(3), positions=-1),
        lambda x, c: _set_pos(x, [-1], x[:, [-1]] + _vec(3)),
    ),
    Case("scale", "blocks.0.mlp.out", lambda c: tsi.Scale(0.5), lambda x, c: x * 0.5),
    Case(
        "projectout",
        "blocks.1.resid_pre",
        lambda c: tsi.ProjectOut(_vec(4)),
        lambda x, c: x - (x @ (_vec(4) / _vec(4).norm())).unsqueeze(-1) * (_vec(4) / _vec(4).norm()),
    ),
    Case(
        "ablate-zero-heads",
        "blocks.1.attn.z",
        lambda c: tsi.Ablate("zero", heads=[1, 3]),
        lambda x, c: x * torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, N_HEADS, 1),
    ),
    Case(
        "ablate-mean-source",
        "blocks.0.attn.out",
        lambda c: tsi.Ablate("mean", source=c["other"]),
        lambda x, c: c["other"]["blocks.0.attn.out"].mean(dim=(0, 1), keepdim=True).expand_as(x),
        per_row_source=False,
    ),
    Case(
        "ablate-mean-batch",
        "blocks.0.attn.out",
        lambda c: tsi.Ablate("mean"),
        lambda x, c: x.mean(dim=(0, 1), keepdim=True).expand_as(x),
        batch_independent=False,
        generation=False,
    ),
    Case(
        "ablate-resample",
        "blocks.0.resid_post",
        lambda c: tsi.Ablate("resample", positions=[0, 1]),
        None,
        batch_independent=False,
        generation=False,
    ),
    Case("fn", "blocks.0.resid_post", lambda c: tsi.Fn(lambda v, ctx: v.flip(-1)), lambda x, c: x.flip(-1)),
    Case(
        "fn-heads-batch",
        "blocks.0.attn.z",
        lambda c: tsi.Fn(lambda v, ctx: -v, heads=0, batch=[1]),
        lambda x, c: _neg_head0_row1(x),
        batch_independent=False,
    ),
]


def _neg_head0_row1(x):
    y = x.clone()
    y[1, :, 0] = -y[1, :, 0]
    return y


@pytest.fixture(scope="module")
def setup():
    module = tiny_hf_model("llama")
    model = tsi.wrap(module)
    ids = torch.randint(4, 128, (3, 6), generator=torch.Generator().manual_seed(0))
    other_ids = torch.randint(4, 128, (3, 6), generator=torch.Generator().manual_seed(1))
    sites = sorted({c.site for c in CASES})
    ctx = {
        "clean": model.run(ids, cache=sites).cache,
        "other": model.run(other_ids, cache=sites).cache,
    }
    return model, ids, ctx


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_effect_at_site(setup, case):
    model, ids, ctx = setup
    run = model.run(ids, cache=case.site, interventions={case.site: case.make(ctx)})
    before = ctx["clean"][case.site]
    after = run.cache[case.site]
    if case.expect is not None:
        torch.testing.assert_close(after, case.expect(before, ctx))
    else:  # resample: rows come from other rows of the batch at the chosen positions only
        assert torch.equal(after[:, 2:], before[:, 2:])
        for row in range(after.shape[0]):
            assert any(
                torch.equal(after[row, :2], before[other, :2])
                for other in range(before.shape[0])
                if other != row
            )
    assert_no_hooks(model.module)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("failure", ["model", "user_fn", "keyboard"])
def test_hooks_removed_after_failure(setup, case, failure):
    model, ids, ctx = setup
    ivs = {case.site: case.make(ctx)}
    expected_exc = RuntimeError
    handle = None
    if failure == "model":

        def boom(module, args, output):
            raise RuntimeError("injected failure in the model")

        handle = model.module.lm_head.register_forward_hook(boom)
    else:
        exc = (
            RuntimeError("injected failure in a user function")
            if failure == "user_fn"
            else KeyboardInterrupt()
        )
        expected_exc = type(exc)

        def raise_(v, c):
            raise exc

        ivs["final_norm"] = tsi.Fn(raise_)
    try:
        with pytest.raises(expected_exc):
            model.run(ids, cache="blocks.*.resid_post", interventions=ivs)
        with pytest.raises(expected_exc):
            with model.intervene(ivs):
                model.run(ids)
    finally:
        if handle is not None:
            handle.remove()
    assert_no_hooks(model.module)
    # The model is untouched afterwards.
    assert torch.equal(model.run(ids).logits, model.module(input_ids=ids).logits)


@pytest.mark.parametrize("case", [c for c in CASES if c.batch_independent], ids=lambda c: c.id)
def test_batch_equals_single(setup, case):
    model, ids, ctx = setup
    batch = model.run(ids, interventions={case.site: case.make(ctx)}).logits
    for row in range(ids.shape[0]):
        row_ctx = ctx
        if case.per_row_source:
            row_ctx = {
                k: tsi.ActivationCache({n: t[row : row + 1] for n, t in v.items()}) for k, v in ctx.items()
            }
        single = model.run(ids[row : row + 1], interventions={case.site: case.make(row_ctx)}).logits
        torch.testing.assert_close(batch[row : row + 1], single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c.generation], ids=lambda c: c.id)
def test_generate_equals_manual_loop(setup, case):
    model, ids, ctx = setup
    prompt = ids[:2, :4]
    n_new = 4
    iv = case.make(ctx)
    got = model.generate(prompt, max_new_tokens=n_new, interventions={case.site: iv}, full_text=True)
    seq = prompt
    for _ in range(n_new):  # no KV cache: the whole sequence each step
        logits = model.run(seq, interventions={case.site: iv}).logits
        seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(got, seq)
    assert_no_hooks(model.module)


def test_intervention_changes_generation(setup):
    """The table above would pass vacuously if interventions did nothing during generation."""
    model, ids, _ = setup
    prompt = ids[:1, :4]
    plain = model.generate(prompt, max_new_tokens=6)
    steered = model.generate(
        prompt, max_new_tokens=6, interventions={"blocks.1.resid_post": tsi.Add(_vec(5), scale=50)}
    )
    assert not torch.equal(plain, steered)
