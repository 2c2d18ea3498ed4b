"""The same API on modules that are not Hugging Face models: an MLP and a CNN."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import TinyCNN, TinyMLP


def test_mlp_raw_sites_cache_patch_and_grad():
    mlp = TinyMLP().eval()
    model = tsi.wrap(mlp)
    assert model.adapter is None and "act:output" in model.sites()
    x, y = torch.randn(4, 16), torch.randn(4, 16)
    run = model.run(x, cache=["fc1:output", "act:output", "fc2:input"])
    assert torch.equal(run.logits, mlp(x))
    assert torch.equal(run.cache["act:output"], torch.relu(run.cache["fc1:output"]))
    assert torch.equal(run.cache["fc2:input"], run.cache["act:output"])
    source = model.run(y, cache="act:output").cache
    patched = model.run(x, interventions={"act:output": tsi.Patch(source)})
    torch.testing.assert_close(patched.logits, mlp(y))
    g = model.run(x, cache="act:output", grad=lambda r: r.logits[:, 0].sum())
    torch.testing.assert_close(g.grads["act:output"], mlp.fc2.weight[0].expand(4, -1))


def test_mlp_unreached_site_is_an_error():
    model = tsi.wrap(TinyMLP())
    with pytest.raises(tsi.SiteNotReachedError, match="unused"):
        model.run(torch.randn(1, 16), interventions={"unused:output": tsi.Scale(0.0)})


def test_cnn_channels_ablation_with_fn():
    cnn = TinyCNN().eval()
    model = tsi.wrap(cnn)
    x = torch.randn(2, 1, 8, 8)

    def kill_channel(v, ctx):
        v = v.clone()
        v[:, 2] = 0
        return v

    run = model.run(x, cache="conv2:input", interventions={"conv1:output": tsi.Fn(kill_channel)})
    assert run.cache["conv2:input"][:, 2].abs().sum() == 0
    assert not torch.equal(run.logits, cnn(x))
    assert torch.equal(model.run(x).logits, cnn(x))


def test_plain_fast_path_equals_the_general_path():
    """A plain module on one tensor takes a short path in run(); it must give what the general path gives."""
    from torch_shard_interpret.testing import assert_no_hooks

    model = tsi.wrap(TinyMLP(), adapter=None)
    x = torch.randn(3, 16)
    fast = model.run(x, cache=["fc1:output", "act:input"])
    general = model.run(x, cache=["fc1:output", "act:input"], interventions={"fc2:output": tsi.Scale(1.0)})
    assert torch.equal(fast.logits, model.module(x)) and not fast.logits.requires_grad
    assert set(fast.cache) == set(general.cache) == {"fc1:output", "act:input"}
    for name in fast.cache:
        assert torch.equal(fast.cache[name], general.cache[name])
    assert torch.equal(fast.cache["fc1:output"], fast.cache["act:input"])
    with torch.inference_mode():
        assert torch.equal(
            model.run(x, cache="fc1:output", cache_device="cpu").cache["fc1:output"], fast.cache["fc1:output"]
        )
    assert_no_hooks(model.module)
