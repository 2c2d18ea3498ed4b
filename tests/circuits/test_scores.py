"""EAP, EAP-IG and exact edge patching against hand-written hooks, and recovery of a known circuit."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.circuits._toy import auroc, toy_circuit

from ._manual import edge_metric

EDGES = [
    "input->m1",
    "a0.h2->logits",
    "a0.h1->a1.h3<q>",
    "m0->a1.kv1<k>",
    "input->a0.kv0<v>",
    "a0.h0->m0",
    "m1->logits",
]


@pytest.fixture(scope="module")
def tiny():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    cfg = LlamaConfig(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        initializer_range=0.3,
    )
    module = LlamaForCausalLM(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    clean, corrupt = torch.randint(0, 40, (3, 6), generator=gen), torch.randint(0, 40, (3, 6), generator=gen)

    def metric(logits):
        return logits[:, -1, 1] - logits[:, -1, 2]

    return module, clean, corrupt, metric


def test_graph_shapes_match_mib():
    g = tsi.circuits.Graph(12, 12, 12)  # GPT-2 small: MIB's file has 158 nodes and 32,491 edges
    assert (len(g.nodes), len(g.edges)) == (158, 32491)
    assert "input->a0.h1<q>" in g.index and "a3.h1->m3" in g.index
    assert "a3.h1->a3.h2<q>" not in g.index and "m3->a3.h0<k>" not in g.index
    par = tsi.circuits.Graph(2, 2, 2, parallel=True)
    assert "a1.h0->m1" not in par.index and "a0.h0->m1" in par.index
    gqa = tsi.circuits.Graph(1, 4, 2)
    assert "input->a0.kv1<k>" in gqa.index and "input->a0.h3<k>" not in gqa.index


def test_eap_is_the_linear_approximation(tiny):
    module, clean, corrupt, metric = tiny
    model = tsi.wrap(module)
    scored = tsi.circuits.attribute(model, clean, corrupt, metric, method="eap", progress=False)
    for edge in EDGES:
        eps = torch.zeros((), requires_grad=True)
        (slope,) = torch.autograd.grad(edge_metric(module, clean, corrupt, metric, edge, eps), eps)
        assert scored.scores[edge] == pytest.approx(float(slope), rel=1e-3, abs=1e-5), edge
    assert scored.info["forwards"] == 2 and scored.info["backwards"] == 1


def test_exact_patching_equals_manual_hooks(tiny):
    module, clean, corrupt, metric = tiny
    model = tsi.wrap(module)
    scored = tsi.circuits.attribute(
        model, clean, corrupt, metric, method="patching", edges=EDGES, progress=False
    )
    with torch.no_grad():
        base = float(metric(module(clean).logits).mean())
        for edge in EDGES:
            manual = float(edge_metric(module, clean, corrupt, metric, edge, 1.0)) - base
            assert scored.scores[edge] == pytest.approx(manual, rel=1e-3, abs=1e-5), edge
    assert torch.isnan(scored.values).sum() == len(scored.graph.edges) - len(EDGES)


def test_eap_ig_one_step_is_eap_and_steps_change_it(tiny):
    module, clean, corrupt, metric = tiny
    model = tsi.wrap(module)
    eap = tsi.circuits.attribute(model, clean, corrupt, metric, method="eap", progress=False).values
    for ig in ("inputs", "activations"):
        one = tsi.circuits.attribute(
            model, clean, corrupt, metric, method="eap-ig", ig=ig, steps=1, progress=False
        )
        torch.testing.assert_close(one.values, eap, rtol=1e-4, atol=1e-6)
        many = tsi.circuits.attribute(
            model, clean, corrupt, metric, method="eap-ig", ig=ig, steps=4, progress=False
        )
        assert not torch.allclose(many.values, eap, rtol=1e-3, atol=1e-5)
        assert many.method == f"eap-ig-{ig}" and many.info["steps"] == 4


def test_known_circuit_recovered():
    task = toy_circuit(0)
    for method in ("eap", "eap-ig", "patching"):
        scored = tsi.circuits.attribute(
            task.model, task.clean, task.corrupt, task.metric, method=method, progress=False
        )
        truth = torch.tensor([e in task.edges for e in scored.graph.edges])
        assert auroc(scored.values, truth) >= 0.95, method
        top = scored.top(n=len(task.edges))
        assert set(top.edges) == set(task.edges), method


def test_fused_qkv_gpt2_exact_equals_eap_sign():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    module = GPT2LMHeadModel(GPT2Config(vocab_size=30, n_embd=16, n_layer=2, n_head=2, n_positions=16)).eval()
    model = tsi.wrap(module)
    clean, corrupt = torch.randint(0, 30, (2, 5)), torch.randint(0, 30, (2, 5))

    def metric(logits):
        return logits[:, -1, 1] - logits[:, -1, 2]

    g = tsi.circuits.graph(model)
    eap = tsi.circuits.attribute(model, clean, corrupt, metric, method="eap", progress=False)
    exact = tsi.circuits.attribute(model, clean, corrupt, metric, method="patching", progress=False)
    assert len(g.edges) == len(eap.values) and not torch.isnan(exact.values).any()
    # tiny perturbations: the first-order estimate tracks the exact effect
    small = exact.values.abs() < exact.values.abs().quantile(0.5)
    assert torch.corrcoef(torch.stack([eap.values[small], exact.values[small]]))[0, 1] > 0.5


def test_bad_inputs_raise_clear_errors(tiny):
    module, clean, corrupt, metric = tiny
    model = tsi.wrap(module)
    with pytest.raises(tsi.circuits.CircuitError, match="method"):
        tsi.circuits.attribute(model, clean, corrupt, metric, method="magic")
    with pytest.raises(tsi.circuits.CircuitError, match="same length"):
        tsi.circuits.attribute(model, clean, corrupt[:, :4], metric, method="eap")
    with pytest.raises(tsi.circuits.CircuitError, match="shape"):
        tsi.circuits.attribute(
            model, clean, corrupt, lambda lg: lg[0, -1, :2], method="patching", edges=EDGES[:1]
        )


def test_per_position_scores_sum_to_the_edge_scores_and_vanish_before_the_first_change(tiny):
    module, clean, corrupt, metric = tiny
    corrupt = clean.clone()
    corrupt[:, 3:] = (clean[:, 3:] + 7) % 40  # the pair differs from position 3 on
    model = tsi.wrap(module)
    scored = tsi.circuits.attribute(
        model, clean, corrupt, metric, method="eap", per_position=True, progress=False
    )
    pos = scored.info["positions"]  # [E, positions]
    assert pos.shape == (len(scored.graph.edges), clean.shape[1])
    torch.testing.assert_close(pos.sum(dim=1), scored.values, rtol=1e-4, atol=1e-6)
    assert pos[:, :3].abs().max() < 1e-6 < pos[:, 3:].abs().max()
