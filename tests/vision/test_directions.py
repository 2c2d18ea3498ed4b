"""Direction objectives from what the rest of the library makes: SAE latents, probes and steering vectors."""

from __future__ import annotations

import pytest
import torch

import torch_shard_interpret as tsi
import torch_shard_interpret.vision as tv
from torch_shard_interpret.probes._linear import ProbeResult
from torch_shard_interpret.sae._config import SAEConfig
from torch_shard_interpret.sae._sae import make
from torch_shard_interpret.steering._vector import SteeringVector


def test_sae_probe_and_steering_directions(cnn):
    acts = {"stages.3": torch.randn(4, 64, 4, 4)}
    sae = make(SAEConfig(d_in=64, d_sae=128, k=8), seed=0)
    from_sae = tv.direction("stages.3", sae, index=7)
    assert torch.allclose(from_sae(acts), tv.direction("stages.3", sae.W_dec[7])(acts))
    assert "SAE latent 7" in from_sae.name
    w = torch.randn(10, 64)
    probe = ProbeResult("stages.3", "classification", 0.9, 0.1, w, torch.zeros(10))
    assert torch.allclose(
        tv.direction("stages.3", probe, index=3)(acts), tv.direction("stages.3", w[3])(acts)
    )
    steer = SteeringVector(torch.randn(64), "stages.3")
    assert torch.allclose(tv.direction("stages.3", steer)(acts), tv.direction("stages.3", steer.vector)(acts))
    assert torch.allclose(
        tv.direction("stages.3", w, index=2)(acts), tv.direction("stages.3", w[2][None])(acts)
    )
    vis = tv.visualize(cnn, from_sae, steps=8, progress=False)
    assert vis.objective.startswith("direction(stages.3, SAE latent 7") and vis.history.shape == (8,)
    with pytest.raises(tsi.InputError, match="needs the latent"):
        tv.direction("stages.3", sae)
    with pytest.raises(tsi.InputError, match="10 class rows"):
        tv.direction("stages.3", probe)
    with pytest.raises(tsi.InputError, match="one vector"):
        tv.direction("stages.3", w)
