"""Probes on the embedded SmolLM2-135M: cities vs people.

96 sentences from 12 templates shared by both classes (so no template word tells them apart; only the
entity does), read at the last token (the final punctuation), 72 train / 24 validation, l2=1e-2.
Measured (seed 0), validation accuracy / control accuracy:

    layer 0  0.92 / 0.71     layer 9   0.92 / 0.54    layer 18  0.96 / 0.46    layer 27  0.96 / 0.50
    layer 3  0.92 / 0.46     layer 12  0.92 / 0.67    layer 21  0.96 / 0.50    layer 29  0.92 / 0.50
    layer 6  0.92 / 0.62     layer 15  0.92 / 0.58    layer 24  0.96 / 0.50

(every layer 0.92-0.96; control 0.46-0.71, mean ~0.53; chance 0.5). With position="mean" middle layers
reach 0.92-1.00.
"""

from __future__ import annotations

import pytest

import torch_shard_interpret as tsi
from _models import embedded_model

TEMPLATES = [
    "{} is famous all over the world.",
    "Many people have heard of {}.",
    "I read a long article about {} yesterday.",
    "{} was in the news again this morning.",
    "We spent the whole evening talking about {}.",
    "My grandmother often told stories about {}.",
    "Have you ever been curious about {}?",
    "The documentary about {} was surprisingly good.",
    "Nobody expected {} to become so well known.",
    "There is a new book about {} in the library.",
    "Last summer my friends kept mentioning {}.",
    "Few things are as interesting as {}.",
]
CITIES = ["Paris", "Tokyo", "London", "Berlin", "Madrid", "Rome", "Cairo", "Sydney", "Chicago", "Moscow",
          "Toronto", "Mumbai", "Istanbul", "Vienna", "Lisbon", "Seoul"]  # fmt: skip
PEOPLE = ["Albert Einstein", "Marie Curie", "Isaac Newton", "Taylor Swift", "Barack Obama", "Leonardo da Vinci",
          "William Shakespeare", "Serena Williams", "Nelson Mandela", "Charles Darwin", "Frida Kahlo", "Mozart",
          "Napoleon", "Oprah Winfrey", "Pablo Picasso", "Ada Lovelace"]  # fmt: skip


def dataset() -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for i, template in enumerate(TEMPLATES):
        for j in range(4):
            k = (4 * i + j) % 16
            texts += [template.format(CITIES[k]), template.format(PEOPLE[k])]
            labels += ["city", "person"]
    return texts, labels


@pytest.fixture(scope="module")
def model():
    return embedded_model()


def test_probe_separates_cities_from_people_in_middle_layers(model):
    texts, labels = dataset()
    assert len(texts) == 96 and labels.count("city") == 48
    sites = [f"blocks.{i}.resid_post" for i in range(0, 30, 3)] + ["blocks.29.resid_post"]
    res = tsi.probes.fit(model, texts, labels, sites=sites, position=-1, batch_size=48)
    for site, r in res.items():
        print(
            f"{site:22s} acc {r.accuracy:.3f} control {r.control_accuracy:.3f} selectivity {r.selectivity:.3f}"
        )
    middle = [res[f"blocks.{i}.resid_post"] for i in (9, 12, 15, 18, 21)]
    assert all(r.accuracy >= 0.875 for r in middle)  # at most 3 of 24 wrong; measured 0.92-0.96
    assert sum(r.accuracy for r in middle) / len(middle) > 0.9
    controls = [r.control_accuracy for r in res.values()]
    assert sum(controls) / len(controls) < 0.7  # near chance (0.5); measured mean ~0.53
    assert all(r.selectivity > 0.2 for r in middle)
    assert res["blocks.15.resid_post"].chance == 0.5
    assert "blocks.15.resid_post" in res.to_html()
