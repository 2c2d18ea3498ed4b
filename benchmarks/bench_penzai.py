"""penzai 0.2.5 side of benchmarks/bench_jax.py: capture the 30 block outputs of a penzai llama-like model
with SmolLM2-135M's shape (random weights; penzai runs its own model classes only), jitted, on CPU.

penzai's capture: ``SaveIntermediate`` layers inserted after every ``TransformerBlock`` with
``pz.select(...).insert_after``; the jitted function binds the model's variables (``pz.unbind_variables``
outside, ``bind_variables`` inside) and returns the saved values with the logits.
Run in an environment with penzai (for example the torch-free
``jax-shard-interpret/.venv-notorch``): ``python benchmarks/bench_penzai.py``.
"""

from __future__ import annotations

import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from penzai import pz
from penzai.models.transformer import model_parts
from penzai.models.transformer.variants import llamalike_common as ll
from penzai.toolshed.save_intermediates import SaveIntermediate


def main(rounds: int = 15, batch: int = 4, seq: int = 64) -> None:
    cfg = ll.LlamalikeTransformerConfig(
        num_kv_heads=3, query_head_multiplier=3, embedding_dim=576, projection_dim=64, mlp_hidden_dim=1536,
        num_decoder_blocks=30, vocab_size=49152, mlp_variant="swiglu", tie_embedder_and_logits=True,
        rope_wavelength=100000.0, rms_norm_eps=1e-5,
    )  # fmt: skip
    model = ll.build_llamalike_transformer(cfg, init_base_rng=jax.random.key(0))
    capt = pz.select(model).at_instances_of(model_parts.TransformerBlock).insert_after(SaveIntermediate())
    tokens = pz.nx.wrap(
        jnp.asarray(np.random.default_rng(0).integers(0, 49152, (batch, seq)), jnp.int32)
    ).tag("batch", "seq")

    def jitted(layer, capture: bool):
        unbound, variables = pz.unbind_variables(layer, freeze=True)

        @jax.jit
        def f(variables, t):
            m = pz.bind_variables(unbound, [v.unfreeze_as_copy() for v in variables])
            out = m(t).unwrap("batch", "seq", "vocabulary")
            if not capture:
                return out
            saved = [s.saved.value for s in pz.select(m).at_instances_of(SaveIntermediate).get_sequence()]
            return out, saved

        return lambda: f(variables, tokens)

    plain, cap = jitted(model, False), jitted(capt, True)
    jax.block_until_ready(plain())
    out, saved = cap()
    n_saved = len(saved)
    times = {"penzai plain jitted forward": [], "penzai SaveIntermediate x 30": []}
    for r in range(rounds):
        for k in list(times) if r % 2 == 0 else list(times)[::-1]:
            t0 = time.perf_counter()
            jax.block_until_ready(plain() if k.endswith("forward") else cap())
            times[k].append(time.perf_counter() - t0)
    base = times["penzai plain jitted forward"]
    res = {k: {"median_ms": 1e3 * statistics.median(v), "ratio": statistics.median(a / b for a, b in zip(v, base, strict=True))}
           for k, v in times.items()}  # fmt: skip
    res["saved_values"] = n_saved
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
