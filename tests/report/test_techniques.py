"""A technique registered once, from this one module, appears in the report, the web app and the command line
(issue 11 section 2: adding a technique touches at most six files; docs/cli.md lists them).

The throwaway technique reads the norm of the residual stream at one site, times ``scale``. The expected
numbers come from the Hugging Face model's own ``output_hidden_states``, not from ``tsi``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

import torch_shard_interpret as tsi
from _cli import preload
from torch_shard_interpret.cli.main import build_parser, iter_parsers, main
from torch_shard_interpret.report import Technique, register_technique, unregister_technique
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

PROMPT = "when mary and john went to the store"


@dataclass(frozen=True)
class NormOptions:
    site: str = "blocks.0.resid_post"
    """Where the residual stream is read."""
    scale: float = 1.0
    """Multiplies every norm."""
    labels: bool = True
    """Show the tokens next to the norms."""


@dataclass
class NormResult:
    site: str
    tokens: list[str]
    norms: list[float]

    def to_dict(self) -> dict:
        return {"site": self.site, "tokens": self.tokens, "norms": self.norms}

    def to_html(self) -> str:
        return tsi._render.standalone("norms", norm_section(self))


def norm_section(result: NormResult) -> str:
    rows = [(tsi._render.esc(t), f"{n:.4f}") for t, n in zip(result.tokens, result.norms, strict=True)]
    return "<table>" + "".join(f"<tr><td>{t}</td><td>{n}</td></tr>" for t, n in rows) + "</table>"


def residual_norms(model, prompt, *, site="blocks.0.resid_post", scale=1.0, labels=True):
    run = model.run(prompt, cache=site, return_logits=False)
    norms = (run.cache[site][0].float().norm(dim=-1) * scale).tolist()  # [pos]
    tokens = model.str_tokens(run.tokens[0]) if labels else [str(i) for i in range(len(norms))]
    return NormResult(site, tokens, norms)


NORMS = Technique("residual-norms", "Residual norms", compute=residual_norms, options=NormOptions,
                  section=norm_section, help="the norm of the residual stream at each position")  # fmt: skip


@pytest.fixture
def model(monkeypatch):
    m = tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())
    preload(monkeypatch, "tiny", m)
    return m


@pytest.fixture
def registered():
    register_technique(NORMS)
    yield NORMS
    unregister_technique(NORMS.name)


def expected_norms(model, scale: float = 1.0) -> list[float]:
    ids = model.to_tokens(PROMPT)
    with torch.no_grad():
        hidden = model.module(ids, output_hidden_states=True).hidden_states[1][
            0
        ]  # after block 0: [pos, d_model]
    return (hidden.float().norm(dim=-1) * scale).tolist()


def test_it_is_a_section_of_the_report(model, registered):
    data = tsi.report.build_report(model, PROMPT, top_heads=0)
    assert data.techniques["residual-norms"].norms == pytest.approx(expected_norms(model), rel=1e-5)
    html = tsi.report.render(data)
    section = html[html.index('id="t-residual-norms"') :]
    assert "6. Residual norms" in section
    for value in expected_norms(model):
        assert f"{value:.4f}" in section


def test_it_is_an_endpoint_and_a_tab_of_the_web_app(model, registered):
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    client = TestClient(tsi.serve.create_app(model, attention=False, vision_model=None))
    (info,) = client.get("/api/info").json()["techniques"]
    assert info["name"] == "residual-norms" and info["title"] == "Residual norms"
    assert [(o["name"], o["type"], o["default"]) for o in info["options"]] == [
        ("site", "str", "blocks.0.resid_post"), ("scale", "float", 1.0), ("labels", "bool", True),
    ]  # fmt: skip
    r = client.post("/api/residual-norms", json={"prompt": PROMPT, "scale": 2.0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["norms"] == pytest.approx(expected_norms(model, 2.0), rel=1e-5)
    assert body["tokens"] == model.str_tokens(model.to_tokens(PROMPT)[0])
    assert f"{body['norms'][0]:.4f}" in body["section_html"]
    bad = client.post("/api/residual-norms", json={"prompt": PROMPT, "scale": "big"})
    assert bad.status_code == 400 and "'scale' must be a finite number" in bad.json()["error"]
    assert "techniques.js" in client.get("/").text  # the page that turns info["techniques"] into tabs


def test_a_web_request_over_the_cost_cap_is_refused(model, registered):
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    client = TestClient(tsi.serve.create_app(model, attention=False, vision_model=None, max_cost=3))
    r = client.post("/api/residual-norms", json={"prompt": PROMPT})
    assert r.status_code == 400 and "1 forward(s) x 8 tokens" in r.json()["error"]


def test_it_is_a_subcommand_whose_options_are_the_dataclass_fields(model, registered, tmp_path, capsys):
    parser = dict(iter_parsers(build_parser()))["residual-norms"]
    dests = {a.dest: a for a in parser._actions}
    assert {"site", "scale", "labels"} <= set(dests) and dests["scale"].default == 1.0
    out = tmp_path / "out"
    code = main(
        ["residual-norms", PROMPT, "--model", "tiny", "--scale", "3", "--no-labels", "--out", str(out)]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    printed = json.loads(captured.out[: captured.out.rindex("}") + 1])
    assert printed["norms"] == pytest.approx(expected_norms(model, 3.0), rel=1e-5)
    assert printed["tokens"] == [str(i) for i in range(len(printed["norms"]))]
    assert json.loads((out / "residual-norms.json").read_text()) == printed
    assert f"{printed['norms'][-1]:.4f}" in (out / "residual-norms.html").read_text()


def test_unregistered_it_is_nowhere(model):
    assert "residual-norms" not in dict(iter_parsers(build_parser()))
    assert "t-residual-norms" not in tsi.report.render(tsi.report.build_report(model, PROMPT, top_heads=0))


def test_bad_registrations_say_what_to_do(registered, model):
    with pytest.raises(tsi.TsiError, match="lowercase letters, digits and dashes"):
        Technique("Norms!", "x", compute=residual_norms)
    with pytest.raises(tsi.TsiError, match="registered already"):
        register_technique(Technique("residual-norms", "other", compute=residual_norms))
    with pytest.raises(tsi.TsiError, match="has no option 'steps'"):
        NORMS.run(model, PROMPT, steps=3)
    clash = register_technique(Technique("lens", "Lens again", compute=residual_norms))
    try:
        assert main(["lens", "--help"]) == 2  # the CLI refuses to shadow `tsi lens`, in one line
        pytest.importorskip("starlette")
        with pytest.raises(tsi.TsiError, match="built-in endpoint"):
            tsi.serve.create_app(model, attention=False, vision_model=None)
    finally:
        unregister_technique(clash.name)


def test_the_docs_list_at_most_six_files_and_name_this_test():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    section = page.split("## Adding a technique: the files it touches", 1)[1].split("\n## ", 1)[0]
    items = [line for line in section.splitlines() if line[:2] in {f"{i}." for i in range(1, 10)}]
    assert 1 <= len(items) <= 6, items
    assert "tests/report/test_techniques.py" in section
