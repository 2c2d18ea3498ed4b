"""Known circuits: EAP-IG, exact edge patching and ACDC recover the true edges (AUROC >= 0.95); ACDC's own
contract (threshold, batching, the circuit it keeps) on the hand-built toy and the known-circuit models."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.circuits._bench import KNOWN_METHODS, REVEALED, known_auroc
from torch_shard_interpret.circuits._toy import auroc, toy_circuit


@pytest.fixture(scope="module", params=["prev_token", "induction"])
def known(request):
    return tsi.bench.known_circuit(request.param)


def test_revealed_edges_are_true_edges(known):
    assert REVEALED[known.name] <= known.edges


@pytest.mark.parametrize(("method", "kw"), KNOWN_METHODS, ids=[m for m, _ in KNOWN_METHODS])
def test_methods_recover_known_circuit(known, method, kw):
    scored = tsi.circuits.attribute(
        known.model, known.clean, known.corrupt, known.metric, method=method, progress=False, **kw
    )
    assert known_auroc(known, scored) >= 0.95, (method, known.name)
    top = {scored.graph.edges[i] for i in torch.topk(scored.values.abs(), len(REVEALED[known.name])).indices}
    assert top == REVEALED[known.name], (method, top)


def test_acdc_keeps_exactly_the_revealed_circuit_with_few_forwards(known):
    res = tsi.circuits.acdc(known.model, known.clean, known.corrupt, known.metric, progress=False)
    assert set(res.edges) == REVEALED[known.name]
    assert isinstance(res, tsi.circuits.ScoredGraph) and res.method == "acdc"
    assert res.info["forwards"] * 5 <= res.info["one_per_edge"], res.info
    assert res.info["rows"] < res.info["one_per_edge"]
    f = tsi.circuits.faithfulness(known.model, res, known.clean, known.corrupt, known.metric)
    assert f == pytest.approx(res.info["faithfulness"], abs=1e-4) and f > 0.9


def test_acdc_on_toy_matches_threshold_and_true_edges():
    task = toy_circuit(0)
    res = tsi.circuits.attribute(
        task.model, task.clean, task.corrupt, task.metric, method="acdc", progress=False
    )
    assert set(res.edges) == set(task.edges)
    truth = torch.tensor([e in task.edges for e in res.graph.edges])
    assert auroc(res.values, truth) == 1.0
    tau = res.info["threshold"]
    assert tau == pytest.approx(0.01 * abs(res.info["m_full"] - res.info["m_empty"]))
    assert res.threshold(tau, prune=False).edges == res.edges
    assert all(abs(res.scores[e]) >= tau for e in res.edges)
    # a huge threshold keeps nothing; zero keeps every edge that was tested
    none = tsi.circuits.acdc(task.model, task.clean, task.corrupt, task.metric, threshold=1e9, progress=False)
    assert len(none) == 0 and none.info["faithfulness"] == pytest.approx(0.0, abs=1e-5)
    every = tsi.circuits.acdc(
        task.model, task.clean, task.corrupt, task.metric, threshold=0.0, progress=False
    )
    assert len(every) == len(every.graph.edges)
    with pytest.raises(tsi.circuits.CircuitError, match="threshold"):
        tsi.circuits.acdc(task.model, task.clean, task.corrupt, task.metric, threshold=-1.0)


def test_acdc_scores_are_exact_patching_on_the_first_stage():
    """The logits stage patches each edge alone into the full model: exactly what method='patching' does."""
    task = toy_circuit(1)
    res = tsi.circuits.acdc(task.model, task.clean, task.corrupt, task.metric, progress=False)
    g = res.graph
    into_logits = [e for e in g.edges if e.endswith("->logits")]
    exact = tsi.circuits.attribute(
        task.model,
        task.clean,
        task.corrupt,
        task.metric,
        method="patching",
        edges=into_logits,
        progress=False,
    )
    for e in into_logits:
        assert res.scores[e] == pytest.approx(exact.scores[e], rel=1e-4, abs=1e-5), e


def test_mib_json_of_acdc_circuit(tmp_path):
    task = toy_circuit(0)
    res = tsi.circuits.acdc(task.model, task.clean, task.corrupt, task.metric, progress=False)
    back = tsi.circuits.load(res.save(tmp_path / "c.json"))
    assert back.edges == res.edges
