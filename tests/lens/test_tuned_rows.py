"""The tuned lens's ``include_embed`` / ``return_logits`` and the ``tsi lens`` options that expose them.

The reference readout is written out by hand: the lens's own ``weight``/``bias`` applied to the cached
residual stream, then the model's final norm and unembedding modules called directly.
"""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
from _cli import preload
from torch_shard_interpret.cli.main import main
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

PROMPT = "when mary and john went to the store john gave a drink to"
TEXTS = ["the cat and the dog went to the house", "paris is a city and rome is a city", PROMPT]


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def model(request):
    return tsi.wrap(tiny_hf_model(request.param), tokenizer=tiny_tokenizer())


@pytest.fixture(scope="module")
def trained(model):
    return tsi.lens.TunedLens.train(model, TEXTS, steps=4, batch_size=8, lr=1e-2, progress=False)


@torch.no_grad()
def readout(model, resid: torch.Tensor) -> torch.Tensor:
    norm, head = model.site("final_norm").module, model.site("logits").module
    return head(norm(resid)).float()


def test_embed_row_and_logits_match_a_by_hand_readout(model, trained):
    result = trained(model, PROMPT, include_embed=True, return_logits=True, target=" mary")
    run = model.run(PROMPT, cache=["blocks.0.resid_pre", "blocks.*.resid_post"])
    n, pos = model.cfg.n_layers, run.tokens.shape[1]
    assert result.layer_names == ["blocks.0.resid_pre", *(f"blocks.{i}.resid_post" for i in range(n))]
    assert result.logits is not None and result.logits.shape == result.probs.shape == (n + 1, pos, 128)
    # the embedding row has no translator: the logit lens of the embeddings
    torch.testing.assert_close(result.logits[0], readout(model, run.cache["blocks.0.resid_pre"][0]))
    for i in range(n):
        h = run.cache[f"blocks.{i}.resid_post"][0].float()
        want = readout(model, h @ trained.weight[i].T + trained.bias[i])
        torch.testing.assert_close(result.logits[i + 1], want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(result.probs, result.logits.softmax(-1))
    torch.testing.assert_close(result.log_probs, result.logits.log_softmax(-1))
    # the trained rows differ from the logit lens (so the check above is not the identity's)
    plain = tsi.lens.logit_lens(model, PROMPT, include_embed=True, return_logits=True)
    torch.testing.assert_close(result.logits[0], plain.logits[0])
    assert not torch.allclose(result.logits[1], plain.logits[1], atol=1e-3)


def test_defaults_keep_one_row_per_block_and_no_logits(model, trained):
    plain = trained(model, PROMPT)
    full = trained(model, PROMPT, include_embed=True, return_logits=True)
    assert plain.logits is None and plain.n_layers == model.cfg.n_layers == full.n_layers - 1
    torch.testing.assert_close(full.probs[1:], plain.probs)
    part = trained(model, PROMPT, include_embed=True, return_logits=True, positions=[-1])
    torch.testing.assert_close(part.logits, full.logits[:, -1:])


def test_cli_lens_shows_the_embedding_row_and_logits(monkeypatch, tmp_path, capsys):
    model = preload(monkeypatch, "tiny", tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer()))
    lens = tsi.lens.TunedLens.train(model, TEXTS, steps=3, batch_size=8, lr=1e-2, progress=False)
    lens.save(tmp_path / "lens")
    base = ["lens", PROMPT, "--model", "tiny", "--target", " mary"]
    for extra in ([], ["--tuned", str(tmp_path / "lens")]):
        assert main([*base, *extra]) == 0
        out = capsys.readouterr().out
        assert "emb" not in out and "logit" not in out.replace("logit lens", "")
        assert main([*base, *extra, "--include-embed", "--return-logits"]) == 0
        out = capsys.readouterr().out
        want = (lens if extra else tsi.lens.TunedLens.identity(model))(
            model, PROMPT, include_embed=True, return_logits=True, target=" mary"
        )
        emb_row = next(line for line in out.splitlines() if line.strip("│ ").startswith("emb"))
        assert f"{float(want.logits[0, -1, want.target]):+.2f}" in emb_row
        last = next(
            line for line in out.splitlines() if line.strip("│ ").startswith(str(model.cfg.n_layers - 1))
        )
        assert f"{float(want.logits[-1, -1, want.target]):+.2f}" in last
    monkeypatch.setenv("COLUMNS", "400")  # rich fits the table to the width; keep every cell whole
    assert main(["lens", PROMPT, "--model", "tiny", "--include-embed", "--return-logits"]) == 0
    out = capsys.readouterr().out
    top = tsi.lens.logit_lens(model, PROMPT, include_embed=True, return_logits=True).logits[0, -1].max()
    assert f"({float(top):+.1f})" in next(
        line for line in out.splitlines() if line.strip("│ ").startswith("emb")
    )
