"""Hooks written straight into a module's hook tables (``core/_fasthooks.py``): the same behaviour as the
public API, removed after every run (also when the forward raises), and a public-API fallback."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torch_shard_interpret as tsi
from torch_shard_interpret.core import _fasthooks, _lean
from torch_shard_interpret.testing import TinyMLP, assert_no_hooks


def test_this_torch_takes_direct_hooks():
    assert _fasthooks.DIRECT  # else every lean run silently takes the slower public API


def test_direct_hooks_see_what_public_hooks_see():
    module = nn.Linear(3, 3)
    x = torch.randn(2, 3)
    seen: dict[str, object] = {}
    out_key = _fasthooks.add_output_hook(module, lambda m, a, o: seen.update(out=o))
    in_key = _fasthooks.add_input_hook(module, lambda m, a, k: seen.update(args=a, kwargs=k))
    public = module.register_forward_hook(lambda m, a, o: seen.update(public=o))
    y = module(x)
    assert seen["out"] is y and seen["public"] is y
    assert seen["args"][0] is x and seen["kwargs"] == {}
    _fasthooks.remove_hook(module, out_key)
    _fasthooks.remove_hook(module, in_key)
    _fasthooks.remove_hook(module, in_key)  # removing twice is a no-op
    assert list(module._forward_hooks) == [public.id]
    assert not module._forward_pre_hooks and not module._forward_pre_hooks_with_kwargs
    public.remove()


def test_the_one_site_run_removes_its_hook_when_the_forward_raises():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.boom = False

        def forward(self, x):
            out = self.fc(x)
            if self.boom:
                raise RuntimeError("boom")
            return out

    model = tsi.wrap(Boom(), adapter=None)
    x = torch.randn(1, 4)
    model.run(x, cache="fc:output")
    assert "fc:output" in model._one_site
    model.module.boom = True
    for _ in range(2):
        with pytest.raises(RuntimeError, match="boom"):
            model.run(x, cache="fc:output")
        assert_no_hooks(model.module)
    model.module.boom = False
    assert torch.equal(model.run(x, cache="fc:output").cache["fc:output"], model.module.fc(x))


def test_user_hooks_run_alongside_and_stay():
    model = tsi.wrap(TinyMLP(), adapter=None)
    x = torch.randn(2, 16)
    calls = []
    mine = model.module.fc1.register_forward_hook(lambda m, a, o: calls.append(o.clone()), always_call=True)
    for _ in range(2):  # the second run takes the one-site call
        run = model.run(x, cache="fc1:output")
        assert torch.equal(run.cache["fc1:output"], calls[-1])
    assert list(model.module.fc1._forward_hooks) == [mine.id]
    mine.remove()


def test_without_direct_hooks_the_public_api_gives_the_same_runs(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_fasthooks, "DIRECT", False)
    monkeypatch.setattr(_lean, "DIRECT", False)
    model = tsi.wrap(TinyMLP(), adapter=None)
    x = torch.randn(2, 16)
    for spec in ("fc1:output", ["fc1:output", "fc2:input"]):
        for _ in range(2):
            run = model.run(x, cache=spec)
            assert torch.equal(run.cache["fc1:output"], model.module.fc1(x))
            assert torch.equal(run.logits, model.module(x))
            assert_no_hooks(model.module)
    assert not model._one_site


def test_an_intervene_block_holds_its_hooks_directly_and_drops_them_on_error():
    model = tsi.wrap(TinyMLP(), adapter=None)
    x = torch.randn(2, 16)
    with pytest.raises(RuntimeError, match="inside"):
        with model.intervene({"fc1:output": lambda t, ctx: t * 0}):
            assert [k for k in model.module.fc1._forward_hooks if k < 0]  # a direct key, not a handle id
            assert torch.equal(model.module(x), model.module.fc2(torch.relu(torch.zeros(2, 32))))
            raise RuntimeError("inside")
    assert_no_hooks(model.module)
    assert torch.equal(model.run(x).logits, model.module(x))
