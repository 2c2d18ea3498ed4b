"""Harvest on the embedded SmolLM2-135M: one forward records every site, values equal a plain cached run."""

from __future__ import annotations

import torch

import torch_shard_interpret as tsi
from _models import embedded_model

TEXTS = [
    "The Eiffel Tower is located in the city of Paris.",
    "When Mary and John went to the store, John gave a drink to Mary.",
    "A cat sat on the mat and looked out of the window at the rain.",
] * 3


def test_embedded_harvest_matches_a_cached_run(tmp_path):
    model = embedded_model()
    sites = ["blocks.6.resid_post", "blocks.29.resid_post"]
    store = tsi.store.harvest(model, TEXTS, sites=sites, path=tmp_path / "s", context=32, batch_size=2,
                              shard_rows=2, progress=False)  # fmt: skip
    assert store.manifest["model"]["d_model"] == 576 and store.shape("blocks.6.resid_post") == (576,)
    assert store.manifest["tokenizer"] and len(store) == store.manifest["n_sequences"] * 32 > 0
    # a stable name, as docs/store.md shows, and where the files were kept apart
    assert store.manifest["model"]["name"] == "smollm2-135m" and store.manifest["model"]["path"].endswith(
        "smollm2-135m"
    )
    ids = store.tokens().view(-1, 32)
    run = model.run(ids, cache=sites)
    for site in sites:
        torch.testing.assert_close(store.read(site), run.cache[site].reshape(-1, 576), atol=1e-4, rtol=1e-4)
    assert model.tokenizer.eos_token_id in ids.flatten().tolist()  # documents are separated by EOS
