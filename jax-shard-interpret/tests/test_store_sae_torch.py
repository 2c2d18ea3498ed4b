"""Shared file formats: a store harvested in JAX opens with tsi.store.open and the reverse; SAEs in the
SAELens layout move both ways with equal encodings; SAE latents as sites."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax_shard_interpret as jsi  # noqa: E402
import torch_shard_interpret as tsi  # noqa: E402

SITES = ["blocks.0.resid_post", "blocks.1.mlp.out"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    folder = tmp_path_factory.mktemp("llama")
    LlamaForCausalLM(cfg).eval().save_pretrained(folder, safe_serialization=True)
    return tsi.load(str(folder)), jsi.load(str(folder))


def test_store_both_ways(pair, tmp_path):
    tm, jm = pair
    ids = np.random.default_rng(0).integers(0, 64, size=(10, 8))
    js = jsi.store.harvest(jm, ids, SITES, tmp_path / "jax", context=8, batch_size=4, shard_rows=4)
    assert len(js) == 80 and len(js.shards) == 3
    opened = tsi.store.open(tmp_path / "jax", verify="all")
    assert opened.sites == SITES and len(opened) == 80
    np.testing.assert_array_equal(opened.tokens().numpy(), ids.reshape(-1))
    _, cache = jsi.run(jm, jnp.asarray(ids, jnp.int32), cache=SITES)
    for s in SITES:
        np.testing.assert_allclose(opened.read(s).numpy(), np.asarray(cache[s]).reshape(80, -1), atol=1e-6)
    ts = tsi.store.harvest(
        tm, torch.tensor(ids), sites=SITES, path=tmp_path / "torch", context=8, progress=False
    )
    back = jsi.store.open(tmp_path / "torch")
    assert back.sites == SITES and len(back) == len(ts) == 80
    np.testing.assert_array_equal(back.tokens(), ids.reshape(-1))
    for s in SITES:
        np.testing.assert_allclose(back.read(s, 5, 50), opened.read(s, 5, 50).numpy(), atol=1e-4)
    (tmp_path / "torch" / ts.shards[0]["file"]).write_bytes(b"damaged")
    with pytest.raises(jsi.JsiError, match="sha256"):
        jsi.store.open(tmp_path / "torch").read(SITES[0])


@pytest.mark.parametrize("kind", ["relu", "topk", "jumprelu"])
def test_sae_both_ways_and_latents_as_sites(pair, tmp_path, kind):
    _, jm = pair
    # jumprelu: a low threshold, so that latents fire on the model's activations (the default 0.5 is tuned for
    # activations normalised while training, and a random SAE would keep every latent at 0).
    kw = {"topk": {"k": 4}, "jumprelu": {"jumprelu_init_threshold": 0.01}}.get(kind, {})
    torch.manual_seed(1)
    ts = tsi.sae.SAE(d_in=32, d_sae=48, kind=kind, hook_name="blocks.0.resid_post", **kw)
    with torch.no_grad():
        for p in ts.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    tsi.sae.save(ts, tmp_path / "t")
    js = jsi.sae.load(tmp_path / "t")
    x = np.random.default_rng(2).standard_normal((5, 32)).astype(np.float32)
    with torch.no_grad():
        tz, tx = ts.encode(torch.tensor(x)).numpy(), ts(torch.tensor(x)).numpy()
    np.testing.assert_allclose(np.asarray(js.encode(jnp.asarray(x))), tz, atol=1e-5)
    np.testing.assert_allclose(np.asarray(js(jnp.asarray(x))), tx, atol=1e-5)
    jsi.sae.save(js, tmp_path / "j")
    ts2 = tsi.sae.load(tmp_path / "j")
    with torch.no_grad():
        np.testing.assert_allclose(ts2.encode(torch.tensor(x)).numpy(), tz, atol=1e-5)
    ids = jnp.asarray([[3, 17, 42, 5, 9]], jnp.int32)
    out0, c0 = jsi.run(jm, ids, cache="blocks.0.resid_post")
    out1, c1 = jsi.run(jm, ids, interventions=jsi.sae.attach(js))
    np.testing.assert_allclose(out1, out0, atol=1e-5)  # the error term keeps the output unchanged
    z = c1["blocks.0.resid_post.sae.latents"]
    np.testing.assert_allclose(z, js.encode(c0["blocks.0.resid_post"]), atol=1e-5)
    np.testing.assert_allclose(
        js.decode(z) + c1["blocks.0.resid_post.sae.error"], c0["blocks.0.resid_post"], atol=1e-5
    )
    out2, _ = jsi.run(jm, ids, interventions=jsi.sae.attach(js, latents=jsi.Scale(0.0)))
    assert float(jnp.abs(out2 - out0).max()) > 1e-5  # ablating every latent changes the output
