"""The same API on the embedded SmolLM2-135M: real behaviour, not only shapes."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from _models import embedded_model

CLEAN = "The Eiffel Tower is located in the city of"
CORRUPT = "The Colosseum is located in the city of"


@pytest.fixture(scope="module")
def model():
    return embedded_model()


def test_cache_and_answer(model):
    run = model.run(CLEAN, cache="blocks.*.resid_post")
    assert model.cfg.n_layers == 30 and model.cfg.d_model == 576
    assert run.cache.stack("blocks.*.resid_post").shape[:2] == (30, 1)
    assert run.logits[0, -1].argmax().item() == model.token_id(" Paris")
    with torch.no_grad():
        plain = model.module(input_ids=run.tokens).logits
    assert torch.equal(plain, run.logits)


def test_patching_the_subject_moves_paris_to_rome(model):
    paris, rome = model.token_id(" Paris"), model.token_id(" Rome")
    clean = model.run(CLEAN, cache="blocks.*.resid_post")
    corrupt = model.run(CORRUPT, cache="blocks.*.resid_post")
    assert clean.tokens.shape == corrupt.tokens.shape  # same length: patching whole sites is possible
    diff = lambda lg: (lg[0, -1, paris] - lg[0, -1, rome]).item()  # noqa: E731
    assert diff(clean.logits) > 0 > diff(corrupt.logits)
    # The whole residual stream at a middle layer carries the answer...
    patched = model.run(CLEAN, interventions={"blocks.15.resid_post": tsi.Patch(corrupt)})
    assert diff(patched.logits) < 0
    # ...and at the last position only, late enough, it does too.
    last = model.run(CLEAN, interventions={"blocks.25.resid_post": tsi.Patch(corrupt, positions=-1)})
    assert diff(last.logits) < 0


def test_steering_changes_generation_and_hooks_go(model):
    plain = model.generate(CLEAN, max_new_tokens=6)
    assert plain.startswith(" Paris")
    site = "blocks.12.resid_post"
    rome = model.run(CORRUPT, cache=site).cache[site][0]
    paris = model.run(CLEAN, cache=site).cache[site][0]
    # The mean difference over positions (both prompts have 10 tokens), added at every position.
    with model.intervene({site: tsi.Add((rome - paris).mean(0), scale=2.0)}):
        steered = model.generate(CLEAN, max_new_tokens=6)
    assert steered != plain
    assert "Rome" in steered
