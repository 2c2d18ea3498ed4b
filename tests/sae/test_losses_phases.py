"""The first training phase of BatchTopK (per-token TopK) and JumpReLU (ReLU + L1), and AuxK for JumpReLU."""

from __future__ import annotations

import pytest
import torch

from torch_shard_interpret.sae import SAE, _losses


def _batch(n=64, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    # rows of very different norms, so that selecting over the batch gives uneven counts per row
    return torch.randn(n, d, generator=g) * torch.linspace(0.1, 3.0, n).unsqueeze(1)


def _step(sae, x, step=None, dead=None):
    var = (x - x.mean(0)).pow(2).sum()
    return _losses.forward_loss(sae, x, x, n_global=x.shape[0], total_var=var, dead=dead, step=step)


def test_batchtopk_selects_per_token_first_then_over_the_batch(monkeypatch):
    monkeypatch.setitem(_losses.EARLY_STEPS, "batchtopk", 2)
    sae = SAE(d_in=8, d_sae=32, kind="batchtopk", k=2, seed=0)
    x = _batch()
    _step(sae, x)  # an evaluation pass updates nothing
    assert float(sae.threshold) == 0.0
    for step in range(2):
        out = _step(sae, x, step)
        assert float(out.l0) <= 2 * x.shape[0]
        assert float(sae.threshold) == 0.0  # no threshold estimate during the TopK phase
    out = _step(sae, x, 2)
    pre = torch.relu(sae.pre_acts(x))
    counts = (pre >= pre.flatten().topk(2 * x.shape[0]).values.min()).sum(-1)
    assert int(counts.max()) > 2 and int(counts.min()) < 2  # batch-level: uneven per row
    assert float(sae.threshold) > 0.0


def test_jumprelu_trains_as_relu_first(monkeypatch):
    monkeypatch.setitem(_losses.EARLY_STEPS, "jumprelu", 1)
    sae = SAE(d_in=8, d_sae=32, kind="jumprelu", seed=0, jumprelu_init_threshold=0.5)
    x = _batch()
    n_relu = int((torch.relu(sae.pre_acts(x)) > 0).sum())
    n_jump = int((sae.pre_acts(x) > 0.5).sum())
    assert n_jump < n_relu
    out = _step(sae, x, 0)
    assert int(out.l0) == n_relu
    out.loss.backward()
    assert sae.log_threshold.grad is None  # the threshold is not trained in the ReLU phase
    sae.zero_grad(set_to_none=True)
    out = _step(sae, x, 1)
    assert int(out.l0) == n_jump
    out.loss.backward()
    assert sae.log_threshold.grad is not None


@pytest.mark.parametrize("kind", ["jumprelu", "relu"])
def test_auxk_applies_to_jumprelu_not_relu(kind, monkeypatch):
    monkeypatch.setitem(_losses.EARLY_STEPS, kind, 0)
    sae = SAE(d_in=8, d_sae=32, kind=kind, seed=0)
    dead = torch.zeros(32, dtype=torch.bool)
    dead[:10] = True
    out = _step(sae, _batch(), 0, dead=dead)
    assert (float(out.aux) > 0) == (kind == "jumprelu")


def test_a_resumed_trainer_stays_in_its_phase(monkeypatch):
    """The phase follows the trainer's step, which checkpoints keep: a resumed run does not repeat phase one."""
    from torch_shard_interpret.sae import SAEConfig, TrainConfig
    from torch_shard_interpret.sae._trainer import Dist, Trainer

    monkeypatch.setitem(_losses.EARLY_STEPS, "batchtopk", 2)
    cfg, tcfg = SAEConfig(d_in=8, d_sae=32, kind="batchtopk", k=2), TrainConfig(batch_size=64, seed=0)
    x = _batch()
    first = Trainer(cfg, tcfg, 10, Dist(False))
    first.step(x)
    first.step(x)
    assert float(first.sae.threshold) == 0.0  # two steps of the TopK phase
    resumed = Trainer(cfg, tcfg, 10, Dist(False))
    resumed.load_state(first.state())
    resumed.step(x)  # step 2: past the first phase, so the batch-level threshold is estimated
    assert resumed.step_i == 3 and float(resumed.sae.threshold) > 0.0


def test_jumprelu_gets_its_first_phase_on_top_of_the_minimum_steps(monkeypatch):
    import torch_shard_interpret as tsi
    from torch_shard_interpret.sae import _config

    monkeypatch.setattr(_config, "MIN_TENSOR_STEPS", 6)  # the rule, not the numbers: keep the test fast
    monkeypatch.setitem(_config.MIN_TENSOR_STEPS_BY_KIND, "jumprelu", 9)
    monkeypatch.setattr("torch_shard_interpret.sae._train.MIN_TENSOR_STEPS", 6)
    steps = {}
    for kind in ("topk", "jumprelu"):
        seen = []
        extra = {"k": 2} if kind == "topk" else {}
        tsi.sae.train(_batch(), {"kind": kind, "d_sae": 16, **extra}, callback=lambda s, m, seen=seen: seen.append(s),
                      progress=False)  # fmt: skip
        steps[kind] = len(seen)
    assert steps == {"topk": 6, "jumprelu": 9}
