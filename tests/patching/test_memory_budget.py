"""``memory_budget`` of batched activation patching: the rows per forward come from the budget, and the tensors
the run allocates stay within it (measured with the profiler's memory events, not timed)."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import torch_shard_interpret as tsi
from torch_shard_interpret.patching._common import parse_bytes
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

CLEAN = "when mary and john went to the store , john gave a drink to"
CORRUPT = "when john and mary went to the store , mary gave a drink to"


@pytest.fixture(scope="module")
def model():
    return tsi.wrap(tiny_hf_model("llama", seed=1), tiny_tokenizer())


def _patch_measured(model, budget):
    """Run the patching; return the result, the rows of every block-0 call, and the peak of live tensor bytes."""
    mary, john = model.token_id("mary"), model.token_id("john")
    rows: list[int] = []
    layer = model.module.model.layers[0]
    handle = layer.register_forward_pre_hook(lambda mod, args: rows.append(int(args[0].shape[0])))
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            res = tsi.patching.activation_patching(
                model, CLEAN, CORRUPT, lambda lg: lg[:, -1, mary] - lg[:, -1, john],
                sites="blocks.*.resid_pre", memory_budget=budget, progress=False,
            )  # fmt: skip
    finally:
        handle.remove()
    live = peak = 0
    for ev in sorted(prof.events(), key=lambda ev: ev.time_range.start):  # + allocations, - frees
        live += ev.self_cpu_memory_usage
        peak = max(peak, live)
    return res, rows, peak


def test_chunking_honours_the_memory_budget(model):
    default, _, _ = _patch_measured(model, None)
    ks = []
    for budget in ("200KiB", "1MiB"):
        res, rows, peak = _patch_measured(model, budget)
        k = res.info["batch_size"]
        ks.append(k)
        assert 1 <= k < default.info["batch_size"]  # the budget, not the cap, sets the rows
        assert rows and max(rows) <= k  # no forward holds more rows than the budget allows
        assert 0 < peak <= parse_bytes(budget), f"{peak} bytes allocated under a {budget} budget"
        torch.testing.assert_close(res.effects, default.effects, atol=1e-4, rtol=1e-4)
    assert ks[0] < ks[1]  # a larger budget, more rows per forward
