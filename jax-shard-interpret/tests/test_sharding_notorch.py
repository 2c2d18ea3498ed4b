"""Subprocess checks: sharded runs on 4 host devices equal unsharded ones; jsi runs with torch unimportable."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = str(Path(__file__).parents[1] / "src")

SHARDED = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import jax_shard_interpret as jsi
    from jax_shard_interpret import models
    assert len(jax.devices()) == 4, jax.devices()
    mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"))
    for fw in ("nnx", "eqx"):
        m = models.random(models.tiny_config("llama"), fw, seed=0)
        ids = jnp.asarray(np.random.default_rng(0).integers(0, 64, (4, 8)), jnp.int32)
        vec = jnp.linspace(-1, 1, 32)
        ivs = {"blocks.0.resid_post": jsi.Add(vec, positions=[2, 5])}
        ref_out, ref_cache = jsi.run(m, ids, cache="blocks.*.resid_post", interventions=ivs)
        if fw == "nnx":
            ref_patch = jsi.patching.activation_patching(m, ids[:1], ids[1:2], lambda l: l[:, -1, 3] - l[:, -1, 4])
            ref_gen = jsi.steering.generate(m, ids, 4, interventions=ivs)
        # shard every weight matrix's first axis over "model" (where it divides), the batch over "data"
        def shard(x):
            if getattr(x, "ndim", 0) >= 2 and x.shape[0] % 2 == 0:
                return jax.device_put(x, NamedSharding(mesh, P("model")))
            return jax.device_put(x, NamedSharding(mesh, P()))
        if fw == "nnx":
            from flax import nnx
            gd, state = nnx.split(m.module)
            sm = jsi.wrap(nnx.merge(gd, jax.tree_util.tree_map(shard, state)))
        else:
            sm = jsi.wrap(jax.tree_util.tree_map(shard, m.module))
        sids = jax.device_put(ids, NamedSharding(mesh, P("data")))
        out, cache = jsi.run(sm, sids, cache="blocks.*.resid_post", interventions=ivs)
        assert len(out.sharding.device_set) == 4, out.sharding
        np.testing.assert_allclose(out, ref_out, atol=1e-5)
        for k in ref_cache:
            np.testing.assert_allclose(cache[k], ref_cache[k], atol=1e-5)
        if fw == "eqx":
            continue  # patching and generation run the same jsi.run; checked once, on NNX
        p = jsi.patching.activation_patching(sm, sids[:1], sids[1:2], lambda l: l[:, -1, 3] - l[:, -1, 4])
        np.testing.assert_allclose(p.effects, ref_patch.effects, atol=1e-4)
        np.testing.assert_array_equal(jsi.steering.generate(sm, sids, 4, interventions=ivs), ref_gen)
    print("SHARDED-OK")
    """
)

NO_TORCH = textwrap.dedent(
    """
    import sys
    sys.modules["torch"] = None  # any import of torch now fails
    import jax.numpy as jnp
    import jax_shard_interpret as jsi
    from jax_shard_interpret import models
    for fw in ("nnx", "eqx"):
        m = models.random(models.tiny_config("gpt2"), fw)
        out, cache = jsi.run(m, jnp.zeros((1, 5), jnp.int32), cache="blocks.*.resid_post",
                             interventions={"blocks.0.attn.z": jsi.Ablate("zero", heads=[0])})
        assert out.shape == (1, 5, 64) and len(cache) == 2
    jsi.lens.logit_lens(m, jnp.zeros((1, 5), jnp.int32))
    assert "torch" not in [k for k, v in sys.modules.items() if v is not None]
    print("NOTORCH-OK")
    """
)


def _run(code: str, **env: str) -> str:
    full = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), **env}
    proc = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_sharded_equals_unsharded_on_4_host_devices():
    out = _run(SHARDED, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    assert "SHARDED-OK" in out


def test_runs_without_torch():
    assert "NOTORCH-OK" in _run(NO_TORCH)
