"""Attribution graphs: transcoders, the frozen replacement model, direct effects, pruning, scores, JSON."""

from __future__ import annotations

import json

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.circuits._ctjson import METADATA_KEYS, NODE_KEYS, QPARAMS_KEYS


def _gpt2(exact_bias_free: bool = True):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=30, n_embd=16, n_layer=2, n_head=2, n_positions=16, activation_function="relu",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    cfg._attn_implementation = "eager"
    m = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("bias") and exact_bias_free:
                p.zero_()
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                p.uniform_(0.5, 1.5)  # non-trivial norm gains
    return m


def _exact_transcoders(m):
    """A ReLU MLP is its own transcoder: W_enc = c_fc, W_dec = c_proj (4d latents)."""
    out = []
    for blk in m.transformer.h:
        t = tsi.sae.Transcoder(d_in=16, d_sae=64, kind="relu", k=None)
        with torch.no_grad():
            t.W_enc.copy_(blk.mlp.c_fc.weight)
            t.b_enc.copy_(blk.mlp.c_fc.bias)
            t.W_dec.copy_(blk.mlp.c_proj.weight)
            t.b_dec.copy_(blk.mlp.c_proj.bias)
        out.append(t)
    return out


def _hf_run(m, ids):
    """MLP inputs per layer, residual before each ln, attention patterns and logits, from plain HF hooks."""
    seen, handles = {}, []
    for i, blk in enumerate(m.transformer.h):
        handles.append(
            blk.mlp.register_forward_pre_hook(lambda mod, a, i=i: seen.__setitem__(f"mlp{i}", a[0][0]))
        )
        handles.append(
            blk.ln_1.register_forward_pre_hook(lambda mod, a, i=i: seen.__setitem__(f"pre{i}", a[0][0]))
        )
        handles.append(
            blk.ln_2.register_forward_pre_hook(lambda mod, a, i=i: seen.__setitem__(f"mid{i}", a[0][0]))
        )
    try:
        with torch.no_grad():
            out = m(ids.view(1, -1), output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    return seen, [a[0] for a in out.attentions], out.logits[0, -1]


@pytest.fixture(scope="module")
def exact():
    m = _gpt2()
    ids = torch.tensor([3, 17, 5, 9, 22, 5, 11])
    tcs = _exact_transcoders(m)
    ag = tsi.circuits.attribution_graph(tsi.wrap(m), ids, tcs)
    return m, ids, tcs, ag


@torch.no_grad()
def _pre_acts(seen, tcs, ag):
    return torch.tensor(
        [float(tcs[lay].pre_acts(seen[f"mlp{lay}"])[p, f]) for lay, p, f in ag.features.tolist()]
    )


def test_exact_transcoders_are_complete_and_edges_sum_to_targets(exact):
    m, ids, tcs, ag = exact
    s = ag.slices()
    assert ag.n_features > 0 and float(ag.adjacency[:, s["errors"]].abs().max()) == 0.0
    r, c = ag.scores()
    assert r == pytest.approx(1.0) and c == pytest.approx(1.0)
    seen, _, logits = _hf_run(m, ids)
    # bias-free model: every target is exactly the sum of its direct inputs
    F = ag.n_features
    torch.testing.assert_close(ag.adjacency[:F].sum(1), _pre_acts(seen, tcs, ag), rtol=1e-4, atol=1e-5)
    want = torch.tensor([float(logits[v] - logits.mean()) for v in ag.logit_tokens])
    torch.testing.assert_close(ag.adjacency[s["logits"]].sum(1), want, rtol=1e-4, atol=1e-5)
    assert sum(ag.logit_probs) >= 0.95 or len(ag.logit_tokens) == 10
    assert float(ag.adjacency[:, s["logits"]].abs().max()) == 0.0  # nothing reads a logit
    active = torch.stack([tcs[lay].encode(seen[f"mlp{lay}"])[p, f] for lay, p, f in ag.features.tolist()])
    assert bool((active > 0).all()) and torch.allclose(active, ag.activations)


def test_direct_effect_equals_manual_linear_path(exact):
    """Layer-0 feature -> layer-1 feature by hand: residual + frozen layer-1 attention OV, frozen LayerNorms."""
    m, ids, tcs, ag = exact
    seen, patterns, _ = _hf_run(m, ids)
    blk = m.transformer.h[1]
    d, H, dh = 16, 2, 8

    def ln_lin(ln, x_clean, delta):
        sigma = (x_clean.var(-1, unbiased=False) + ln.eps).rsqrt()
        return ln.weight * (delta - delta.mean()) * sigma

    feats = ag.features.tolist()
    checked = 0
    for t, (lt, pt, ft) in enumerate(feats):
        if lt != 1:
            continue
        for s, (ls, ps, fs) in enumerate(feats):
            if ls != 0 or ps > pt:
                continue
            write = ag.activations[s] * tcs[0].W_dec[fs]
            mid = write if ps == pt else torch.zeros(d)
            u = ln_lin(blk.ln_1, seen["pre1"][ps], write)
            for h in range(H):
                v = u @ blk.attn.c_attn.weight[:, 2 * d + h * dh : 2 * d + (h + 1) * dh]
                mid = mid + patterns[1][h, pt, ps] * (v @ blk.attn.c_proj.weight[h * dh : (h + 1) * dh])
            manual = float(ln_lin(blk.ln_2, seen["mid1"][pt], mid) @ tcs[1].W_enc[:, ft])
            assert float(ag.adjacency[t, s]) == pytest.approx(manual, rel=1e-4, abs=1e-6)
            checked += 1
    assert checked > 10
    # same layer, or a later position, never feeds a feature
    for t, (lt, pt, _) in enumerate(feats):
        for s, (ls, ps, _) in enumerate(feats):
            if ls >= lt or ps > pt:
                assert float(ag.adjacency[t, s]) == 0.0


def test_inexact_transcoders_on_llama_gqa():
    """RMSNorm, RoPE, grouped KV heads and random transcoders: errors carry the rest, the sum rule still holds."""
    from torch_shard_interpret.testing import tiny_hf_model

    module = tiny_hf_model("llama", num_hidden_layers=2)
    model = tsi.wrap(module)
    d = model.cfg.d_model
    tcs = [tsi.sae.Transcoder(d_in=d, d_sae=32, kind="relu", k=None, seed=i) for i in range(2)]
    ids = torch.tensor([5, 9, 2, 44, 7])
    ag = tsi.circuits.attribution_graph(model, ids, tcs)
    s = ag.slices()
    assert float(ag.adjacency[:, s["errors"]].abs().max()) > 0
    r, c = ag.scores()
    assert 0 < r < 1 and 0 < c < 1
    seen = {}
    hs = [
        lay.mlp.register_forward_pre_hook(lambda mod, a, i=i: seen.__setitem__(i, a[0][0]))
        for i, lay in enumerate(module.model.layers)
    ]
    try:
        with torch.no_grad():
            logits = module(ids.view(1, -1)).logits[0, -1]
    finally:
        for h in hs:
            h.remove()
    with torch.no_grad():
        pre = torch.tensor([float(tcs[lay].pre_acts(seen[lay])[p, f]) for lay, p, f in ag.features.tolist()])
    torch.testing.assert_close(ag.adjacency[: ag.n_features].sum(1), pre, rtol=1e-4, atol=1e-4)
    want = torch.tensor([float(logits[v] - logits.mean()) for v in ag.logit_tokens])
    torch.testing.assert_close(ag.adjacency[s["logits"]].sum(1), want, rtol=1e-4, atol=1e-4)
    assert model.attention == module.config._attn_implementation  # the eager switch was undone


def test_pruning_keeps_influential_connected_nodes(exact):
    _, _, _, ag = exact
    s = ag.slices()
    full = ag.prune(1.0, 1.0)
    small = ag.prune(0.5, 0.9)
    default = ag.prune()
    assert int(small.node_mask.sum()) <= int(default.node_mask.sum()) <= int(full.node_mask.sum())
    for p in (small, default):
        assert bool(p.node_mask[s["tokens"]].all()) and bool(p.node_mask[s["logits"]].all())
        for i in p.node_mask[s["features"]].nonzero().flatten().tolist():
            assert bool(p.edge_mask[i].any()) and bool(p.edge_mask[:, i].any())
        assert not bool(p.edge_mask[~p.node_mask].any()) and not bool(p.edge_mask[:, ~p.node_mask].any())
    assert int(default.edge_mask.sum()) < int((ag.adjacency != 0).sum())
    with pytest.raises(tsi.circuits.CircuitError, match="node_threshold"):
        ag.prune(0.0)


def test_circuit_tracer_json_round_trip(exact, tmp_path):
    _, ids, _, ag = exact
    path = ag.save(tmp_path / "g.json")
    data = tsi.circuits.load_attribution_graph(path)
    assert set(METADATA_KEYS) <= set(data["metadata"]) and data["metadata"]["schema_version"] == 1
    assert set(QPARAMS_KEYS) <= set(data["qParams"]) and data["metadata"]["node_threshold"] == 0.8
    assert all(set(NODE_KEYS) <= set(n) for n in data["nodes"])
    kinds = {n["feature_type"] for n in data["nodes"]}
    assert {"embedding", "logit", "cross layer transcoder"} <= kinds
    pruned = ag.prune()
    assert len(data["links"]) == int(pruned.edge_mask.sum())
    index = {n["node_id"]: i for i, n in enumerate(tsi.circuits._ctjson.node_list(ag, pruned.cumulative))}
    for link in data["links"]:
        w = float(ag.adjacency[index[link["target"]], index[link["source"]]])
        assert link["weight"] == pytest.approx(w)
    tokens = [n for n in data["nodes"] if n["feature_type"] == "embedding"]
    assert [n["node_id"] for n in tokens] == [f"E_{t}_{p}" for p, t in enumerate(ids.tolist())]
    logit = next(n for n in data["nodes"] if n["is_target_logit"])
    assert logit["node_id"] == f"3_{ag.logit_tokens[0]}_{len(ids) - 1}" and logit["clerp"].startswith(
        "Output"
    )
    feat = next(n for n in data["nodes"] if n["feature_type"] == "cross layer transcoder")
    layer, f, _ = feat["node_id"].split("_")
    a, b = int(layer), int(f)
    assert feat["feature"] == (a + b) * (a + b + 1) // 2 + b
    assert json.loads(path.read_text()) == data
    bad = tmp_path / "bad.json"
    bad.write_text('{"nodes": []}')
    with pytest.raises(tsi.circuits.CircuitError, match="metadata"):
        tsi.circuits.load_attribution_graph(bad)


def test_circuit_tracer_transcoder_files_are_transposed(exact, tmp_path):
    m, ids, tcs, ag = exact
    for i, t in enumerate(tcs):
        tsi.circuits.save_transcoder(t, tmp_path / f"layer_{i}.safetensors")
    from safetensors.torch import load_file

    raw = load_file(str(tmp_path / "layer_0.safetensors"))
    assert tuple(raw["W_enc"].shape) == (64, 16)  # circuit-tracer: [d_transcoder, d_model]
    loaded = tsi.circuits.load_transcoder(tmp_path / "layer_0.safetensors")
    torch.testing.assert_close(loaded.W_enc, tcs[0].W_enc)
    (tmp_path / "config.yaml").write_text(
        "model_kind: transcoder_set\ntranscoders:\n"
        + "".join(f"  - {{layer: {i}, filepath: layer_{i}.safetensors}}\n" for i in range(2))
    )
    again = tsi.circuits.attribution_graph(tsi.wrap(m), ids, str(tmp_path))
    torch.testing.assert_close(again.adjacency, ag.adjacency)
    sq = {k: torch.zeros(4, 4) for k in ("W_enc", "W_dec")} | {
        "b_enc": torch.zeros(4),
        "b_dec": torch.zeros(4),
    }
    from safetensors.torch import save_file

    save_file(sq, str(tmp_path / "square.safetensors"))
    with pytest.raises(tsi.circuits.CircuitError, match="ambiguous"):
        tsi.circuits.load_transcoder(tmp_path / "square.safetensors")
    with pytest.raises(tsi.circuits.CircuitError, match="every layer"):
        tsi.circuits.attribution_graph(tsi.wrap(m), ids, {0: tcs[0]})


def test_to_dict_is_the_saved_json_with_scores_and_to_html_escapes(exact, tmp_path):
    from dataclasses import replace

    _, _, _, ag = exact
    data = ag.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    saved = json.loads(ag.save(tmp_path / "tsi-graph.json").read_text())
    assert {k: v for k, v in data.items() if k != "scores"} == saved
    assert tuple(data["scores"].values()) == pytest.approx(ag.scores())
    evil = replace(ag, prompt="<script>x</script>", logit_strings=["<b>"] * len(ag.logit_tokens))
    html = evil.to_html()
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html and "&lt;b&gt;" in html
    assert f"{ag.n_features}</td>" in html
