"""Patching on the embedded SmolLM2-135M: the indirect-object-identification (IOI) behaviour.

Clean "When Mary and John went to the store, John gave a drink to" -> " Mary"; the corrupt prompt swaps
the names of the first clause and the repeated name, so it prefers " John". Both are 14 tokens; the names
sit at positions 1, 3 and 9. Measured (fp32, CPU): clean metric +6.12, corrupt -6.47; denoising
``resid_pre`` restores ~0.74 at position 1 and ~0.88 at position 9 in the early layers, and ~0.85-0.94 at
the final position from layer 24 on; attribution vs exact patching correlate at 0.74 over the full 30x14
grid.
"""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from _models import embedded_model

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When John and Mary went to the store, Mary gave a drink to"
NAMES = {1, 3, 9}
LAYERS = [0, 1, 2, 3, 5, 8, 11, 14, 17, 20, 23, 25, 27, 29]  # a subset keeps the suite quick


@pytest.fixture(scope="module")
def model():
    return embedded_model()


@pytest.fixture(scope="module")
def metric(model):
    mary, john = model.token_id(" Mary"), model.token_id(" John")
    return lambda logits: logits[:, -1, mary] - logits[:, -1, john]


@pytest.fixture(scope="module")
def exact(model, metric):
    sites = [f"blocks.{i}.resid_pre" for i in LAYERS]
    return tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, sites=sites, progress=False)


def test_prompts_align(model):
    clean, corrupt = model.to_str_tokens(CLEAN), model.to_str_tokens(CORRUPT)
    assert len(clean) == len(corrupt) == 14
    assert {i for i, (a, b) in enumerate(zip(clean, corrupt, strict=True)) if a != b} == NAMES


def test_ioi_patching_localises_names_early_and_the_answer_late(exact):
    assert exact.clean_metric > 3 and exact.corrupt_metric < -3
    eff = exact.effects  # [14 layers, 14 positions]
    last = eff.shape[1] - 1
    for row, layer in enumerate(LAYERS):
        top = int(eff[row].abs().argmax())
        if layer <= 8:  # early: the information sits at the names
            assert top in NAMES, (layer, eff[row])
            assert eff[row, 9] > 0.6 and eff[row, last].abs() < 0.1
        if layer >= 25:  # late: it has moved to the final position
            assert top == last, (layer, eff[row])
            assert eff[row, last] > 0.7 and eff[row, sorted(NAMES)].abs().max() < 0.3
    others = [p for p in range(last) if p not in NAMES]
    assert eff[: LAYERS.index(8) + 1, others].abs().max() < 0.1  # unchanged tokens matter little early on
    assert (exact.raw[:, 0] == 0).all()  # the shared first token cannot change anything


def test_attribution_patching_tracks_exact_patching(model, metric, exact):
    est = tsi.patching.attribution_patching(model, CLEAN, CORRUPT, metric, sites=exact.sites)
    assert est.clean_metric == pytest.approx(exact.clean_metric, abs=1e-3)
    corr = est.correlation(exact)
    assert corr > 0.5, corr  # measured 0.74 on this subset's full-grid counterpart
    # Late layers, final position: the linear estimate is close there.
    assert est.effects[-1, -1] == pytest.approx(float(exact.effects[-1, -1]), abs=0.2)


def test_batched_equals_single_forwards_on_a_few_cells(model, metric, exact):
    clean = model.run(CLEAN, cache="blocks.*.resid_pre")
    for layer, pos in [(1, 9), (14, 1), (29, 13)]:
        out = model.run(
            CORRUPT, interventions={f"blocks.{layer}.resid_pre": tsi.Patch(clean, positions=[pos])}
        )
        got = float(exact.patched_metric[LAYERS.index(layer), pos])
        assert got == pytest.approx(float(metric(out.logits)[0]), abs=2e-3)
    assert torch.isfinite(exact.effects).all()
