"""The lean record-only run of plain modules: plans reused across calls, and every guarantee kept."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import TinyMLP, assert_no_hooks


def test_repeated_runs_reuse_a_plan_and_record_each_call():
    model = tsi.wrap(TinyMLP(), adapter=None)
    for _ in range(3):
        x = torch.randn(2, 16)
        run = model.run(x, cache="fc1:output")
        assert torch.equal(run.cache["fc1:output"], model.module.fc1(x))
        assert torch.equal(run.logits, model.module(x))
    assert "fc1:output" in model._plans and "fc1:output" in model._one_site
    assert_no_hooks(model.module)


def test_a_replaced_weight_rebuilds_the_plan():
    model = tsi.wrap(TinyMLP(), adapter=None)
    x = torch.randn(2, 16)
    model.run(x, cache="fc1:output")
    old = model._plans["fc1:output"]
    model.module.fc1.weight = nn.Parameter(torch.randn_like(model.module.fc1.weight))
    run = model.run(x, cache="fc1:output")
    assert torch.equal(run.cache["fc1:output"], model.module.fc1(x))
    assert model._plans["fc1:output"] is not old


def test_hooks_are_removed_when_the_forward_raises():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            self.fc(x)
            raise RuntimeError("boom")

    model = tsi.wrap(Boom(), adapter=None)
    for spec in ("fc:output", ["fc:output", "fc:input"]):
        with pytest.raises(RuntimeError, match="boom"):
            model.run(torch.randn(1, 4), cache=spec)
        assert_no_hooks(model.module)


def test_another_threads_forward_is_never_recorded():
    """While one thread's lean run has its hook on a module, a second thread runs the module directly; the
    first run records only its own input's activation."""
    gate, go = threading.Event(), threading.Event()

    class Slow(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            out = self.fc(x)
            if x[0, 0] == 1:  # the lean run: hold its hooks in place while the other thread runs
                gate.set()
                go.wait(5)
            return out

    model = tsi.wrap(Slow(), adapter=None)
    mine, other = torch.ones(1, 4), torch.zeros(1, 4)
    got = {}

    def lean():
        got["run"] = model.run(mine, cache="fc:output")

    t = threading.Thread(target=lean)
    t.start()
    assert gate.wait(5)
    model.module(other)  # a second forward through the hooked module, in this thread
    go.set()
    t.join(5)
    assert torch.equal(got["run"].cache["fc:output"], model.module.fc(mine))
    assert_no_hooks(model.module)


def test_specs_the_lean_run_cannot_take_use_the_general_path():
    model = tsi.wrap(TinyMLP(), adapter=None)
    x = torch.randn(2, 16)
    run = model.run(x, cache=["fc1:output", "fc2:input", "fc1:output"])  # a list, with a repeat
    assert set(run.cache) == {"fc1:output", "fc2:input"}
    assert torch.equal(run.cache["fc2:input"], torch.relu(model.module.fc1(x)))
    with pytest.raises(tsi.TsiError):
        model.run(x, cache="nope:output")
    assert "nope:output" not in model._plans
