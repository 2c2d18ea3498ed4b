"""Activation, attribution and path patching on a tiny random LLaMA: batched == one forward per patch."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.patching import PatchingError, PatchResult
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

CLEAN = "when mary and john went to the store , john gave a drink to"
CORRUPT = "when john and mary went to the store , mary gave a drink to"


@pytest.fixture(scope="module")
def model():
    return tsi.wrap(tiny_hf_model("llama", seed=1), tiny_tokenizer())


@pytest.fixture(scope="module")
def metric(model):
    mary, john = model.token_id("mary"), model.token_id("john")
    return lambda logits: logits[:, -1, mary] - logits[:, -1, john]


_LOOPS: dict = {}


def _loop(model, metric, sites, n_pos, direction="denoise", heads=False):
    """The reference: one forward per patch, with plain tsi.Patch selectors (memoised per module)."""
    key = (id(model), sites, n_pos, direction, heads)
    if key not in _LOOPS:
        _LOOPS[key] = _run_loop(model, metric, sites, n_pos, direction, heads)
    return _LOOPS[key]


def _run_loop(model, metric, sites, n_pos, direction, heads):
    clean, corrupt = model.run(CLEAN, cache=sites), model.run(CORRUPT, cache=sites)
    base, source = (CORRUPT, clean) if direction == "denoise" else (CLEAN, corrupt)
    rows = []
    for site in model.sites(sites):
        if heads:
            cols = [tsi.Patch(source, heads=[h]) for h in range(model.cfg.n_heads)]
        else:
            cols = [tsi.Patch(source, positions=[p]) for p in range(n_pos)]
        rows.append([float(metric(model.run(base, interventions={site: iv}).logits)[0]) for iv in cols])
    return torch.tensor(rows), float(metric(clean.logits)[0]), float(metric(corrupt.logits)[0])


@pytest.mark.parametrize(
    "sites", ["blocks.*.resid_pre", "blocks.*.attn.out", "blocks.*.mlp.out", "blocks.1.resid_post"]
)
@pytest.mark.parametrize("batch_size", [None, 7])
def test_batched_equals_one_forward_per_patch(model, metric, sites, batch_size):
    res = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, sites=sites, batch_size=batch_size)
    n_pos = model.to_tokens(CLEAN).shape[1]
    patched, clean_m, corrupt_m = _loop(model, metric, sites, n_pos)
    assert res.effects.shape == (len(model.sites(sites)), n_pos)
    assert res.clean_metric == pytest.approx(clean_m) and res.corrupt_metric == pytest.approx(corrupt_m)
    torch.testing.assert_close(res.patched_metric, patched, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(
        res.effects, (patched - corrupt_m) / (clean_m - corrupt_m), atol=1e-4, rtol=1e-4
    )
    assert res.sites == model.sites(sites)
    assert res.positions == [[p] for p in range(n_pos)]
    assert res.str_tokens == model.to_str_tokens(CLEAN)
    if batch_size:
        assert res.info["batch_size"] == batch_size


def test_heads_mode_equals_loop(model, metric):
    res = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, sites="blocks.*.attn.z", heads=True)
    patched, *_ = _loop(model, metric, "blocks.*.attn.z", 0, heads=True)
    assert res.effects.shape == (model.cfg.n_layers, model.cfg.n_heads)
    assert res.heads == list(range(model.cfg.n_heads))
    assert res.column_labels[0] == "H0"
    torch.testing.assert_close(res.patched_metric, patched, atol=1e-4, rtol=1e-4)


def test_noising_and_denoising_normalisation(model, metric):
    kw = dict(sites="blocks.0.resid_pre", positions="all")
    den = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, direction="denoise", **kw)
    noi = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, direction="noise", **kw)
    # Patching the whole input residual turns one run into the other: effect 1 both ways.
    assert den.effects.shape == (1, 1) and float(den.effects) == pytest.approx(1.0, abs=1e-4)
    assert float(noi.effects) == pytest.approx(1.0, abs=1e-4)
    assert den.baseline_metric == den.corrupt_metric and noi.baseline_metric == noi.clean_metric
    assert float(den.raw) == pytest.approx(den.clean_metric - den.corrupt_metric, abs=1e-4)
    assert float(noi.raw) == pytest.approx(noi.corrupt_metric - noi.clean_metric, abs=1e-4)
    # Noising per position matches its own loop too.
    res = tsi.patching.activation_patching(
        model, CLEAN, CORRUPT, metric, sites="blocks.1.resid_pre", direction="noise"
    )
    patched, clean_m, corrupt_m = _loop(
        model, metric, "blocks.1.resid_pre", res.effects.shape[1], direction="noise"
    )
    torch.testing.assert_close(res.effects, (patched - clean_m) / (corrupt_m - clean_m), atol=1e-4, rtol=1e-4)
    raw = tsi.patching.activation_patching(
        model, CLEAN, CORRUPT, metric, sites="blocks.1.resid_pre", normalize=False
    )
    torch.testing.assert_close(raw.effects, raw.raw)


def test_position_groups_and_subsets(model, metric):
    res = tsi.patching.activation_patching(
        model, CLEAN, CORRUPT, metric, sites="blocks.1.resid_pre", positions=[[1, 3], [9, -1]]
    )
    n = model.to_tokens(CLEAN).shape[1]
    assert res.positions == [[1, 3], [9, n - 1]]
    clean = model.run(CLEAN, cache="blocks.1.resid_pre")
    for j, ps in enumerate(res.positions):
        out = model.run(CORRUPT, interventions={"blocks.1.resid_pre": tsi.Patch(clean, positions=ps)})
        assert float(res.patched_metric[0, j]) == pytest.approx(float(metric(out.logits)[0]), abs=1e-4)


def test_unchanged_cells_are_exact_zero_and_skip_forwards(model, metric):
    res = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, sites="blocks.*.resid_pre")
    # Position 0 ("when") is the same prefix in both prompts: nothing to patch, effect exactly 0.
    assert (res.raw[:, 0] == 0).all()
    # At the embedding only the name positions differ.
    assert set(torch.nonzero(res.raw[0]).flatten().tolist()) <= {1, 3, 9}
    assert res.info["cells_run"] < res.effects.numel()


def test_save_load_round_trip_and_html(model, metric, tmp_path):
    res = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, sites="blocks.*.attn.z", heads=True)
    res.save(tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "patch_result.json",
        "patch_result.safetensors",
    ]
    back = PatchResult.load(tmp_path / "r")
    assert torch.equal(back.effects, res.effects) and torch.equal(back.raw, res.raw)
    for name in ("sites", "positions", "str_tokens", "corrupt_str_tokens", "heads", "direction", "method"):
        assert getattr(back, name) == getattr(res, name)
    assert back.clean_metric == res.clean_metric and back.info == res.info
    html = res.to_html()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "blocks.1.attn.z" in html
    with pytest.raises(PatchingError, match="no saved PatchResult"):
        PatchResult.load(tmp_path)


def test_attribution_patching_unembeds_the_last_position_only_when_that_is_all_it_reads(model, metric):
    """Both forwards keep only the last position's logits for a last-position metric, with the same result as a
    metric that reads every position (which must keep them all)."""
    lengths = []
    real = tsi.Model.run

    def spy(self, inputs, *args, **kwargs):
        run = real(self, inputs, *args, **kwargs)
        lengths.append(run.logits.shape[1])
        return run

    every = lambda logits: metric(logits) + 0 * logits[:, :-1].sum((1, 2))  # noqa: E731 - reads all positions
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tsi.Model, "run", spy)
        fast = tsi.patching.attribution_patching(model, CLEAN, CORRUPT, metric)
        fast_lengths, lengths[:] = list(lengths), []
        full = tsi.patching.attribution_patching(model, CLEAN, CORRUPT, every)
    n = model.to_tokens(CLEAN).shape[1]
    assert fast.info["last_logits_only"] and fast_lengths == [1, 1]
    assert not full.info["last_logits_only"] and lengths == [n, n]
    torch.testing.assert_close(fast.raw, full.raw, atol=1e-5, rtol=1e-4)
    assert fast.clean_metric == pytest.approx(full.clean_metric, abs=1e-5)


def test_attribution_patching_is_the_linear_estimate(model, metric):
    sites = "blocks.*.resid_pre"
    est = tsi.patching.attribution_patching(model, CLEAN, CORRUPT, metric, sites=sites)
    exact = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, sites=sites)
    assert est.effects.shape == exact.effects.shape and est.method == "attribution"
    assert est.clean_metric == pytest.approx(exact.clean_metric, abs=1e-5)
    assert est.corrupt_metric == pytest.approx(exact.corrupt_metric, abs=1e-5)
    # By hand: (clean - corrupt) . grad on the corrupt run.
    clean = model.run(CLEAN, cache=sites)
    corrupt = model.run(CORRUPT, cache=sites, grad=lambda r: metric(r.logits).sum())
    for i, name in enumerate(model.sites(sites)):
        want = ((clean.cache[name] - corrupt.cache[name]) * corrupt.grads[name])[0].sum(-1)
        torch.testing.assert_close(est.raw[i], want, atol=1e-5, rtol=1e-4)
    # The first-order estimate is exact at the embedding when the model is linear there... not here; it
    # still points the same way as exact patching on the cells that matter.
    r = est.correlation(exact)
    assert r > 0.3
    pairs = torch.stack([est.effects.flatten(), exact.effects.flatten()]).double()
    assert r == pytest.approx(float(torch.corrcoef(pairs)[0, 1]), abs=1e-9)  # Pearson over every cell
    assert est.correlation(3 * exact.effects.double() + 1) == pytest.approx(
        r, abs=1e-9
    )  # blind to scale and offset
    assert est.correlation(-exact.effects) == pytest.approx(-r, abs=1e-9)
    heads = tsi.patching.attribution_patching(
        model, CLEAN, CORRUPT, metric, sites="blocks.*.attn.z", heads=True
    )
    assert heads.effects.shape == (model.cfg.n_layers, model.cfg.n_heads)
    noise = tsi.patching.attribution_patching(model, CLEAN, CORRUPT, metric, sites=sites, direction="noise")
    assert noise.baseline_metric == pytest.approx(exact.clean_metric, abs=1e-5)
    with pytest.raises(PatchingError, match="cannot correlate"):
        est.correlation(heads)


# ---- errors -------------------------------------------------------------------------------------------
def test_errors_are_clear(model, metric):
    ap = tsi.patching.activation_patching
    with pytest.raises(PatchingError, match=r"clean prompt is \d+ tokens but the corrupt prompt is \d+"):
        ap(model, CLEAN, "when john and mary went", metric)
    with pytest.raises(PatchingError, match=r"returned shape \[\]"):
        ap(model, CLEAN, CORRUPT, lambda lg: lg[0, -1, 5] - lg[0, -1, 6])
    with pytest.raises(PatchingError, match="not a tensor"):
        ap(model, CLEAN, CORRUPT, lambda lg: 1.0)
    with pytest.raises(PatchingError, match="heads=True needs"):
        ap(model, CLEAN, CORRUPT, metric, sites="blocks.*.resid_pre", heads=True)
    with pytest.raises(PatchingError, match="direction"):
        ap(model, CLEAN, CORRUPT, metric, direction="sideways")
    with pytest.raises(PatchingError, match="out of range"):
        ap(model, CLEAN, CORRUPT, metric, positions=[99])
    with pytest.raises(PatchingError, match="same metric"):
        ap(model, CLEAN, CLEAN, metric)
    with pytest.raises(PatchingError, match="batch_size"):
        ap(model, CLEAN, CORRUPT, metric, batch_size=0)
    with pytest.raises(tsi.SiteNotFoundError):
        ap(model, CLEAN, CORRUPT, metric, sites="blocks.*.resid_nowhere")
    with pytest.raises(tsi.InputError, match="batch size 2"):
        ap(model, model.to_tokens([CLEAN, CLEAN]), CORRUPT, metric)
    with pytest.raises(PatchingError, match=r"returned shape \[\]"):
        tsi.patching.attribution_patching(model, CLEAN, CORRUPT, lambda lg: lg[0, -1, 5])
    assert issubclass(PatchingError, tsi.TsiError)


def test_memory_budget_sets_the_batch(model, metric):
    small = tsi.patching.activation_patching(
        model, CLEAN, CORRUPT, metric, sites="blocks.1.resid_pre", memory_budget="200KiB"
    )
    big = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, sites="blocks.1.resid_pre")
    assert small.info["batch_size"] < big.info["batch_size"]
    torch.testing.assert_close(small.effects, big.effects, atol=1e-4, rtol=1e-4)
    with pytest.raises(PatchingError, match="not a size"):
        tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, memory_budget="lots")


def test_shared_prefix_equals_fixed_batches(model, metric):
    kw = dict(sites=["blocks.*.resid_pre", "blocks.*.attn.z", "blocks.1.mlp.out"], batch_size=9)
    grown = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, **kw)
    fixed = tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, share_prefix=False, **kw)
    assert grown.info["shared_prefix"] and not fixed.info["shared_prefix"]
    torch.testing.assert_close(grown.raw, fixed.raw, atol=1e-4, rtol=1e-4)
    heads = dict(sites="blocks.*.attn.z", heads=True)
    torch.testing.assert_close(
        tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, **heads).raw,
        tsi.patching.activation_patching(model, CLEAN, CORRUPT, metric, share_prefix=False, **heads).raw,
        atol=1e-4,
        rtol=1e-4,
    )
