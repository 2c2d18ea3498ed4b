"""Known circuits: the hand-set models run their algorithm, and every tool ranks the true heads first."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.bench._algorithmic_prompts import accuracy, sample
from torch_shard_interpret.bench._check_circuit import edge_auroc, node_scores


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
        tsi.bench.known_circuit("parity")
    assert torch.equal(tsi.bench.known_circuit("induction").clean, task.clean)  # deterministic


ALGORITHMS = ["counting", "reversal", "sorting"]


@pytest.fixture(scope="module", params=ALGORITHMS)
def algo(request):
    return tsi.bench.known_circuit(request.param)


def test_algorithm_runs_on_random_inputs(algo):
    assert accuracy(algo.model, algo.name, n=300, seed=5) == 1.0
    clean, corrupt = algo.model.run(algo.clean).logits, algo.model.run(algo.corrupt).logits
    assert int(clean[0, -1].argmax()) == algo.answer and int(corrupt[0, -1].argmax()) == algo.wrong
    assert algo.clean.shape == algo.corrupt.shape and not torch.equal(algo.clean, algo.corrupt)
    assert float(algo.metric(clean)[0]) > 1.0 > -1.0 > float(algo.metric(corrupt)[0])


def test_strong_decoys_keep_the_algorithm_and_move_the_metric(algo):
    strong = tsi.bench.known_circuit(algo.name, decoy_scale=3.0)
    assert accuracy(strong.model, algo.name, n=200, seed=6) == 1.0
    weak_out = algo.model.run(algo.clean).logits
    strong_out = strong.model.run(strong.clean).logits
    assert torch.equal(strong.clean, algo.clean) and not torch.allclose(weak_out, strong_out, atol=1e-3)
    with pytest.raises(tsi.InputError, match="decoy_scale must be a number >= 0"):
        tsi.bench.known_circuit(algo.name, decoy_scale=-1)


def test_algorithm_prompts_are_instances_of_the_task():
    g = torch.Generator().manual_seed(0)
    ids, expected = sample("counting", g)
    assert all(expected[i] == ids[1 : i + 1].count(ids[i]) for i in expected)
    for name, order in (("reversal", lambda x: x[::-1]), ("sorting", sorted)):
        ids, expected = sample(name, g)
        s = ids.index(1)  # SEP
        assert ids[s + 1 :] == order(ids[1:s]) and sorted(expected) == list(range(s, len(ids) - 1))


def test_truth_is_necessary_and_decoys_are_not(algo):
    """Resampling every decoy head and MLP at once keeps accuracy 1.0; resampling any true node breaks it."""
    heads = {(int(n[1]), int(n[4])) for n in algo.circuit if n.startswith("a")}
    decoys: dict[str, object] = {}
    for layer in range(2):
        rest = [h for h in range(4) if (layer, h) not in heads]
        decoys[f"blocks.{layer}.attn.z"] = tsi.Ablate("resample", heads=rest)
        if f"m{layer}" not in algo.circuit:
            decoys[f"blocks.{layer}.mlp.out"] = tsi.Ablate("resample")
    assert accuracy(algo.model, algo.name, n=100, interventions=decoys) == 1.0
    for node in sorted(algo.circuit):
        layer = int(node[1])
        if node.startswith("a"):
            knock = {f"blocks.{layer}.attn.z": tsi.Ablate("resample", heads=[int(node[4])])}
        else:
            knock = {f"blocks.{layer}.mlp.out": tsi.Ablate("resample")}
        assert accuracy(algo.model, algo.name, n=100, interventions=knock) < 0.7, node


def test_decoys_are_live_and_tell_clean_from_corrupt(algo):
    """The decoys compute something that differs between the prompts; only their write-out is useless."""
    sites = ["blocks.0.attn.z", "blocks.1.attn.z", "blocks.0.mlp.out", "blocks.1.mlp.out"]
    clean, corrupt = algo.model.run(algo.clean, cache=sites), algo.model.run(algo.corrupt, cache=sites)
    for layer in range(2):
        z = (
            clean.cache[f"blocks.{layer}.attn.z"] - corrupt.cache[f"blocks.{layer}.attn.z"]
        )  # [1, pos, head, d]
        for h in range(4):
            if f"a{layer}.h{h}" not in algo.circuit:
                assert float(z[0, :, h].abs().max()) > 1e-2, (algo.name, layer, h)
        if f"m{layer}" not in algo.circuit:
            out = clean.cache[f"blocks.{layer}.mlp.out"] - corrupt.cache[f"blocks.{layer}.mlp.out"]
            assert float(out.abs().max()) > 1e-2, (algo.name, layer)


def test_check_rows_pass_for_the_algorithms():
    from torch_shard_interpret.bench import _check_circuit
    from torch_shard_interpret.bench._scoreboard import row_passes

    rows = [r for r in _check_circuit.checks(quick=True) if r["task"].split(": ")[1] in ALGORITHMS]
    assert len(rows) == 12 and {r["tool"] for r in rows} == set(_check_circuit.TOOLS)
    for r in rows:
        assert row_passes(r["value"], r["threshold"], r["higher_is_better"]), r


def test_algorithm_truth_names_real_nodes_and_edges(algo):
    graph = tsi.circuits.graph(algo.model)
    assert algo.revealed <= algo.edges <= set(graph.edges)
    assert algo.circuit <= set(algo.nodes) and algo.direct <= algo.circuit
    assert {e.split("->")[0] for e in algo.edges} - {"input"} <= algo.circuit


def test_tools_rank_algorithm_circuits_first(algo):
    for method in ("activation", "attribution", "dla"):
        scores = node_scores(algo, method)
        truth = algo.direct if method == "dla" else algo.circuit
        assert tsi.bench.auroc(scores, truth) == 1.0, (algo.name, method, scores)
    scored = tsi.circuits.attribute(
        algo.model, algo.clean, algo.corrupt, algo.metric, method="eap-ig", steps=20, progress=False
    )
    assert edge_auroc(algo, scored)[0] == 1.0


def test_planted_concept_is_found_and_steers():
    from torch_shard_interpret.bench import _check_concept
    from torch_shard_interpret.bench._scoreboard import row_passes

    rows = _check_concept.checks(quick=True)
    assert len(rows) == 4
    for r in rows:
        assert row_passes(r["value"], r["threshold"], r["higher_is_better"]), r
