"""Known circuits: the hand-set models run their algorithm, and every tool ranks the true heads first."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.bench._check_circuit import node_scores


@pytest.mark.parametrize("name", ["prev_token", "induction"])
def test_known_circuit_runs_its_algorithm(name):
    task = tsi.bench.known_circuit(name)
    clean = task.model.run(task.clean).logits
    assert int(clean[0, -1].argmax()) == task.answer
    assert float(task.metric(clean)[0]) > float(task.metric(task.model.run(task.corrupt).logits)[0]) + 1.0
    if name == "prev_token":  # every position predicts the token before it
        assert clean[0, 1:].argmax(-1).tolist() == task.clean[0, :-1].tolist()
    assert task.circuit <= set(task.nodes) and len(task.nodes) == 10
    assert "blocks.1.attn.z" in task.model.sites("blocks.*.attn.z")


def test_tools_rank_true_components_first():
    task = tsi.bench.known_circuit("induction")
    for method, truth in (("activation", task.circuit), ("attribution", task.circuit), ("dla", {"a1.h0"})):
        scores = node_scores(task, method)
        assert set(scores) == set(task.nodes)
        assert tsi.bench.auroc(scores, truth) == 1.0, (method, scores)


def test_ablating_the_circuit_breaks_it_and_decoys_do_not():
    task = tsi.bench.known_circuit("induction")
    base = float(task.metric(task.model.run(task.clean).logits)[0])
    for head, big in ((0, True), (1, False), (2, False), (3, False)):
        out = task.model.run(task.clean, interventions={"blocks.1.attn.z": tsi.Ablate("zero", heads=[head])})
        drop = base - float(task.metric(out.logits)[0])
        assert (drop > 0.5 * base) == big, (head, drop, base)
    with pytest.raises(tsi.InputError, match="unknown known circuit"):
        tsi.bench.known_circuit("sorting")
    assert torch.equal(tsi.bench.known_circuit("induction").clean, task.clean)  # deterministic


def test_planted_concept_is_found_and_steers():
    from torch_shard_interpret.bench import _check_concept
    from torch_shard_interpret.bench._scoreboard import row_passes

    rows = _check_concept.checks(quick=True)
    assert len(rows) == 4
    for r in rows:
        assert row_passes(r["value"], r["threshold"], r["higher_is_better"]), r
