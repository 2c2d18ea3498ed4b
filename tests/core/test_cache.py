"""ActivationCache: a read-only mapping with natural-order stacking and glob look-ups."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi


def _cache(n: int = 12) -> tsi.ActivationCache:
    # inserted in a shuffled order, so that neither insertion order nor string order is the answer
    order = [5, 11, 0, 10, 2, 1, 9, 3, 8, 4, 7, 6][:n] if n == 12 else list(range(n))
    data = {f"blocks.{i}.resid_post": torch.full((1, 2), float(i)) for i in order}
    data["embed"] = torch.full((1, 2), -1.0)
    return tsi.ActivationCache(data)


def test_stack_is_in_layer_order_not_string_order():
    stacked = _cache().stack("blocks.*.resid_post")
    assert stacked.shape == (12, 1, 2)
    # string order would put blocks.10 and blocks.11 before blocks.2
    assert stacked[:, 0, 0].tolist() == [float(i) for i in range(12)]


def test_names_and_globs():
    cache = _cache()
    assert cache.names("blocks.1*.resid_post") == [
        "blocks.11.resid_post",
        "blocks.10.resid_post",
        "blocks.1.resid_post",
    ]
    assert cache.names("embed") == ["embed"]
    assert cache.names()[-1] == "embed" and len(cache.names()) == 13
    with pytest.raises(tsi.SiteNotFoundError, match="no cached site matches it"):
        cache.stack("blocks.*.mlp.out")


def test_mapping_behaviour_and_errors():
    cache = _cache(3)
    assert len(cache) == 4 and "embed" in cache and "blocks.3.resid_post" not in cache
    assert list(cache) == ["blocks.0.resid_post", "blocks.1.resid_post", "blocks.2.resid_post", "embed"]
    with pytest.raises(
        tsi.SiteNotFoundError, match=r"unknown site 'blocks.1.resid_pots'; did you mean 'blocks.1.resid_post'"
    ):
        cache["blocks.1.resid_pots"]
    with pytest.raises(KeyError):  # still a KeyError for code written against dicts
        cache["nothing"]
    assert "blocks.0.resid_post: [1, 2]" in repr(cache)


def test_to_and_detach_make_new_caches():
    x = torch.ones(2, requires_grad=True) * 2
    cache = tsi.ActivationCache({"a": x})
    detached = cache.detach()
    assert x.requires_grad and not detached["a"].requires_grad and torch.equal(detached["a"], x)
    moved = cache.to(torch.float64)
    assert moved["a"].dtype == torch.float64 and cache["a"].dtype == torch.float32
    assert isinstance(moved, tsi.ActivationCache) and isinstance(detached, tsi.ActivationCache)
    assert len(tsi.ActivationCache()) == 0


def test_natural_key_orders_numbers_by_value():
    from torch_shard_interpret.core._site import natural_key

    names = ["blocks.10.x", "blocks.2.x", "blocks.1.x", "a", "blocks.2.attn.z"]
    assert sorted(names, key=natural_key) == [
        "a",
        "blocks.1.x",
        "blocks.2.attn.z",
        "blocks.2.x",
        "blocks.10.x",
    ]


def test_error_messages_say_where_to_look():
    cache = _cache(3)
    with pytest.raises(tsi.SiteNotFoundError) as err:
        cache["blocks.7.resid_post"]
    assert str(err.value).endswith("(not in this cache; pass it in cache=)")
    with pytest.raises(
        tsi.SiteNotFoundError, match=r"did you mean 'blocks.\d.resid_post'.*\(no cached site matches it\)$"
    ):
        cache.stack("blocks.*.resid_pots")
    # an exact name that is absent is looked up, and the look-up says so
    with pytest.raises(tsi.SiteNotFoundError, match=r"not in this cache"):
        cache.stack("blocks.7.resid_post")
    assert cache.names("blocks.7.resid_post") == ["blocks.7.resid_post"]
    assert (
        repr(tsi.ActivationCache({"a": torch.zeros(2), "b": torch.zeros(1, 3)}))
        == "ActivationCache(a: [2], b: [1, 3])"
    )
    assert cache.to(dtype=torch.float16)["embed"].dtype == torch.float16
