"""A run without logits is an InputError naming the technique that needed them, not a TypeError on None."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torch_shard_interpret as tsi
from torch_shard_interpret.core._result import logits_of
from torch_shard_interpret.serve import _specs
from torch_shard_interpret.testing import TinyMLP


class _Features(nn.Module):
    """Returns a dict with no ``logits`` key, so a run has no logits."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"features": self.fc(x)}


def test_logits_of_returns_the_run_logits():
    mlp = TinyMLP().eval()
    x = torch.randn(2, 16)
    run = tsi.wrap(mlp).run(x)
    assert torch.equal(logits_of(run, "a test"), mlp(x))


@pytest.mark.parametrize("how", ["no logits in the output", "return_logits=False"])
def test_a_run_without_logits_names_who_needed_them(how):
    if how == "return_logits=False":
        run = tsi.wrap(TinyMLP()).run(torch.randn(2, 16), cache="fc1:output", return_logits=False)
    else:
        run = tsi.wrap(_Features()).run(torch.randn(2, 4))
    assert run.logits is None
    with pytest.raises(tsi.InputError, match=r"^path patching needs the model's logits.*\.logits"):
        logits_of(run, "path patching")


def test_serve_integer_null_means_the_default_and_bad_values_are_named():
    assert _specs.integer({"top_k": None}, "top_k", 5, 1, 50) == 5
    assert _specs.integer({}, "top_k", 5, 1, 50) == 5
    assert _specs.integer({"top_k": 7}, "top_k", 5, 1, 50) == 7
    with pytest.raises(_specs.RequestError, match="'top_k' must be between 1 and 50, not 51"):
        _specs.integer({"top_k": 51}, "top_k", 5, 1, 50)
    with pytest.raises(_specs.RequestError, match="'top_k' must be an integer, not a boolean"):
        _specs.integer({"top_k": True}, "top_k", 5, 1, 50)
