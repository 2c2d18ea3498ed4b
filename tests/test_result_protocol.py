"""Every result class has ``to_dict()`` (strict JSON, no tensors) and ``to_html()`` (escaped HTML).

The walk over the package keeps this true for classes added later; the table below builds one small result
of each kind by hand (no model), with a hostile string wherever the result shows text.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import pkgutil
import re

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.core._result import fields_dict, jsonable

EVIL = "<script>alert(1)</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"

# Classes with only one of the two methods, and why that is right.
EXEMPT = {
    "core._result.RunResult": "the core's raw run (logits and an activation cache), not a technique's result",
    "sae._config.SAEConfig": "a configuration record: to_dict is its cfg.json",
    "anomaly._detector.Detector": "a fitted detector: to_dict is its saved metadata",
    "bench._trojan.Trojan": "a task (a model with a planted backdoor), not a result",
    "vision._checkerboard.CheckerboardLayer": "one row of CheckerboardResult, which renders it",
}


def _classes() -> dict[str, type]:
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(tsi.__path__, "torch_shard_interpret."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, cls in vars(module).items():
            if inspect.isclass(cls) and cls.__module__ == module.__name__:
                found[f"{module.__name__.removeprefix('torch_shard_interpret.')}.{name}"] = cls
    return found


def _wants_protocol(name: str, cls: type) -> bool:
    return bool(re.search(r"Results?$", name)) or hasattr(cls, "to_dict") or hasattr(cls, "to_html")


def test_every_result_class_has_to_dict_and_to_html():
    classes = _classes()
    results = {n: c for n, c in classes.items() if _wants_protocol(n, c)}
    missing = [
        n
        for n, c in results.items()
        if n not in EXEMPT
        and not (callable(getattr(c, "to_dict", None)) and callable(getattr(c, "to_html", None)))
    ]
    assert missing == [], "give these classes both to_dict() and to_html()"
    assert set(EXEMPT) <= set(results), "an exempt class was renamed or removed; update EXEMPT"
    # The walk sees the results of every technique (it is not vacuous).
    for name in ("lens._result.LensResult", "attribution._dla.DLAResult", "patching._result.PatchResult",
                 "sae._interp.LatentStats", "sae._eval.EvalResult", "steering._sweep.SweepResult",
                 "probes._linear.ProbeResults", "circuits._acdc.AcdcResult", "vision._result.Attribution",
                 "diff._compare.DiffResult", "anomaly._eval.EvalResult", "bench._sanity.SanityResult"):  # fmt: skip
        assert name in results


def test_jsonable():
    assert jsonable({1: torch.tensor([1.0, float("nan")]), "t": (1, float("inf")), "s": "x", "b": True}) == {
        "1": [1.0, None],
        "t": [1, None],
        "s": "x",
        "b": True,
    }
    assert jsonable(torch.tensor(3)) == 3 and jsonable(object()).startswith("<object")


def test_fields_dict_is_the_fields_in_order_without_the_excluded_then_the_extra():
    from dataclasses import dataclass

    @dataclass
    class Found:
        site: str
        values: torch.Tensor
        tokenizer: object = None

    found = Found("blocks.0.resid_post", torch.tensor([0.5, float("nan")]), tokenizer=object())
    data = fields_dict(found, exclude={"tokenizer"}, n=2)
    assert list(data) == ["site", "values", "n"] and data["values"] == [0.5, None]
    probe = tsi.probes.ProbeResult("s", "classification", 0.75, 0.5, torch.zeros(2, 3), torch.zeros(2))
    assert probe.to_dict()["selectivity"] == 0.25 and "weights" in probe.to_dict()
    with pytest.raises(TypeError, match="needs a dataclass instance, not dict"):
        fields_dict({"site": "s"})


# ---- one small result of each kind ---------------------------------------------------------------
class _Tok:
    """A tokenizer whose token 4 is hostile (the two methods token lookup reads)."""

    def convert_ids_to_tokens(self, ids):
        return [EVIL if i == 4 else f"t{i}" for i in ids]

    def convert_tokens_to_string(self, pieces):
        return "".join(pieces)


def _lens():
    from torch_shard_interpret.lens._result import LensResult

    probs = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0)).softmax(-1)
    return LensResult(probs, torch.tensor([4, 1, 2]), [EVIL, "t1", "t2"], [0, 1, 2], target=4,
                      layer_names=["blocks.0.resid_post", "blocks.1.resid_post"], tokenizer=_Tok())  # fmt: skip


def _dla():
    from torch_shard_interpret.attribution import DLAResult

    comps = {
        "embed": 0.5,
        "blocks.0.attn": 1.0,
        "blocks.0.mlp": -2.0,
        "blocks.1.attn": 0.25,
        "blocks.1.mlp": 3.0,
    }
    return DLAResult(total=3.0, components=comps, remainder=0.25, heads=torch.tensor([[0.5, 0.5], [0.0, 0.25]]),
                     head_bias=torch.zeros(2), target=4, baseline=1, position=2, target_str=EVIL,
                     baseline_str="t1", str_tokens=[EVIL, "t1", "t2"], scale=1.5)  # fmt: skip


def _ig():
    from torch_shard_interpret.attribution import IGResult

    per_dim = torch.arange(12.0).reshape(3, 4) / 10
    return IGResult(per_dim.sum(-1), per_dim, f_input=2.0, f_baseline=-4.0, str_tokens=[EVIL, "b", "c"],
                    target=4, target_str=EVIL, steps=8)  # fmt: skip


def _patch():
    from torch_shard_interpret.patching import PatchResult

    eff = torch.tensor([[1.0, float("nan"), 0.5], [0.0, -0.25, 0.75]])
    return PatchResult(eff, eff * 2, ["blocks.0.resid_pre", "blocks.1.resid_pre"], [[0], [1], [2]],
                       [EVIL, "b", "c"], clean_metric=2.0, corrupt_metric=0.0, corrupt_str_tokens=["x", "b", "c"],
                       info={"forwards": 7, "shape": (2, 3)})  # fmt: skip


def _probe(site: str = EVIL):
    from torch_shard_interpret.probes import ProbeResult

    return ProbeResult(site, "classification", 0.9, 0.5, torch.ones(2, 4), torch.zeros(2), classes=[EVIL, "b"],
                       chance=0.5, train_score=1.0, n_train=8, n_val=4)  # fmt: skip


def _probes():
    from torch_shard_interpret.probes._linear import ProbeResults

    return ProbeResults({EVIL: _probe(), "blocks.1.resid_post": _probe("blocks.1.resid_post")})


def _sweep():
    from torch_shard_interpret.steering import SweepResult

    texts: dict[tuple[int | str, float], list[str]] = {
        (layer, s): [f"{EVIL} {layer} {s}"] for layer in (0, 1) for s in (1.0, 2.0)
    }
    return SweepResult([0, 1], [1.0, 2.0], ["blocks.0.resid_post", "blocks.1.resid_post"],
                       torch.tensor([[0.5, float("nan")], [1.0, 2.0]]), torch.tensor([[3.0, 4.0], [5.0, 6.0]]),
                       texts, [EVIL], 0.25, 2.5, ["plain"], {0: 1.5, 1: 2.5})  # fmt: skip


def _latents():
    from torch_shard_interpret.sae import LatentStats

    return LatentStats("blocks.0.resid_post", 4, frequency=torch.tensor([0.5, 0.25, 0.0]),
                       max_act=torch.tensor([2.0, 1.0, 0.0]), mean_act=torch.tensor([1.5, 1.0, 0.0]),
                       top_values=torch.tensor([[2.0, 1.0], [1.0, 0.0], [0.0, 0.0]]),
                       top_index=torch.tensor([[0, 1], [2, 0], [0, 0]]), hist_counts=torch.ones(3, 2),
                       tokens=torch.tensor([4, 1, 2, 3]), doc=torch.tensor([0, 0, 0, 1]),
                       logit_up=[[(EVIL, 0.5)], [], []], logit_down=[[("t1", -0.5)], [], []],
                       tokenizer=_Tok())  # fmt: skip


def _sae_eval():
    from torch_shard_interpret.sae import EvalResult

    return EvalResult(l0=12.5, fvu=0.125, mse=0.5, dead_fraction=0.25, dense_fraction=0.0, ce_clean=2.0,
                      ce_spliced=2.5, ce_zero=6.0, ce_loss_recovered=0.875, n_tokens=64, site=EVIL)  # fmt: skip


def _graph():
    from torch_shard_interpret.circuits._graph import Graph

    return Graph(n_layers=1, n_heads=2, n_kv_heads=2)


def _scored():
    from torch_shard_interpret.circuits import ScoredGraph

    g = _graph()
    return ScoredGraph(g, torch.linspace(-1, 1, len(g.edges)), EVIL, {"note": "plain"})


def _acdc():
    from torch_shard_interpret.circuits import AcdcResult

    g = _graph()
    mask = torch.zeros(len(g.edges), dtype=torch.bool)
    mask[:3] = True
    return AcdcResult(g, torch.linspace(-1, 1, len(g.edges)), mask, {"threshold": 0.1, "forwards": 5})


def _faith():
    from torch_shard_interpret.circuits import Faithfulness

    return Faithfulness(0.75, EVIL, 1.5, 2.0, 0.0)


def _curve():
    from torch_shard_interpret.circuits import FaithfulnessCurve

    return FaithfulnessCurve([0.1, 1.0], [0.5, 1.0], [0.25, 1.0], 0.675, 0.3375, EVIL, [1, 9])


def _isolation():
    from torch_shard_interpret.circuits import Isolation

    return Isolation(0.9, 0.2, 0.8, False, EVIL)


def _sanity():
    from torch_shard_interpret.bench._sanity import SanityResult

    return SanityResult(["trained", "all"], {EVIL: [1.0, 0.9], "ig": [1.0, 0.1]}, flagged=[EVIL])


def _anomaly():
    from torch_shard_interpret.anomaly._eval import EvalResult

    return EvalResult(
        EVIL, 0.75, 0.5, torch.rand(4), torch.tensor([0, 0, 1, 1]), {"blocks.0.resid_post": 0.75}
    )


def _diff():
    from torch_shard_interpret.diff import DiffResult

    return DiffResult({EVIL: 0.5}, {EVIL: 0.9}, {"blocks.0": 0.1}, 0.05, 8)


FACTORIES = [_lens, _dla, _ig, _patch, _probe, _probes, _sweep, _latents, _sae_eval, _scored, _acdc, _faith,
             _curve, _isolation, _sanity, _anomaly, _diff]  # fmt: skip


@pytest.mark.parametrize("make", FACTORIES, ids=lambda f: f.__name__.strip("_"))
def test_to_dict_is_strict_json_and_to_html_escapes(make):
    result = make()
    data = result.to_dict()
    text = json.dumps(data, allow_nan=False)  # no tensors, no NaN: strict JSON
    assert json.loads(text) == data
    html = result.to_html()
    assert EVIL not in html and "<script" not in html.lower()
    if EVIL in text:
        assert EVIL_ESCAPED in html, "the hostile string is shown, escaped"


def _close(a, b) -> bool:
    return torch.allclose(torch.tensor(a, dtype=torch.float32), b.float(), atol=1e-6)


def test_lens_to_dict_holds_its_values():
    r = _lens()
    d = r.to_dict(top_k=3)
    assert d["layers"] == r.layer_names and d["positions"] == [0, 1, 2]
    assert d["tokens"] == [{"id": 4, "text": EVIL}, {"id": 1, "text": "t1"}, {"id": 2, "text": "t2"}]
    assert d["target"] == {"token": EVIL, "id": 4}
    assert _close(d["value"], r.prob()) and d["rank"] == r.rank().tolist()
    vals, ids = r.top_ids(3)
    assert [c["id"] for c in d["top"][1][2]] == ids[1, 2].tolist()
    assert _close([c["prob"] for c in d["top"][1][2]], vals[1, 2])
    assert d["top"][0][0][0]["token"] == r.top_tokens(1)[0][0][0][0]
    r.target = None
    d = r.to_dict()
    assert d["target"] is None and "rank" not in d and _close(d["value"], r.top_ids(1)[0][..., 0])


def test_dla_to_dict_holds_its_values():
    r = _dla()
    d = r.to_dict(top=2)
    assert d["total"] == r.total and d["remainder"] == r.remainder and d["components"] == r.components
    assert d["label"] == r.label and d["target"] == {"token": EVIL, "id": 4} and d["baseline"]["id"] == 1
    assert d["heads"] == r.heads.tolist() and d["per_layer"] == {
        "attn": [1.0, 0.25],
        "mlp": [-2.0, 3.0],
        "embed": 0.5,
    }
    assert d["top_components"] == [["blocks.1.mlp", 3.0], ["blocks.0.mlp", -2.0]]
    assert sum(d["components"].values()) + d["remainder"] == d["total"]


def test_ig_to_dict_holds_its_values():
    r = _ig()
    d = r.to_dict()
    assert _close(d["attributions"], r.attributions) and _close(d["per_dim"], r.per_dim)
    assert d["delta"] == 6.0 and d["completeness_error"] == pytest.approx(r.completeness_error)
    assert d["passes"] is r.passes() and d["tokens"] == r.str_tokens and d["steps"] == 8


def test_patch_to_dict_holds_its_values():
    r = _patch()
    d = r.to_dict()
    assert d["effects"][0] == [1.0, None, 0.5] and d["effects"][1] == r.effects[1].tolist()
    assert d["raw"][1] == r.raw[1].tolist() and d["sites"] == r.sites and d["columns"] == r.column_labels
    assert (d["clean_metric"], d["corrupt_metric"]) == (2.0, 0.0) and d["info"] == {
        "forwards": 7,
        "shape": [2, 3],
    }
    assert d["normalisation"].startswith("(patched - corrupt) / (clean - corrupt)")


def test_probe_sweep_and_latent_to_dict_hold_their_values():
    p = _probe()
    d = p.to_dict()
    assert d["weights"] == p.weights.tolist() and d["selectivity"] == pytest.approx(0.4)
    assert d["classes"] == [EVIL, "b"] and _probes().to_dict()[EVIL] == d
    s = _sweep()
    d = s.to_dict()
    assert d["metric"] == [[0.5, None], [1.0, 2.0]] and d["perplexity"] == s.perplexity.tolist()
    assert d["vector_norms"] == {"0": 1.5, "1": 2.5} and len(d["cells"]) == 4
    assert d["cells"][1] == {"layer": 0, "scale": 2.0, "site": "blocks.0.resid_post", "metric": None,
                             "perplexity": 4.0, "texts": [f"{EVIL} 0 2.0"]}  # fmt: skip
    st = _latents()
    d = st.to_dict()
    assert (
        d["d_sae"] == 3
        and d["frequency"] == st.frequency.tolist()
        and d["top_index"] == st.top_index.tolist()
    )
    assert d["logit_up"][0] == [[EVIL, 0.5]]


def test_circuit_results_to_dict_hold_their_values():
    a = _acdc()
    d = a.to_dict()
    assert d["method"] == "acdc" and d["info"]["forwards"] == 5
    kept = [e for e, v in d["edges"].items() if v["in_graph"]]
    assert kept == a.edges and len(kept) == 3
    assert all(v["in_graph"] for v in _scored().to_dict()["edges"].values())
    c = _curve().to_dict()
    assert c["cpr"] == 0.675 and c["values"] == [0.5, 1.0]
    assert _faith().to_dict()["faithfulness"] == 0.75 and _isolation().to_dict()["in_context"] == 0.8


def test_html_shows_the_key_numbers():
    assert "+3.000" in _dla().to_html()  # the total
    assert "2.0000" in _patch().to_html()  # the clean metric
    assert "0.875" in _sae_eval().to_html()  # CE loss recovered
    assert "0.675" in _curve().to_html() and "(flagged)" in _sanity().to_html()
    assert "ACDC circuit" in _acdc().to_html() and "3 of" in _acdc().to_html()
    assert all(math.isfinite(v) for v in (_ig().delta, _ig().relative_error))
