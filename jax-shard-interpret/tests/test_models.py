"""Reference decoders: NNX == Equinox, canonical sites, KV cache, heads selectors, the embedded SmolLM2."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import jax_shard_interpret as jsi
from jax_shard_interpret import models

IDS = jnp.asarray([[3, 17, 42, 5, 9, 33, 1, 60, 12, 7]], jnp.int32)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_nnx_equals_equinox_and_kv_cache(tiny, arch):
    a, b = tiny(arch, "nnx"), tiny(arch, "eqx")
    assert a.adapter.name == arch and b.adapter.name == arch
    assert a.sites("blocks.*") == b.sites("blocks.*")
    oa, ca = jsi.run(a, IDS, cache="*")
    ob, cb = jsi.run(b, IDS, cache="*")
    np.testing.assert_allclose(oa, ob, atol=1e-6)
    for name in jsi._sites.canonical_names(2):
        np.testing.assert_allclose(ca[name], cb[name], atol=1e-6, err_msg=name)
    cfg = a.cfg
    assert ca["blocks.1.attn.z"].shape == (1, 10, cfg.n_heads, cfg.d_head)
    assert ca["blocks.0.attn.pattern"].shape == (1, cfg.n_heads, 10, 10)
    assert ca["blocks.0.mlp.post"].shape == (1, 10, cfg.d_mlp)
    np.testing.assert_allclose(ca["blocks.0.attn.pattern"].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ca["blocks.1.resid_pre"], ca["blocks.0.resid_post"], atol=0)
    resid = ca["blocks.0.resid_pre"] + ca["blocks.0.attn.out"] + ca["blocks.0.mlp.out"]
    np.testing.assert_allclose(resid, ca["blocks.0.resid_post"], atol=1e-5)
    kv = models.init_kv(a.module.config, 1, 16)
    (l1, kv), _ = jsi.run(a, IDS[:, :6], kwargs={"kv": kv, "offset": 0})
    (l2, _), _ = jsi.run(a, IDS[:, 6:], kwargs={"kv": kv, "offset": 6}, offset=6)
    np.testing.assert_allclose(jnp.concatenate([l1, l2], 1), oa, atol=1e-5)


def test_heads_selector_on_attn_z(tiny):
    m = tiny("llama", "nnx")
    _, c = jsi.run(
        m, IDS, cache="blocks.0.attn.z", interventions={"blocks.0.attn.z": jsi.Ablate("zero", heads=[1, 3])}
    )
    z = np.asarray(c["blocks.0.attn.z"])
    assert (z[:, :, [1, 3]] == 0).all() and (np.abs(z[:, :, [0, 2]]) > 0).any()
    out0, _ = jsi.run(m, IDS)
    out1, _ = jsi.run(m, IDS, interventions={"blocks.0.attn.z": jsi.Ablate("zero", heads=[1, 3])})
    assert float(jnp.abs(out0 - out1).max()) > 1e-4


def test_embedded_model_answers_paris():
    jm = jsi.load("smollm2-135m")
    assert jm.cfg.n_layers == 30 and jm.cfg.d_model == 576
    out, cache = jsi.run(jm, "The Eiffel Tower is located in the city of", cache="blocks.*.resid_post")
    assert len(cache) == 30
    assert jm.tokenizer.decode([int(out[0, -1].argmax())]) == " Paris"


def test_missing_embedded_model_says_how(tmp_path, monkeypatch):
    monkeypatch.setenv("TSI_CACHE", str(tmp_path))
    with pytest.raises(jsi.ModelError, match="tsi models"):
        jsi.load("smollm2-135m")
