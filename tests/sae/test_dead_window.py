"""The dead-latent window: ``min(10M, total tokens / 10, DEAD_TOKENS_PER_LATENT * d_sae)`` tokens without firing.

Small dictionaries get a window proportional to their size (a latent stuck between two toy features, firing once
in 2,000 tokens, was never dead under ``total / 10`` and its feature stayed unlearnt); from 10,000 latents up the
window is what it was. An explicit ``dead_after_tokens`` always wins.
"""

from __future__ import annotations

from torch_shard_interpret.sae import SAEConfig, TrainConfig
from torch_shard_interpret.sae._config import DEAD_TOKENS_PER_LATENT
from torch_shard_interpret.sae._trainer import Dist, Trainer


def _trainer(d_sae: int, steps: int = 1000, batch: int = 4096, **tcfg) -> Trainer:
    cfg = SAEConfig(d_in=8, d_sae=d_sae, kind="jumprelu")
    return Trainer(cfg, TrainConfig(batch_size=batch, **tcfg), steps, Dist(False))


def test_small_dictionaries_get_a_window_proportional_to_their_size():
    assert _trainer(40).dead_after == DEAD_TOKENS_PER_LATENT * 40 < 1000 * 4096 // 10
    assert _trainer(100).dead_after == DEAD_TOKENS_PER_LATENT * 100


def test_large_dictionaries_keep_the_old_window():
    assert _trainer(16_384).dead_after == 1000 * 4096 // 10  # total / 10 is the smallest term
    assert _trainer(65_536, steps=100_000).dead_after == 10_000_000


def test_the_window_is_never_below_one_batch_and_an_explicit_value_wins():
    assert _trainer(2, batch=4096).dead_after == 4096
    assert _trainer(40, dead_after_tokens=123).dead_after == 123
