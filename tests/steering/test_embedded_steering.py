"""Steering the embedded SmolLM2-135M: real behaviour, not only shapes.

Measured on this model (greedy, 12 new tokens, 4 prompts, vector from 6 contrast pairs at
blocks.6.resid_post, position="mean", |vector| ~ 8.7):

    scale   judge (pos - neg logit)   perplexity under the unsteered model
    -4      1.44                      6.24
    0       2.54                      3.19
    +4      3.36                      6.71

The judge is the UNSTEERED model reading the steered continuation alone (without the prompt): the mean over
its positions of the mean logit of " good"/" great"/" happy"/" love"/" wonderful" minus that of " bad"/" terrible"/" sad"/" hate"/
" awful". So the text itself became more positive (or negative), not only the steered model's logits.
"""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from _models import embedded_model
from torch_shard_interpret.steering import SteeringVector, sweep
from torch_shard_interpret.testing import assert_no_hooks

POSITIVE = [
    "I love this, it is wonderful.",
    "What a great day, I am so happy.",
    "This is excellent and I feel fantastic.",
    "The food was delicious and the staff were kind.",
    "I am thrilled with the amazing results.",
    "Everything went perfectly today.",
]
NEGATIVE = [
    "I hate this, it is awful.",
    "What a terrible day, I am so sad.",
    "This is horrible and I feel miserable.",
    "The food was disgusting and the staff were rude.",
    "I am upset with the awful results.",
    "Everything went wrong today.",
]
PROMPTS = ["I think that", "The movie was", "Today I feel", "My neighbour is"]
GOOD = [" good", " great", " happy", " love", " wonderful"]
BAD = [" bad", " terrible", " sad", " hate", " awful"]


@pytest.fixture(scope="module")
def model():
    return embedded_model()


def test_sentiment_vector_shifts_generations_and_stays_fluent(model):
    good = [model.token_id(w) for w in GOOD]
    bad = [model.token_id(w) for w in BAD]

    def judge(text: str) -> float:
        # the unsteered model (sweep calls metrics outside the steering context) reads the continuation
        logits = model.run(text).logits[0]  # [pos, d_vocab]
        return float((logits[:, good].mean(-1) - logits[:, bad].mean(-1)).mean())

    sv = SteeringVector.from_contrast(model, POSITIVE, NEGATIVE, site="blocks.6.resid_post", position="mean")
    res = sweep(model, sv, PROMPTS, scales=[-4.0, 4.0], metric=judge, max_new_tokens=12, progress=False)
    neg, pos = float(res.metric[0, 0]), float(res.metric[0, 1])
    base = res.baseline_metric
    print(f"judge: -4 {neg:.2f}  0 {base:.2f}  +4 {pos:.2f}; perplexity {res.perplexity.tolist()} "
          f"baseline {res.baseline_perplexity:.2f}")  # fmt: skip
    assert pos > base + 0.5 and neg < base - 0.5  # measured +0.82 and -1.10
    assert pos - neg > 1.5  # measured 1.92
    # Fluency at moderate strength: within 3x the unsteered text's perplexity (measured 6.2-6.7 vs 3.2).
    assert res.baseline_perplexity < 6
    assert float(res.perplexity.max()) < 3 * res.baseline_perplexity
    assert res.best(max_perplexity=3 * res.baseline_perplexity).scale == 4.0
    assert_no_hooks(model.module)


def test_from_pair_reproduces_the_rome_steering(model):
    # ActAdd with one pair at matched positions (both prompts have 10 tokens): the documented example.
    clean = "The Eiffel Tower is located in the city of"
    sv = SteeringVector.from_pair(
        model, "The Colosseum is located in the city of", clean, site="blocks.12.resid_post"
    )
    assert sv.metadata["matched_positions"] == 10
    with sv.apply(model, scale=2.0):
        steered = model.generate(clean, max_new_tokens=4)
    assert "Rome" in steered
    assert model.generate(clean, max_new_tokens=2).startswith(" Paris")


def test_save_load_steers_the_same(model, tmp_path):
    sv = SteeringVector.from_contrast(
        model, POSITIVE[:2], NEGATIVE[:2], site="blocks.6.resid_post", position="mean"
    )
    back = SteeringVector.load(sv.save(tmp_path / "sentiment.safetensors"))
    a = model.run("Today I feel", interventions={sv.site: sv.intervention(4.0)}).logits
    b = model.run("Today I feel", interventions={back.site: back.intervention(4.0)}).logits
    assert torch.equal(a, b)
    assert isinstance(back.intervention(1.0), tsi.Add)
