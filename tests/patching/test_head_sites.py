"""Per-head patching of attn.q, k, v, pattern and z, and the layer x position x head grid, on a GQA LLaMA
(2 query heads per key/value head) and GPT-2: batched results equal one ``model.run`` per patch.

The reference for ``attn.pattern`` takes another route than the batched code: it sets the scores to the
log of the source run's pattern (``softmax(log p) = p``), and the test checks that the patched run's
cached pattern is then the source pattern at the patched head and positions.
"""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.patching import PatchingError, PatchResult
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

CLEAN = "when mary and john went to the store , john gave a drink to"
CORRUPT = "when john and mary went to the store , mary gave a drink to"
POSITIONS = [1, 3, 9, -1]  # names swapped at 1, 3 and 9; the last position reads them
PARTS = ["q", "k", "v", "pattern", "z"]


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request):
    m = tsi.wrap(tiny_hf_model(request.param, seed=1), tiny_tokenizer())
    with pytest.warns(UserWarning, match="eager"):
        m.set_attention("eager")
    return m


@pytest.fixture(scope="module")
def metric(model):
    mary, john = model.token_id("mary"), model.token_id("john")
    return lambda logits: logits[:, -1, mary] - logits[:, -1, john]


def _groups(model, part):
    """The query heads of each head column, written from the config: KV groups for k/v under GQA."""
    n, n_kv = model.cfg.n_heads, model.cfg.n_kv_heads or model.cfg.n_heads
    if part in ("k", "v") and n_kv < n:
        g = n // n_kv
        return [list(range(i * g, (i + 1) * g)) for i in range(n_kv)]
    return [[h] for h in range(n)]


def _patch(model, source, part, layer, heads, positions):
    """One intervention that patches ``heads`` at ``positions`` of block ``layer``'s ``attn.part``."""
    if part != "pattern":
        site = f"blocks.{layer}.attn.{part}"
        return {site: tsi.Patch(source.cache[site], heads=heads, positions=positions)}
    want = source.cache[f"blocks.{layer}.attn.pattern"]  # [1, n_heads, q_pos, k_pos]

    def set_pattern(scores, ctx):
        out = scores.clone()
        idx = torch.tensor(heads)[:, None], torch.tensor(positions)[None, :]
        out[:, idx[0], idx[1]] = want[:, idx[0], idx[1]].log().to(scores.dtype)
        return out

    return {f"blocks.{layer}.attn.scores": tsi.Fn(set_pattern)}


def _loop(model, metric, part, groups, position_cols):
    """``[n_layers, len(position_cols), len(groups)]`` metric of one forward per (layer, positions, heads)."""
    names = [f"blocks.{i}.attn.{part}" for i in range(model.cfg.n_layers)]
    clean = model.run(CLEAN, cache=names)
    out = torch.zeros(model.cfg.n_layers, len(position_cols), len(groups))
    for i in range(model.cfg.n_layers):
        for p, ps in enumerate(position_cols):
            for h, heads in enumerate(groups):
                run = model.run(CORRUPT, interventions=_patch(model, clean, part, i, heads, ps))
                out[i, p, h] = float(metric(run.logits)[0])
    return out


@pytest.mark.parametrize("part", PARTS)
def test_heads_and_grid_equal_the_loop(model, metric, part):
    n_pos = model.to_tokens(CLEAN).shape[1]
    groups = _groups(model, part)
    sites = f"blocks.*.attn.{part}"
    grid = tsi.patching.activation_patching(
        model, CLEAN, CORRUPT, metric, sites=sites, heads="grid", positions=POSITIONS, progress=False
    )
    cols = [[p % n_pos] for p in POSITIONS]
    want = _loop(model, metric, part, groups, cols)
    assert grid.effects.shape == (model.cfg.n_layers, len(POSITIONS), len(groups)) and grid.is_grid
    torch.testing.assert_close(grid.patched_metric, want, atol=1e-4, rtol=1e-4)
    assert grid.positions == cols and grid.heads == list(range(len(groups)))
    assert grid.sites == [f"blocks.{i}.attn.{part}" for i in range(model.cfg.n_layers)]

    per_head = tsi.patching.activation_patching(
        model, CLEAN, CORRUPT, metric, sites=sites, heads=True, progress=False
    )
    every = _loop(model, metric, part, groups, [list(range(n_pos))])[:, 0]
    assert per_head.effects.shape == (model.cfg.n_layers, len(groups))
    torch.testing.assert_close(per_head.patched_metric, every, atol=1e-4, rtol=1e-4)
    # the grid with one column of every position is the per-head result
    whole = tsi.patching.activation_patching(
        model,
        CLEAN,
        CORRUPT,
        metric,
        sites=sites,
        heads="grid",
        positions=[list(range(n_pos))],
        progress=False,
    )
    torch.testing.assert_close(whole.effects[:, 0], per_head.effects, atol=1e-4, rtol=1e-4)
    if len(groups[0]) > 1:  # GQA k/v: one column per key/value head, patching its whole group
        assert per_head.head_groups == groups
        assert per_head.head_labels[0] == f"KV0 (H0-H{len(groups[0]) - 1})"
    else:
        assert per_head.head_groups is None and per_head.head_labels[-1] == f"H{len(groups) - 1}"


