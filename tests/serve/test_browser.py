"""The web page in a real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

Screenshots land in tests/serve/artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# `make test` sets TSI_REQUIRE_BROWSER=1 wherever chromium is installed or installable: a missing
# browser or playwright is then a failure, not a skip.
REQUIRED = os.environ.get("TSI_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("TSI_CHROMIUM", "/usr/bin/chromium")


def _missing(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason}, and TSI_REQUIRE_BROWSER=1 says the browser tests must run", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    import playwright.sync_api as playwright_api
except ImportError:
    _missing("the playwright package is not installed (dev extra)")
expect = playwright_api.expect
if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
    _missing(f"no chromium at {CHROMIUM} (apt-get install -y chromium, or set TSI_CHROMIUM)")

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip

pytestmark = pytest.mark.timeout(300)
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, live_server):
    ARTIFACTS.mkdir(exist_ok=True)
    pg = browser.new_page(viewport={"width": 1280, "height": 900})
    console_errors: list[str] = []
    pg.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: console_errors.append(str(e)))
    pg.goto(live_server + "/")
    pg.wait_for_selector("body[data-ready='1']", timeout=30000)
    pg.console_errors = console_errors  # type: ignore[attr-defined]
    yield pg
    pg.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_prompt_predictions_and_lens_heatmap(page, tiny_model):
    prompt = "when mary and john went to the store john gave a drink to"
    page.fill("#prompt", prompt)
    page.click("#run-prompt")
    n_pos = tiny_model.to_tokens(prompt).shape[1]
    expect(page.locator("#predict-tokens .tok")).to_have_count(n_pos)
    assert "→" in page.inner_text("#predict-tokens")
    shot(page, "predict")
    page.click("nav button[data-tab=lens]")
    page.wait_for_selector("#lens-svg")
    n_layers = tiny_model.cfg.n_layers
    assert page.locator("#lens-svg rect.lens-cell").count() == n_layers * n_pos
    page.hover("#lens-svg rect.lens-cell >> nth=3")
    assert "blocks." in page.inner_text("#tooltip")
    shot(page, "lens")
    assert not page.console_errors


def test_attention_and_dla_tabs(page, tiny_model):
    page.click("nav button[data-tab=attention]")
    page.wait_for_selector("#attn-view svg")
    assert page.locator("#attn-view svg").count() == tiny_model.cfg.n_heads
    assert "eager" in page.inner_text("#attn-note")
    page.click("nav button[data-tab=dla]")
    page.wait_for_selector("#dla-view rect.dla-cell")
    assert page.locator("#dla-view rect.dla-cell").count() == tiny_model.cfg.n_layers * tiny_model.cfg.n_heads
    shot(page, "dla")
    assert not page.console_errors


def test_steering_comparison(page, tiny_model):
    from torch_shard_interpret.steering import SteeringVector

    page.click("nav button[data-tab=steer]")
    page.fill("#steer-prompt", "the cat")
    page.fill("#steer-pos", "love")
    page.fill("#steer-neg", "hate")
    page.select_option("#steer-layer", "1")
    page.fill("#steer-n", "5")
    page.eval_on_selector("#steer-scale", "e => { e.value = '8'; e.dispatchEvent(new Event('input')); }")
    page.click("#steer-run")
    page.wait_for_selector("#steer-steered", timeout=60000)
    sv = SteeringVector.from_pair(tiny_model, "love", "hate", site="blocks.1.resid_pre")
    with sv.apply(tiny_model, scale=8.0):
        steered = tiny_model.generate("the cat", max_new_tokens=5)
    assert steered in page.inner_text("#steer-steered")
    assert tiny_model.generate("the cat", max_new_tokens=5) in page.inner_text("#steer-unsteered")
    shot(page, "steer")


def test_patching_heatmap(page, tiny_model):
    page.click("nav button[data-tab=patch]")
    page.fill("#patch-clean", "mary gave john a book")
    page.fill("#patch-corrupt", "john gave mary a book")
    page.fill("#patch-target", "mary")
    page.fill("#patch-baseline", "john")
    page.click("#patch-run")
    page.wait_for_selector("#patch-view rect.patch-cell", timeout=60000)
    n_pos = tiny_model.to_tokens("mary gave john a book").shape[1]
    assert page.locator("#patch-view rect.patch-cell").count() == tiny_model.cfg.n_layers * n_pos
    shot(page, "patch")


def test_sae_latent_and_search(page):
    page.click("nav button[data-tab=sae]")
    page.fill("#sae-latent", "5")
    page.click("#sae-open")
    page.wait_for_selector("#sae-latent-title", timeout=60000)
    assert "Latent #5" in page.inner_text("#sae-latent-title")
    page.wait_for_selector("#sae-summary .chip")
    page.fill("#sae-token", "the")
    page.click("#sae-search")
    page.wait_for_selector("#sae-results .chip")
    chip = page.locator("#sae-results .chip").first
    latent = chip.get_attribute("data-latent")
    chip.click()
    expect(page.locator("#sae-latent-title")).to_contain_text(f"Latent #{latent} ")
    assert page.locator("#sae-view .ctx").count() > 0
    assert page.locator("#sae-hist svg rect").count() > 0
    shot(page, "sae")
    assert not page.console_errors


def test_error_is_shown(page):
    page.fill("#prompt", "")
    page.click("#run-prompt")
    page.wait_for_selector("#error:not([hidden])")
    assert "'prompt' is empty" in page.inner_text("#error")


def test_circuits_tab(page):
    page.click("nav button[data-tab=circuits]")
    fields = {"clean": "the cat is very good", "corrupt": "the dog is very good", "target": " good",
              "baseline": " bad", "top": "10"}  # fmt: skip
    for name, value in fields.items():
        page.fill(f"#circ-{name}", value)
    page.click("#circ-run")
    page.wait_for_selector("#circ-svg svg", timeout=60000)
    assert page.locator("#circ-svg svg line").count() > 0
    float(page.inner_text("#circ-faithfulness"))  # a number
    assert page.locator("#circ-side svg").count() == 1  # the faithfulness curve
    shot(page, "circuits")
    assert not page.console_errors


def test_image_tab(page, tmp_path):
    from torch_shard_interpret._render import png_bytes
    from torch_shard_interpret.vision._data import digits

    images, labels = digits()
    path = tmp_path / "five.png"
    path.write_bytes(png_bytes((1 - images[5, 0].numpy()).repeat(4, 0).repeat(4, 1)))
    page.click("nav button[data-tab=image]")
    expect(page.locator("#image-limits")).to_contain_text("digits-cnn")
    page.set_input_files("#image-file", str(path))
    page.fill("#image-steps", "4")
    page.click("#image-run")
    page.wait_for_selector("#image-report", timeout=60000)
    expect(page.locator("#image-prediction")).to_contain_text(f"predicts class {int(labels[5])}")
    frame = page.frame_locator("#image-report")
    expect(frame.locator("h2", has_text="Attributions")).to_be_visible()
    assert frame.locator("img").count() >= 13
    shot(page, "image")
    assert not page.console_errors


def test_a_registered_technique_gets_a_tab(browser, tiny_model, serve_app):
    """techniques.js makes one tab per technique of GET /api/info; its Run shows the server's section HTML."""
    from dataclasses import dataclass

    import torch_shard_interpret as tsi

    @dataclass
    class Count:
        n: int

        def to_dict(self):
            return {"n": self.n}

        def to_html(self):
            return tsi._render.standalone("count", f"<p>{self.n}</p>")

    def count(model, prompt, *, times=1):
        return Count(times * int(model.to_tokens(prompt).shape[-1]))

    @dataclass(frozen=True)
    class CountOptions:
        times: int = 1
        """Multiplies the count."""

    technique = tsi.report.Technique("token-count", "Token count", compute=count, options=CountOptions,
                                     section=lambda r: f'<p id="tc-out">{r.n} tokens</p>')  # fmt: skip
    tsi.report.register_technique(technique)
    try:
        app = tsi.serve.create_app(tiny_model, attention=False, vision_model=None)
    finally:
        tsi.report.unregister_technique(technique.name)
    with serve_app(app) as url:
        pg = browser.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(url + "/")
        pg.click("nav button[data-tab=token-count]")
        expect(pg.locator("#tab-token-count")).to_be_visible()
        pg.fill("#tech-token-count-prompt", "the cat sat")
        pg.fill("#tech-token-count-times", "4")
        pg.click("#tech-token-count-run")
        expect(pg.locator("#tc-out")).to_have_text(
            f"{4 * tiny_model.to_tokens('the cat sat').shape[-1]} tokens"
        )
        pg.close()
    assert not errors
