"""Messages that say what is wrong and what is right (issue 10 section 5, issue 18), on a tiny model."""

from __future__ import annotations

import pytest

import torch_shard_interpret as tsi
from _cli import preload
from torch_shard_interpret.cli.main import main
from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

CLEAN = "when mary and john went to the store , john gave a drink to"
CORRUPT = "when john and mary went to the store , mary gave a drink to"


@pytest.fixture
def tiny(monkeypatch):
    model = tsi.wrap(tiny_hf_model("llama", seed=1), tiny_tokenizer())
    preload(monkeypatch, "tiny", model)
    return model


def _one_line_error(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("tsi: error: "), err
    return err[0]


def test_harvest_context_error_names_the_models_limit(tiny, tmp_path, capsys):
    data = tmp_path / "d.txt"
    data.write_text("mary and john went to the store\n" * 50)
    limit = tiny.module.config.max_position_embeddings
    argv = ["harvest", "--model", "tiny", "--data", str(data), "--sites", "blocks.0.resid_post",
            "--out", str(tmp_path / "acts"), "--context", str(limit + 1)]  # fmt: skip
    err = _one_line_error(argv, capsys)
    assert f"at most {limit} tokens" in err and "max_position_embeddings" in err
    assert f"--context {limit} or less" in err and "shorten" not in err
    assert not (tmp_path / "acts").exists()
    # at the limit itself it runs
    argv[-1] = str(limit)
    assert main(argv) == 0 and tsi.store.open(tmp_path / "acts").context == limit


def test_steer_refuses_a_zero_vector(tiny, capsys):
    argv = ["steer", "--model", "tiny", "--positive", "mary went home", "--negative", "mary went home",
            "--site", "blocks.1.resid_post", "--max-new-tokens", "2"]  # fmt: skip
    err = _one_line_error(argv, capsys)
    assert "steering vector at blocks.1.resid_post is zero" in err and "give texts that differ" in err
    # texts that differ give a vector, and the command runs
    argv[argv.index("--negative") + 1] = "john stayed at the store"
    assert main(argv) == 0 and "|vector|" in capsys.readouterr().out


@pytest.mark.parametrize(
    "direction, meaning",
    [
        ("denoise", "1 = the clean behaviour fully restored"),
        ("noise", "1 = the clean behaviour fully destroyed"),
    ],
)
def test_patch_table_header_says_what_an_effect_of_one_means(tiny, tmp_path, capsys, direction, meaning):
    argv = ["patch", "--model", "tiny", "--clean", CLEAN, "--corrupt", CORRUPT, "--target", "mary",
            "--baseline", "john", "--direction", direction, "--out", str(tmp_path / "o"), "--top", "3"]  # fmt: skip
    assert main(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert meaning in out
    assert ("restored" in out) == (direction == "denoise")
