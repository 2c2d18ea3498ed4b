"""The fast ground-truth checks, asserted at their thresholds (the scoreboard's quick suite, in tests).

Measured numbers are in docs/bench.md. Two targets of issue 12 are not met yet at 40 features in 10
dimensions (BatchTopK 0.91, JumpReLU 0.94 mean max cosine, targets 0.95); the test holds them at the
measured level so a regression is caught, and the scoreboard shows them as FAIL.
"""

from __future__ import annotations

import pytest

from torch_shard_interpret.bench import _check_ig, _check_probe, _check_sae, _check_sanity


@pytest.fixture(scope="module")
def sae_rows():
    return _check_sae.checks(quick=True)


def _val(rows, tool, task_part, metric):
    (row,) = [r for r in rows if r["tool"] == tool and task_part in r["task"] and r["metric"] == metric]
    return row["value"]


@pytest.mark.parametrize("kind", ["topk", "relu"])
def test_sae_defaults_recover_toy_features(sae_rows, kind):
    for size in ("n=20 d=8", "n=40 d=10"):
        assert _val(sae_rows, f"sae.{kind}", size, "mean_max_cosine") >= _check_sae.THRESHOLD[kind]
        assert _val(sae_rows, f"sae.{kind}", size, "mcc") >= _check_sae.THRESHOLD[kind] - 0.05


@pytest.mark.parametrize(("kind", "held"), [("batchtopk", 0.88), ("jumprelu", 0.92)])
def test_sae_defaults_batchtopk_jumprelu(sae_rows, kind, held):
    assert _val(sae_rows, f"sae.{kind}", "n=20 d=8", "mean_max_cosine") >= 0.95
    assert _val(sae_rows, f"sae.{kind}", "n=40 d=10", "mean_max_cosine") >= held


def test_probe_rows_pass():
    rows = _check_probe.checks(quick=True)
    assert all(_passes(r) for r in rows), rows


def test_ig_default_completeness_on_embedded_model():
    rows = _check_ig.checks(quick=True)
    assert len(rows) == 3
    for r in rows:
        assert r["value"] <= 0.05, r


def test_sanity_checks_pass_and_flag_a_weight_independent_map():
    rows = _check_sanity.checks(quick=True)
    for r in rows:
        assert _passes(r), r


def _passes(r):
    from torch_shard_interpret.bench._scoreboard import row_passes

    return row_passes(r["value"], r["threshold"], r["higher_is_better"])
