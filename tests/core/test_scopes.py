"""Scopes: nesting, threads, and the intervene() context."""

from __future__ import annotations

import threading

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import assert_no_hooks, tiny_hf_model


@pytest.fixture(scope="module")
def model():
    return tsi.wrap(tiny_hf_model("llama"))


IDS = torch.randint(4, 128, (1, 6), generator=torch.Generator().manual_seed(0))
SITE = "blocks.0.resid_post"


def test_nested_contexts_remove_only_their_own_hooks(model):
    a, b = torch.randn(64), torch.randn(64)
    base = model.run(IDS, cache=SITE).cache[SITE]
    with model.intervene({SITE: tsi.Add(a)}):
        with model.intervene({SITE: tsi.Add(b)}):
            both = model.run(IDS, cache=SITE).cache[SITE]
        outer_only = model.run(IDS, cache=SITE).cache[SITE]
        assert len(model.module.model.layers[0]._forward_hooks) == 1
    torch.testing.assert_close(both, base + a + b)
    torch.testing.assert_close(outer_only, base + a)
    assert_no_hooks(model.module)


def test_intervene_applies_to_direct_module_calls(model):
    with model.intervene({"blocks.1.resid_post": tsi.Scale(0.0)}):
        out = model.module(input_ids=IDS).logits
    zeroed = model.run(IDS, interventions={"blocks.1.resid_post": tsi.Scale(0.0)}).logits
    assert torch.equal(out, zeroed)


def test_threads_never_see_each_others_interventions(model):
    vectors = [torch.randn(64) * (i + 1) for i in range(8)]
    expected = [model.run(IDS, interventions={SITE: tsi.Add(v)}).logits for v in vectors]
    plain = model.run(IDS).logits
    results: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(9)

    def work(i):
        try:
            barrier.wait()
            for _ in range(5):
                if i == 8:
                    results[i] = model.run(IDS).logits  # a thread with no intervention at all
                else:
                    with model.intervene({SITE: tsi.Add(vectors[i])}):
                        results[i] = model.run(IDS).logits
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for i, v in enumerate(expected):
        torch.testing.assert_close(results[i], v)
    assert torch.equal(results[8], plain)
    assert_no_hooks(model.module)


def test_unreached_site_is_reported(model):
    # The first run stops early, so later sites are never reached: that is reported, not ignored.
    with pytest.raises(tsi.SiteNotReachedError, match="blocks.1.resid_post"):
        with model.intervene({"blocks.1.resid_post": tsi.Scale(2.0)}):
            model.run(IDS, cache="blocks.0.resid_post", return_logits=False)
