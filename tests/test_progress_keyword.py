"""One ``progress`` keyword everywhere: no public function takes ``progress_bar``; ``progress=False`` is silent."""

from __future__ import annotations

import inspect

import pytest

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

CLEAN = "when mary and john went to the store john gave a drink to"
CORRUPT = "when john and mary went to the store mary gave a drink to"
PACKAGES = ["patching", "diff", "anomaly", "store", "sae", "lens", "steering", "probes", "circuits", "bench"]


def _public_callables():
    for pkg in PACKAGES:
        mod = getattr(tsi, pkg)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if inspect.isclass(obj):
                yield from ((f"{pkg}.{name}.{m}", f) for m, f in vars(obj).items() if callable(f))
            elif callable(obj):
                yield f"{pkg}.{name}", obj


def test_no_public_function_takes_progress_bar():
    takes = []
    for name, fn in _public_callables():
        try:
            params = inspect.signature(inspect.unwrap(getattr(fn, "__func__", fn))).parameters
        except (TypeError, ValueError):  # builtins without a signature
            continue
        if "progress_bar" in params:
            takes.append(name)
    assert takes == []
    assert "progress" in inspect.signature(tsi.patching.activation_patching).parameters
    assert "progress" in inspect.signature(tsi.patching.path_patching).parameters


@pytest.fixture(scope="module")
def model():
    return tsi.wrap(tiny_hf_model("llama", seed=1), tiny_tokenizer())


def test_progress_false_is_silent_and_the_old_keyword_is_refused(model, capsys):
    mary, john = model.token_id("mary"), model.token_id("john")

    def metric(logits):
        return logits[:, -1, mary] - logits[:, -1, john]

    patch = tsi.patching.activation_patching
    res = patch(model, CLEAN, CORRUPT, metric, sites="blocks.0.resid_pre", batch_size=2, progress=False)
    path = tsi.patching.path_patching(model, CLEAN, CORRUPT, metric, batch_size=1, progress=False)
    d = tsi.diff.compare(model, model, [CLEAN, CORRUPT], progress=False)
    feats = tsi.anomaly.extract(model, [CLEAN, CORRUPT], ["blocks.0.resid_post"], progress=False)
    assert res.effects.shape[0] == 1 and path.effects.numel() > 0 and d.logits_kl == 0
    assert feats["blocks.0.resid_post"].shape[0] == 2
    assert capsys.readouterr().err == ""
    with pytest.raises(TypeError, match="progress_bar"):
        patch(model, CLEAN, CORRUPT, metric, progress_bar=False)  # renamed: progress=
    with pytest.raises(TypeError, match="progress_bar"):
        tsi.diff.compare(model, model, [CLEAN], progress_bar=False)
