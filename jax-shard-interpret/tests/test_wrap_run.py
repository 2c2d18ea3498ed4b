"""jsi.wrap on arbitrary Flax NNX and Equinox modules; jsi.run with caches and interventions under jit/vmap/grad."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jax_shard_interpret as jsi
from jax_shard_interpret import _run


class NBlock(nnx.Module):
    def __init__(self, rngs):
        self.mlp = nnx.Linear(4, 4, rngs=rngs)

    def __call__(self, x):
        return x + self.mlp(x)


class NNet(nnx.Module):
    def __init__(self, rngs):
        self.layers = nnx.List([NBlock(rngs) for _ in range(3)])

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class ELinear(eqx.Module):
    weight: jax.Array

    def __init__(self, key):
        self.weight = jax.random.normal(key, (4, 4)) * 0.5

    def __call__(self, x):
        return x @ self.weight.T


class EBlock(eqx.Module):
    mlp: ELinear

    def __init__(self, key):
        self.mlp = ELinear(key)

    def __call__(self, x):
        return x + self.mlp(x)


class ENet(eqx.Module):
    layers: list

    def __init__(self, key):
        self.layers = [EBlock(k) for k in jax.random.split(key, 3)]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def _models():
    return {"nnx": NNet(nnx.Rngs(0)), "eqx": ENet(jax.random.PRNGKey(0))}


X = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 4)), jnp.float32)


@pytest.mark.parametrize("kind", ["nnx", "eqx"])
def test_raw_sites_cache_and_interventions(kind):
    m = jsi.wrap(_models()[kind])
    assert m.backend == kind
    assert {":input", ":output", "layers.0:input", "layers.2:output"} <= set(m.sites())
    out, cache = jsi.run(m, X, cache="layers.*:output")
    assert "layers.1:output" in cache
    np.testing.assert_allclose(cache["layers.2:output"], out, rtol=0, atol=0)
    # the input of block 1 is the output of block 0
    _, c2 = jsi.run(m, X, cache=["layers.1:input", "layers.0:output"])
    np.testing.assert_array_equal(c2["layers.1:input"], c2["layers.0:output"])
    # Set the output of block 0 to zero at position 2, batch 1: the cache sees the edited value
    _, c3 = jsi.run(
        m, X, cache="layers.0:output", interventions={"layers.0:output": jsi.Set(0.0, positions=2, batch=1)}
    )
    v = np.asarray(c3["layers.0:output"])
    assert (v[1, 2] == 0).all() and (v[0, 2] != 0).all() and (v[1, 1] != 0).all()
    np.testing.assert_allclose(v[0], np.asarray(cache["layers.0:output"])[0], atol=1e-6)
    # Add, Scale(0) == Ablate zero, ProjectOut, Fn
    vec = jnp.arange(4.0)
    _, c4 = jsi.run(m, X, cache="layers.0:output", interventions={"layers.0:output": jsi.Add(vec, scale=2.0)})
    np.testing.assert_allclose(c4["layers.0:output"], cache["layers.0:output"] + 2 * vec, atol=1e-5)
    o5, _ = jsi.run(m, X, interventions={"layers.1:output": jsi.Scale(0.0)})
    o6, _ = jsi.run(m, X, interventions={"layers.1:output": jsi.Ablate("zero")})
    np.testing.assert_allclose(o5, o6, atol=1e-6)
    d = jnp.asarray([1.0, 0, 0, 0])
    _, c7 = jsi.run(m, X, cache="layers.0:output", interventions={"layers.0:output": jsi.ProjectOut(d)})
    assert float(jnp.abs(c7["layers.0:output"][..., 0]).max()) < 1e-6
    _, c8 = jsi.run(
        m, X, cache="layers.0:output", interventions={"layers.0:output": jsi.Fn(lambda v, ctx: -v)}
    )
    np.testing.assert_allclose(c8["layers.0:output"], -cache["layers.0:output"], atol=1e-6)


@pytest.mark.parametrize("kind", ["nnx", "eqx"])
def test_jit_once_vmap_and_grad(kind):
    m = _models()[kind]

    def f(v):
        out, _ = jsi.run(m, X, interventions={"layers.1:output": jsi.Add(v)})
        return out.sum()

    before = _run._jitted._cache_size()
    for k in range(3):
        jsi.run(m, X, interventions={"layers.1:output": jsi.Add(jnp.full(4, float(k)))})
    assert _run._jitted._cache_size() == before + 1  # new values, same structure: one compile
    jsi.run(m, X, interventions={"layers.1:output": jsi.Add(jnp.zeros(4), positions=[0])})
    assert _run._jitted._cache_size() == before + 2  # a new selector is a new structure
    vs = jnp.eye(4)
    batched = jax.vmap(f)(vs)
    looped = jnp.stack([f(v) for v in vs])
    np.testing.assert_allclose(batched, looped, rtol=1e-5)
    g = jax.grad(f)(jnp.zeros(4))
    eps = 1e-2
    fd = jnp.asarray([(f(eps * e) - f(-eps * e)) / (2 * eps) for e in jnp.eye(4)])
    np.testing.assert_allclose(g, fd, rtol=2e-2, atol=2e-2)
    outer = jax.jit(lambda x: jsi.run(m, x, cache="layers.0:output")[1]["layers.0:output"])(X)
    np.testing.assert_allclose(outer, jsi.run(m, X, cache="layers.0:output")[1]["layers.0:output"], atol=1e-6)


def test_errors_are_one_clear_sentence():
    m = jsi.wrap(_models()["nnx"])
    with pytest.raises(jsi.SiteNotFoundError, match="did you mean 'layers.1:output'"):
        jsi.run(m, X, cache="layers.1:outptu")
    with pytest.raises(jsi.InterventionError, match="position 9 is out of range"):
        jsi.run(m, X, interventions={"layers.0:output": jsi.Set(0.0, positions=9)})
    with pytest.raises(jsi.InterventionError, match="broadcasts"):
        jsi.run(m, X, interventions={"layers.0:output": jsi.Set(jnp.zeros(3))})
    with pytest.raises(jsi.ModelError, match="Flax NNX module or an Equinox module"):
        jsi.wrap(lambda x: x)
    # the classes are restored after a failure: a plain call is unhooked
    assert "__call__" not in NBlock.__dict__ or NBlock.__dict__["__call__"].__name__ == "__call__"
    np.testing.assert_allclose(m.module(X), jsi.run(m, X)[0], atol=1e-6)


def test_patch_from_cache_and_mean_resample_ablation():
    m = jsi.wrap(_models()["nnx"])
    other = X[::-1] * 2.0
    _, src = jsi.run(m, other, cache="layers.0:output")
    out_src, _ = jsi.run(m, other)
    # patching every position of the block-0 output from the other run reproduces that run's output
    out, _ = jsi.run(m, X, interventions={"layers.0:output": jsi.Patch(src)})
    np.testing.assert_allclose(out, out_src, atol=1e-5)
    # one position only: the other positions of block 0 keep this run's values
    _, c = jsi.run(
        m, X, cache="layers.0:output", interventions={"layers.0:output": jsi.Patch(src, positions=[-1])}
    )
    _, base = jsi.run(m, X, cache="layers.0:output")
    np.testing.assert_allclose(c["layers.0:output"][:, -1], src["layers.0:output"][:, -1], atol=1e-6)
    np.testing.assert_allclose(c["layers.0:output"][:, :-1], base["layers.0:output"][:, :-1], atol=1e-6)
    _, c = jsi.run(m, X, cache="layers.0:output", interventions={"layers.0:output": jsi.Ablate("mean")})
    mean = base["layers.0:output"].mean(axis=(0, 1))
    np.testing.assert_allclose(c["layers.0:output"], np.broadcast_to(mean, X.shape), atol=1e-6)
    _, c = jsi.run(m, X, cache="layers.0:output", interventions={"layers.0:output": jsi.Ablate("resample")})
    np.testing.assert_allclose(
        c["layers.0:output"][0], base["layers.0:output"][1], atol=1e-6
    )  # batch 2: swapped
