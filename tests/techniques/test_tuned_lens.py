"""The tuned lens: identity before training, exact save/load, lower KL than the logit lens after training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

DATA = Path(__file__).parent / "data"
TEXTS = [
    "when mary and john went to the store john gave a drink to mary",
    "the cat and the dog went to the house",
    "paris is a city and rome is a city",
    "i think that this book is very good",
]


@pytest.fixture
def tiny():
    return tsi.wrap(tiny_hf_model("llama"), tokenizer=tiny_tokenizer())


def test_identity_lens_equals_logit_lens(tiny):
    lens = tsi.lens.TunedLens.identity(tiny)
    ours = lens(tiny, TEXTS[0], target=" mary")
    ref = tsi.lens.logit_lens(tiny, TEXTS[0], target=" mary")
    assert ours.probs.shape == ref.probs.shape == (2, len(tiny.to_str_tokens(TEXTS[0])), 128)
    torch.testing.assert_close(ours.probs, ref.probs, rtol=1e-5, atol=1e-6)
    assert ours.str_tokens == ref.str_tokens and ours.target == ref.target
    torch.testing.assert_close(lens.evaluate(tiny, TEXTS), tsi.lens.logit_lens_kl(tiny, TEXTS))


def test_train_save_load_round_trip(tiny, tmp_path):
    seen = []
    lens = tsi.lens.TunedLens.train(
        tiny, TEXTS, steps=6, batch_size=8, lr=1e-2, progress=False,
        checkpoint_dir=tmp_path / "ckpt", checkpoint_every=3, callback=lambda s, kl: seen.append(s),
    )  # fmt: skip
    assert seen == list(range(1, 7))
    assert not torch.equal(lens.weight[0], torch.eye(64))  # trained
    torch.testing.assert_close(lens.weight[-1], torch.eye(64))  # the last translator stays the identity
    assert (tmp_path / "ckpt" / "tuned_lens.safetensors").is_file()
    assert not [p for p in (tmp_path / "ckpt").iterdir() if p.name.startswith(".")]  # no temporary files left
    path = lens.save(tmp_path / "lens")
    meta = json.loads((path / "tuned_lens.json").read_text())
    assert meta["n_layers"] == 2 and meta["d_model"] == 64 and "model_name" in meta
    loaded = tsi.lens.TunedLens.load(path)
    a, b = lens(tiny, TEXTS[1]), loaded(tiny, TEXTS[1])
    torch.testing.assert_close(a.probs, b.probs, rtol=0, atol=1e-7)
    assert not torch.allclose(a.probs[0], tsi.lens.logit_lens(tiny, TEXTS[1]).probs[0])
    for p in tiny.module.parameters():
        assert p.grad is None and p.requires_grad  # the model was neither trained nor left frozen


def test_bad_inputs(tiny, tmp_path):
    with pytest.raises(tsi.InputError, match="non-empty"):
        tsi.lens.TunedLens.train(tiny, [], steps=1, progress=False)
    with pytest.raises(tsi.InputError, match="no tuned lens"):
        tsi.lens.TunedLens.load(tmp_path)
    other = tsi.wrap(tiny_hf_model("llama", num_hidden_layers=3), tokenizer=tiny_tokenizer())
    with pytest.raises(tsi.InputError, match="trained for 2 layers"):
        tsi.lens.TunedLens.identity(tiny)(other, TEXTS[0])


def test_embedded_model_beats_logit_lens(tmp_path):
    """SmolLM2-135M: a short training run gives lower held-out KL than the logit lens at every layer but the last."""
    from _models import embedded_model

    model = embedded_model()  # `make test` installs it: a missing model is a failure, not a skip
    train = (DATA / "lens_train.txt").read_text().splitlines()
    heldout = (DATA / "lens_heldout.txt").read_text().splitlines()[:10]
    lens = tsi.lens.TunedLens.train(
        model, train, steps=30, batch_size=16, lr=1e-3, max_tokens=500, progress=False
    )
    tuned = lens.evaluate(model, heldout)
    logit = tsi.lens.logit_lens_kl(model, heldout)
    print("\nlogit lens KL:", [round(v, 2) for v in logit.tolist()])
    print("tuned lens KL:", [round(v, 2) for v in tuned.tolist()], lens.info)
    assert tuned.shape == logit.shape == (30,)
    assert (tuned[:-1] < logit[:-1]).all(), [i for i in range(29) if tuned[i] >= logit[i]]
    assert float(tuned[-1]) == pytest.approx(0.0, abs=1e-3) and float(logit[-1]) == pytest.approx(
        0.0, abs=1e-3
    )
    result = lens(model, "The Eiffel Tower is located in the city of", target=" Paris")
    assert result.probs.shape[0] == 30 and int(result.rank()[-1, -1]) == 0


def test_cli_lens_table_html_and_training(tiny, tmp_path, capsys, monkeypatch):
    from _cli import preload
    from torch_shard_interpret.cli.main import main

    preload(monkeypatch, "tiny", tiny)
    assert main(["lens", TEXTS[0], "--model", "tiny", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "lens.html").read_text().startswith("<!DOCTYPE html>")
    assert main(["lens", TEXTS[0], "--model", "tiny", "--target", " mary"]) == 0
    assert "rank of ' mary'" in capsys.readouterr().out
    texts = tmp_path / "train.txt"
    texts.write_text("\n".join(TEXTS))
    save = tmp_path / "lens"
    assert main(["lens", "--train", str(texts), "--save", str(save), "--model", "tiny", "--steps", "2"]) == 0
    assert main(["lens", TEXTS[1], "--model", "tiny", "--tuned", str(save)]) == 0
    assert "tuned lens" in capsys.readouterr().out
    assert main(["lens", "--train", str(texts), "--model", "tiny"]) == 2
    assert "--save" in capsys.readouterr().err
    assert main(["lens", "  ", "--model", "tiny"]) == 2
