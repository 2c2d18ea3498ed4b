"""Core behaviour the docs promise: typed errors that name the site, refused re-entry, unreached sites."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import TinyMLP, assert_no_hooks, tiny_hf_model

IDS = torch.randint(4, 128, (2, 6), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def model():
    return tsi.wrap(tiny_hf_model("llama"))


def test_unreached_site_with_return_logits_false_is_reported():
    mlp = tsi.wrap(TinyMLP(), adapter=None)
    x = torch.randn(3, 16)
    with pytest.raises(tsi.SiteNotReachedError, match=r"return_logits=False.*'unused:output'"):
        mlp.run(x, cache="fc1:output", interventions={"unused:output": tsi.Scale(0.0)}, return_logits=False)
    # a site after the last cached one is not reached either when the forward stops early
    with pytest.raises(tsi.SiteNotReachedError, match="'fc2:output'"):
        mlp.run(x, cache="fc1:output", interventions={"fc2:output": tsi.Scale(0.0)}, return_logits=False)
    # reached before the stop: fine, and the cached value is the changed one
    run = mlp.run(x, cache="fc2:output", interventions={"fc1:output": tsi.Scale(0.0)}, return_logits=False)
    assert run.logits is None
    torch.testing.assert_close(run.cache["fc2:output"], mlp.module.fc2.bias.expand(3, 16))
    assert_no_hooks(mlp.module)


def test_fn_calling_run_is_refused(model):
    def reenter(value, ctx):
        model.run(IDS)
        return value

    with pytest.raises(
        tsi.ReentrantRunError,
        match=r"model.run was called from inside the intervention at 'blocks.0.resid_post'",
    ):
        model.run(IDS, interventions={"blocks.0.resid_post": tsi.Fn(reenter)})
    assert_no_hooks(model.module)

    def regenerate(value, ctx):
        model.generate(IDS[:1], max_new_tokens=1)

    with pytest.raises(tsi.ReentrantRunError, match="model.generate"):
        model.run(IDS, interventions={"blocks.1.mlp.out": tsi.Fn(regenerate)})

    def nest(value, ctx):
        with model.intervene({"embed": tsi.Scale(1.0)}):
            pass

    with pytest.raises(tsi.ReentrantRunError, match="model.intervene"):
        model.run(IDS, interventions={"embed": tsi.Fn(nest)})
    assert_no_hooks(model.module)
    # after the refusal the model runs normally: the guard was reset
    torch.testing.assert_close(model.run(IDS).logits, model.module(input_ids=IDS).logits)


def test_values_on_the_meta_device_name_the_site(model):
    meta = torch.empty(64, device="meta")
    for iv in (tsi.Set(meta), tsi.Add(meta), tsi.Patch(torch.empty(2, 6, 64, device="meta"))):
        with pytest.raises(
            tsi.InterventionError, match=r"at blocks.0.resid_post: the value is on the meta device"
        ):
            model.run(IDS, interventions={"blocks.0.resid_post": iv})
    # inside a cache too (found when the patch is applied)
    with pytest.raises(tsi.InterventionError, match="Patch at blocks.1.resid_post.*meta device"):
        model.run(IDS, interventions={"blocks.1.resid_post": tsi.Patch({"blocks.1.resid_post": meta})})
    assert_no_hooks(model.module)


@pytest.mark.parametrize(
    "selectors, error",
    [
        ({"positions": [1.5]}, tsi.PositionError),
        ({"positions": 2.0}, tsi.PositionError),
        ({"positions": torch.tensor([1.0])}, tsi.PositionError),
        ({"positions": slice(0.5, 2)}, tsi.PositionError),
        ({"positions": [True]}, tsi.PositionError),
        ({"heads": [0.5]}, tsi.InterventionError),
        ({"batch": "0"}, tsi.InterventionError),
    ],
)
def test_non_integer_selectors_name_the_site(model, selectors, error):
    with pytest.raises(error, match="at blocks.0.attn.z"):
        model.run(IDS, interventions={"blocks.0.attn.z": tsi.Scale(0.0, **selectors)})


def test_integer_selectors_still_work(model):
    ok = model.run(IDS, interventions={"blocks.0.resid_post": tsi.Scale(0.0, positions=torch.tensor([1, 2]))})
    ref = model.run(IDS, interventions={"blocks.0.resid_post": tsi.Scale(0.0, positions=[1, 2])})
    assert torch.equal(ok.logits, ref.logits)


def test_out_of_vocabulary_ids(model):
    for bad in (128, 10**6, -1):
        ids = IDS.clone()
        ids[1, 3] = bad
        with pytest.raises(
            tsi.InputError, match=rf"token id {bad} at input_ids \(the embed site\).*128 tokens"
        ):
            model.run(ids)
    with pytest.raises(tsi.InputError, match="vocabulary"):
        model.generate(torch.tensor([[5, 200]]), max_new_tokens=1)
    model.run(torch.tensor([[0, 127]]))  # the edges are in the vocabulary


def test_fn_returning_a_non_tensor_names_the_site(model):
    for value in (3, 1.5, "x", [1.0]):
        with pytest.raises(
            tsi.InterventionError, match=rf"Fn at blocks.1.mlp.out returned a {type(value).__name__}"
        ):
            model.run(IDS, interventions={"blocks.1.mlp.out": tsi.Fn(lambda v, ctx, _r=value: _r)})
    with pytest.raises(tsi.InterventionError, match="Fn at blocks.0.attn.z returned a int"):
        model.run(IDS, interventions={"blocks.0.attn.z": tsi.Fn(lambda v, ctx: 0, heads=[1])})
    assert_no_hooks(model.module)
