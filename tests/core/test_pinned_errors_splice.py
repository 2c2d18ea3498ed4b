"""Pinned by mutation testing (docs/mutation.md): the exact unknown-site message and the splice's dtypes and
gradient leaves, each of which a one-token change in the source used to leave unnoticed."""

from __future__ import annotations

import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.core._splice import Splice

KNOWN = ["blocks.1.resid_post", "blocks.2.resid_post", "blocks.3.resid_post", "blocks.4.resid_post", "embed"]


def test_unknown_site_message_lists_three_close_names():
    err = tsi.SiteNotFoundError("blocks.1.resid_pots", KNOWN)
    assert err.name == "blocks.1.resid_pots"
    # the best three of the four alike names, best first (ties in difflib's order)
    assert len(err.suggestions) == 3 and set(err.suggestions) < set(KNOWN[:4])
    assert err.suggestions[0] == "blocks.1.resid_post"
    listed = ", ".join(f"'{name}'" for name in err.suggestions)
    assert str(err) == f"unknown site 'blocks.1.resid_pots'; did you mean {listed}?"


def test_unknown_site_suggests_names_half_alike():
    # "abcd" and "abxy" share half their letters: difflib's ratio is exactly 0.5, the cutoff
    assert tsi.SiteNotFoundError("abcd", ["abxy"]).suggestions == ["abxy"]


def test_unknown_site_without_close_names_says_how_to_list_them():
    hint = "; list the real names with model.sites() (raw sites look like 'path.to.module:output')"
    assert str(tsi.SiteNotFoundError("zzz", KNOWN)) == "unknown site 'zzz'" + hint
    assert (
        str(tsi.SiteNotFoundError("zzz", KNOWN, hint="a hint")) == "unknown site 'zzz'" + hint + " (a hint)"
    )
    assert tsi.SiteNotFoundError("zzz").suggestions == []


def _splice():
    w = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    # the decoder answers in float64; the site's dtype (float32) must win
    return Splice("sae", lambda x: x @ w, lambda z: (z @ w.T).double()), w


def test_splice_parts_and_join_keep_the_site_dtype():
    splice, _ = _splice()
    x = torch.randn(2, 4)
    for detached in (False, True):
        latents, error = splice.parts(x, detached=detached)
        assert error.dtype == torch.float32
        assert splice.join(latents, error).dtype == torch.float32
        torch.testing.assert_close(splice.join(latents, error), x)


def test_splice_parts_detached_makes_the_latents_a_leaf_and_by_default_does_not():
    splice, w = _splice()
    x = torch.randn(2, 4, requires_grad=True)
    latents, _ = splice.parts(x)
    assert latents.grad_fn is not None  # still connected to x
    leaf, error = splice.parts(x, detached=True)
    assert leaf.is_leaf and leaf.requires_grad
    splice.join(leaf, error).sum().backward()
    torch.testing.assert_close(leaf.grad, torch.ones(2, 4, dtype=torch.float64).float() @ w)
    torch.testing.assert_close(x.grad, torch.ones(2, 4))  # the error term passes x through unchanged