def test_the_pattern_reference_sets_the_source_pattern(model):
    clean = model.run(CLEAN, cache="blocks.1.attn.pattern")
    ivs = _patch(model, clean, "pattern", 1, [1], [3, 9])
    got = model.run(CORRUPT, interventions=ivs, cache="blocks.1.attn.pattern").cache["blocks.1.attn.pattern"]
    plain = model.run(CORRUPT, cache="blocks.1.attn.pattern").cache["blocks.1.attn.pattern"]
    want = clean.cache["blocks.1.attn.pattern"]
    torch.testing.assert_close(got[:, 1, [3, 9]], want[:, 1, [3, 9]], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got[:, 0], plain[:, 0])
    assert not torch.allclose(plain[:, 1, 9], want[:, 1, 9], atol=1e-4)


def test_grid_runs_batched_and_its_views(model, metric, tmp_path):
    kw = dict(sites="blocks.*.attn.z", heads="grid", progress=False)
    res = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, **kw)
    n_pos, n_heads = model.to_tokens(CLEAN).shape[1], model.cfg.n_heads
    assert res.effects.shape == (model.cfg.n_layers, n_pos, n_heads)
    assert res.info["forwards"] < res.info["cells_run"]  # cells share forwards
    assert (res.raw[:, 0] == 0).all()  # the shared first token: exactly 0, never run
    one = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, batch_size=1, **kw)
    torch.testing.assert_close(one.effects, res.effects, atol=1e-4, rtol=1e-4)

    d = res.to_dict()
    assert d["dims"] == ["site", "position", "head"] and len(d["effects"][0]) == n_pos
    assert len(d["effects"][0][0]) == n_heads and d["head_labels"][0] == "H0"
    site, label, effect, raw = res.top(1)[0]
    i, p, h = (
        divmod(int(res.effects.abs().flatten().argmax()), n_pos * n_heads)[0],
        *divmod(int(res.effects.abs().flatten().argmax()) % (n_pos * n_heads), n_heads),
    )
    assert site == res.sites[i] and label == f"{res.position_labels[p]} · H{h}"
    assert effect == pytest.approx(float(res.effects[i, p, h]))
    html = res.to_html()
    assert html.count("<svg") >= model.cfg.n_layers and all(f"<h3>{s}</h3>" in html for s in res.sites)
    assert f"{res.sites[i]} · H{h} · " in html  # the hover title of a cell
    loaded = PatchResult.load(res.save(tmp_path / "grid"))
    torch.testing.assert_close(loaded.effects, res.effects)
    assert loaded.positions == res.positions and loaded.is_grid


def test_invalid_head_combinations_are_clear(model, metric):
    run = tsi.patching.activation_patching
    with pytest.raises(PatchingError, match="positions cannot be 'all'"):
        run(model, CLEAN, CORRUPT, metric, sites="blocks.0.attn.z", heads="grid", positions="all")
    with pytest.raises(PatchingError, match="heads must be False, True .* or 'grid'"):
        run(model, CLEAN, CORRUPT, metric, sites="blocks.0.attn.z", heads="each")
    with pytest.raises(PatchingError, match="head dimension"):
        run(model, CLEAN, CORRUPT, metric, sites="blocks.0.resid_pre", heads="grid")
    with pytest.raises(PatchingError, match="heads='grid'"):
        tsi.patching.attribution_patching(
            model, CLEAN, CORRUPT, metric, sites="blocks.0.attn.z", heads="grid"
        )
    if (model.cfg.n_kv_heads or model.cfg.n_heads) < model.cfg.n_heads:
        with pytest.raises(PatchingError, match="separate calls"):
            run(model, CLEAN, CORRUPT, metric, sites=["blocks.0.attn.q", "blocks.0.attn.k"], heads=True)


def test_pattern_needs_eager_attention():
    model = tsi.wrap(tiny_hf_model("llama", seed=1), tiny_tokenizer())
    metric = lambda logits: logits[:, -1, 0]  # noqa: E731
    with pytest.raises(tsi.TsiError, match="set_attention\\('eager'\\)"):
        tsi.patching.activation_patching(
            model, CLEAN, CORRUPT, metric, sites="blocks.0.attn.pattern", heads=True
        )


def test_attribution_patching_has_the_same_head_columns(model, metric):
    kw = dict(sites="blocks.*.attn.k", progress=False)
    exact = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, heads=True, **kw)
    kw.pop("progress")
    est = tsi.patching.attribution_patching(model, CLEAN, CORRUPT, metric, heads=True, **kw)
    whole = tsi.patching.attribution_patching(model, CLEAN, CORRUPT, metric, positions="all", **kw)
    assert est.effects.shape == exact.effects.shape and est.head_groups == exact.head_groups
    # the linear estimate is additive: the head columns (key/value heads, each summed over the query
    # heads' copies) add up to the estimate for the whole site
    torch.testing.assert_close(est.raw.sum(1), whole.raw[:, 0], atol=1e-4, rtol=1e-4)
    assert -1 <= est.correlation(exact) <= 1
