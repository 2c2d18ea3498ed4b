"""Faithfulness, curves, isolation, choosing circuits and MIB circuit JSON."""

from __future__ import annotations

import json

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.circuits._circuit import prune_edges
from torch_shard_interpret.circuits._toy import toy_circuit


@pytest.fixture(scope="module")
def task():
    t = toy_circuit(0)
    t.scored = tsi.circuits.attribute(t.model, t.clean, t.corrupt, t.metric, method="eap-ig", progress=False)
    return t


def test_full_is_one_empty_is_zero_and_true_circuit_is_faithful(task):
    g = task.scored.graph
    args = (task.model,)
    rest = (task.clean, task.corrupt, task.metric)
    full = tsi.circuits.Circuit(g, torch.ones(len(g.edges), dtype=torch.bool))
    empty = tsi.circuits.Circuit(g, torch.zeros(len(g.edges), dtype=torch.bool))
    for ablation in ("patch", "mean", "zero"):
        f_full = tsi.circuits.faithfulness(*args, full, *rest, ablation=ablation)
        assert f_full == pytest.approx(1.0, abs=1e-5) and f_full.ablation == ablation
        assert tsi.circuits.faithfulness(*args, empty, *rest, ablation=ablation) == pytest.approx(
            0.0, abs=1e-5
        )
    f = tsi.circuits.faithfulness(*args, empty, *rest)
    corrupt_metric = float(task.metric(task.model.run(task.corrupt).logits).mean())
    assert f.empty_metric == pytest.approx(corrupt_metric, abs=1e-5)
    true = tsi.circuits.Circuit.from_edges(g, list(task.edges))
    assert tsi.circuits.faithfulness(*args, true, *rest) == pytest.approx(1.0, abs=1e-4)
    iso = tsi.circuits.isolation(*args, true, *rest)
    assert iso.alone == pytest.approx(1.0, abs=1e-4) and iso.in_context == pytest.approx(1.0, abs=1e-4)
    assert not iso.disagree
    half = tsi.circuits.Circuit.from_edges(g, ["input->logits"])
    assert tsi.circuits.faithfulness(*args, half, *rest) != pytest.approx(1.0, abs=1e-2)


def test_curve_matches_mib_definitions(task):
    curve = tsi.circuits.faithfulness_curve(task.model, task.scored, task.clean, task.corrupt, task.metric)
    assert curve.fractions[0] == 0.001 and curve.fractions[-1] == 1.0
    assert curve.values[-1] == pytest.approx(1.0, abs=1e-5)
    x, y = curve.fractions, curve.values
    area = sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1))
    assert curve.cpr == pytest.approx(area)
    dist = [abs(1 - v) for v in curve.abs_values]
    assert curve.cmd == pytest.approx(
        sum((x[i + 1] - x[i]) * (dist[i] + dist[i + 1]) / 2 for i in range(len(x) - 1))
    )
    # 10% of 82 edges holds the whole true circuit here: faithful from there on
    assert all(v == pytest.approx(1.0, abs=1e-3) for v in curve.abs_values[6:])
    assert "<svg" in curve.chart()


def test_selection_topn_threshold_greedy_and_prune(task):
    s, g = task.scored, task.scored.graph
    assert len(s.top(n=8)) == 8 and set(s.top(n=8).edges) == set(task.edges)
    assert len(s.top(frac=0.5, prune=False)) == int(0.5 * len(g.edges))
    tau = sorted(abs(v) for v in s.scores.values())[-3]
    assert all(abs(s.scores[e]) >= tau for e in s.threshold(tau, prune=False).edges)
    greedy = s.greedy(n=8)
    assert set(greedy.edges) == set(task.edges)
    # an edge into a node that reaches nothing is pruned; so is one out of a node nothing reaches
    lone = tsi.circuits.Circuit.from_edges(g, ["a0.h1->a1.h0<q>", "a1.h0->logits", "a0.h3->logits"]).mask
    kept = tsi.circuits.Circuit(g, prune_edges(g, lone)).edges
    assert kept == []
    with pytest.raises(tsi.circuits.CircuitError, match="exactly one"):
        s.top()


def test_mib_json_round_trip(task, tmp_path):
    c = task.scored.top(n=8)
    path = c.save(tmp_path / "circuit.json")
    data = json.loads(path.read_text())
    assert set(data) == {"cfg", "nodes", "edges"}
    assert data["cfg"]["n_layers"] == 2 and data["cfg"]["n_heads"] == 4
    assert data["edges"]["input->a0.h1<q>"]["in_graph"] is True
    assert set(data["edges"]["a1.h0->logits"]) == {"score", "in_graph"}
    assert data["nodes"]["a0.h1"]["in_graph"] and not data["nodes"]["a1.h0"]["in_graph"]
    back = tsi.circuits.load(path)
    assert back.edges == c.edges and back.nodes == c.nodes
    torch.testing.assert_close(back.scores, task.scored.values)
    bad = tmp_path / "bad.json"
    bad.write_text('{"nodes": {}}')
    with pytest.raises(tsi.circuits.CircuitError, match="cfg"):
        tsi.circuits.load(bad)


def test_offloaded_model_gives_the_same_scores(tmp_path):
    pytest.importorskip("accelerate")
    from transformers import AutoModelForCausalLM

    from torch_shard_interpret.testing import tiny_hf_model

    plain = tiny_hf_model("llama", num_hidden_layers=3)
    plain.save_pretrained(tmp_path / "tiny")
    device_map = {
        "model.embed_tokens": "cpu",
        "model.rotary_emb": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
        "model.layers.2": "disk",
        "model.norm": "cpu",
        "lm_head": "cpu",
    }
    sharded = AutoModelForCausalLM.from_pretrained(
        tmp_path / "tiny", device_map=device_map, offload_folder=str(tmp_path / "off")
    ).eval()
    gen = torch.Generator().manual_seed(0)
    clean, corrupt = (
        torch.randint(4, 128, (2, 5), generator=gen),
        torch.randint(4, 128, (2, 5), generator=gen),
    )

    def metric(logits):
        return logits[:, -1, 5] - logits[:, -1, 6]

    a, b = tsi.wrap(plain), tsi.wrap(sharded)
    for method in ("eap", "eap-ig"):
        sa = tsi.circuits.attribute(a, clean, corrupt, metric, method=method, progress=False)
        sb = tsi.circuits.attribute(b, clean, corrupt, metric, method=method, progress=False)
        torch.testing.assert_close(sa.values, sb.values, rtol=1e-4, atol=1e-6)
    c = sa.top(frac=0.05)
    assert tsi.circuits.faithfulness(a, c, clean, corrupt, metric) == pytest.approx(
        tsi.circuits.faithfulness(b, c, clean, corrupt, metric), abs=1e-5
    )
